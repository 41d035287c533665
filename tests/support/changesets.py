"""Valid changeset files made in the test suite, for tests of the timeline (not of replay).

Each one is a real changeset file (header, LZMA2, SQLite session changeset) that inserts one row into
``be_Prop``, a table every iModel has, so it hashes to its id with its parent (the completion checks
that) and applies to any iModel made from twinbase's seed. ``payload`` random bytes make the file that
much larger (they do not compress). Replay tests use the real chains and iTwin.js-made changesets instead.
"""

from __future__ import annotations

import lzma
import os
import struct
import uuid
from dataclasses import dataclass

import apsw

from twinbase.bim.changeset import changeset_id

_BE_PROP = (
    "CREATE TABLE be_Prop (Namespace CHAR NOT NULL,Name CHAR NOT NULL,Id INT NOT NULL,SubId INT NOT NULL,"
    "TxnMode Int NOT NULL,StrData CHAR,RawSize INT,Data BLOB,PRIMARY KEY(Namespace,Name,Id,SubId))"
)
_HEADER = struct.pack("<H", 22) + b"ChangeSetLzma".ljust(16, b"\0") + struct.pack("<HH", 0x10, 2)
_FILTERS = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}]


@dataclass(frozen=True)
class MadeChangeset:
    id: str
    parent_id: str
    data: bytes


def encode(session_changeset: bytes, prefix: bytes = b"") -> bytes:
    """A changeset file in the native library's format: header, dictionary byte 24, raw LZMA2 of
    (u32 BE prefix length, prefix, session changeset)."""
    content = struct.pack(">I", len(prefix)) + prefix + session_changeset
    return _HEADER + bytes([24]) + lzma.compress(content, lzma.FORMAT_RAW, filters=_FILTERS)


def session_changeset(payload: int = 0) -> bytes:
    db = apsw.Connection(":memory:")
    db.execute(_BE_PROP)
    session = apsw.Session(db, "main")
    session.attach()
    db.execute(
        "INSERT INTO be_Prop(Namespace, Name, Id, SubId, TxnMode, Data)"
        " VALUES('twinbase-test', ?, 0, 0, 0, ?)",
        (uuid.uuid4().hex, os.urandom(payload)),
    )
    data = session.changeset()
    session.close()
    db.close()
    return data


def make_changeset(parent_id: str = "", *, payload: int = 0) -> MadeChangeset:
    """A valid changeset on ``parent_id`` (``""`` for the first), about ``payload`` + 150 bytes long."""
    changeset = session_changeset(payload)
    return MadeChangeset(changeset_id(parent_id, b"", changeset), parent_id, encode(changeset))


def make_chain(count: int, parent_id: str = "", *, payload: int = 0) -> list[MadeChangeset]:
    chain: list[MadeChangeset] = []
    for _ in range(count):
        made = make_changeset(chain[-1].id if chain else parent_id, payload=payload)
        chain.append(made)
    return chain
