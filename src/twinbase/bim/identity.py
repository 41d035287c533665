"""A .bim file's identity and local state (reference bim-format.md §2.6), read and written with SQLite.

- ``be_Prop(Namespace='be_Db', Name='DbGuid')``: the iModel id, 16 bytes in RFC 4122 order;
- ``be_Prop('be_Db', 'ProjectGuid')``: the iTwin id, same encoding;
- ``be_Local``: ``be_repositoryid`` (8 bytes little-endian, the briefcase id; 0 = a checkpoint) and
  ``parentChangeset`` (JSON ``{"id","index"}``, what iTwin.js reads as the current changeset).

Foreign SQLite errors are wrapped as ``BimFormatError`` here, at the boundary.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path


class BimFormatError(ValueError):
    """The file is not an iModel twinbase can use (not SQLite, or no be_Prop/be_Local tables)."""


@dataclass(frozen=True)
class BimIdentity:
    imodel_id: str | None
    itwin_id: str | None
    briefcase_id: int
    parent_changeset: dict[str, object] | None


def _connect(path: Path, *, write: bool) -> sqlite3.Connection:
    uri = f"file:{path}?mode={'rw' if write else 'ro'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute("SELECT 1 FROM be_Prop LIMIT 1")
        conn.execute("SELECT 1 FROM be_Local LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise BimFormatError(f"not an iModel file: {exc}") from exc
    return conn


def _guid(value: bytes | None) -> str | None:
    if value is None or len(value) != 16:
        return None
    return str(uuid.UUID(bytes=bytes(value)))


def read_identity(path: Path) -> BimIdentity:
    conn = _connect(path, write=False)
    try:
        props = dict(
            conn.execute(
                "SELECT Name, Data FROM be_Prop WHERE Namespace='be_Db' AND Name IN ('DbGuid','ProjectGuid')"
            )
        )
        local = dict(
            conn.execute("SELECT Name, Val FROM be_Local WHERE Name IN ('be_repositoryid','parentChangeset')")
        )
    except sqlite3.DatabaseError as exc:
        raise BimFormatError(str(exc)) from exc
    finally:
        conn.close()
    raw_id = local.get("be_repositoryid")
    briefcase = struct.unpack("<q", bytes(raw_id)[:8].ljust(8, b"\0"))[0] if raw_id else 0
    parent_raw = local.get("parentChangeset")
    parent = None
    if parent_raw:
        try:
            parent = json.loads(bytes(parent_raw).decode() if isinstance(parent_raw, bytes) else parent_raw)
        except (ValueError, UnicodeDecodeError):
            parent = None
    return BimIdentity(_guid(props.get("DbGuid")), _guid(props.get("ProjectGuid")), int(briefcase), parent)


def stamp(
    path: Path, *, imodel_id: str, itwin_id: str, changeset_id: str = "", changeset_index: int = 0
) -> None:
    """Make ``path`` this iModel's checkpoint at the given changeset, briefcase id 0."""
    conn = _connect(path, write=True)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for name, guid in (("DbGuid", imodel_id), ("ProjectGuid", itwin_id)):
            updated = conn.execute(
                "UPDATE be_Prop SET Data=?, RawSize=NULL"
                " WHERE Namespace='be_Db' AND Name=? AND Id=0 AND SubId=0",
                (uuid.UUID(guid).bytes, name),
            ).rowcount
            if not updated:
                conn.execute(
                    "INSERT INTO be_Prop(Namespace, Name, Id, SubId, TxnMode, Data)"
                    " VALUES('be_Db', ?, 0, 0, 0, ?)",
                    (name, uuid.UUID(guid).bytes),
                )
        parent = json.dumps({"id": changeset_id, "index": changeset_index}, separators=(",", ":"))
        for name, value in (("be_repositoryid", struct.pack("<q", 0)), ("parentChangeset", parent)):
            conn.execute("INSERT OR REPLACE INTO be_Local(Name, Val) VALUES(?, ?)", (name, value))
        if changeset_id:
            conn.execute(
                "INSERT OR REPLACE INTO be_Local(Name, Val) VALUES('ParentChangeSetId', ?)", (changeset_id,)
            )
        else:
            conn.execute("DELETE FROM be_Local WHERE Name='ParentChangeSetId'")
        conn.execute("COMMIT")
        # A checkpoint is one self-contained file: fold the WAL back into it before it is stored.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.DatabaseError as exc:
        raise BimFormatError(str(exc)) from exc
    finally:
        conn.close()
