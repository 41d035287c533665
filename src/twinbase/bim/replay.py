"""Replaying changesets onto a .bim file in pure Python with apsw's session extension (bim-format.md §3.4).

What iTwin.js does when it pulls a changeset (imodel-native ``TxnManager::MergeChangeset``), done here:

1. the prefix DDL, with unchanged ``CREATE INDEX`` statements dropped as ``PatchSlowDdlChanges`` drops them;
2. if the changeset changes the schema (its prefix says so, it has DDL or it touches ``ec_*`` tables): the
   schema rows alone (``ec_*`` tables and the ``be_Prop`` profile-version keys, ``IsSchemaChange``) as one
   changeset ordered deletes, updates, inserts (``ApplySchemaChangesInOrder``), with ``IGNORENOOP``;
3. the data rows (all of them, or all but the schema rows after step 2).

``FKNOACTION`` is set as iTwin.js sets it: always for data-only changesets; for schema changesets only when
the changeset updates or deletes ``ec_cache_*`` rows (otherwise SQLite's cascades keep those caches right).
The conflict handler is ``ChangesetFileReaderBase::_OnConflict``: a DELETE of a row that is not there (a
cascade got it first) and an UPDATE of a missing ``ec_*`` row (a SET NULL got it) are skipped; any other
conflict aborts, and this module raises ``ReplayError`` naming the changeset, table, row and reason.

Each changeset is applied inside one SAVEPOINT: on any error the database is exactly as before it. Where
this differs from iTwin.js, on purpose: a DDL statement that fails raises ``ReplayError`` (natively it is
logged and skipped, and the apply goes on against a schema the changeset was not made for), and after a
schema changeset every table and column ``ec_Table``/``ec_Column`` names must exist (natively
``UpdateDbSchema`` would create what is missing; twinbase refuses instead of guessing).

Not reproduced, since no table a checkpoint carries depends on them: the ECDb/DgnDb caches, the domain
sync, and the id sequences in ``be_Local`` (local state, reset whenever a briefcase id is assigned).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import apsw

from twinbase.bim import dgnfuncs
from twinbase.bim.changeset import ChangesetFile, ChangesetFormatError, read_changeset
from twinbase.bim.identity import BimFormatError, stamp

BEDB_APPLICATION_ID = 0x42654462  # "BeDb" at header offset 68
# Profiles this engine replays onto: (namespace, accepted major.minor, what the profile is).
SUPPORTED_PROFILES = (
    ("be_Db", (3, 1), "BeSQLite"),
    ("ec_Db", (4, 0), "ECDb"),
    ("dgn_Db", (2, 0), "DgnDb"),
)
# ApplyChangesArgs::IsSchemaChange: be_Prop rows that travel with the schema. "dgndb_Db" is what the
# native code tests (the DgnDb profile version itself lives under "dgn_Db", so it goes with the data).
_SCHEMA_PROPS = frozenset(
    {
        ("dgndb_db", "schemaversion"),
        ("be_db", "schemaversion"),
        ("ec_db", "schemaversion"),
        ("ec_db", "localdbinfo"),
    }
)
_SAVEPOINT = "twinbase_replay"
_TXN_TABLE = "dgn_Txns"
_VALUE_PREVIEW = 80
_CONFLICT_REASONS = {
    apsw.SQLITE_CHANGESET_DATA: "the row in the file has other values than the changeset expects",
    apsw.SQLITE_CHANGESET_NOTFOUND: "the row is not in the file",
    apsw.SQLITE_CHANGESET_CONFLICT: "a row with this primary key is already in the file",
    apsw.SQLITE_CHANGESET_CONSTRAINT: "it breaks a constraint of the table",
    apsw.SQLITE_CHANGESET_FOREIGN_KEY: "it leaves rows whose foreign keys point at nothing",
}


class ReplayError(BimFormatError):
    """A changeset does not apply to the file: the message says which changeset, table, row and why."""


class UnsupportedProfileError(BimFormatError):
    """The file is an iModel whose profile (format version) twinbase cannot replay changesets onto."""


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_PREVIEW else text[: _VALUE_PREVIEW - 3] + "..."


def _is_schema_table(name: str) -> bool:
    return name[:3].lower() == "ec_"


def _is_schema_change(change: apsw.TableChange) -> bool:
    name = change.name
    if _is_schema_table(name):
        return True
    if name.lower() != "be_prop":
        return False
    values = change.new if change.op == "INSERT" else change.old
    if not values or len(values) < 2:
        return False
    namespace, key = values[0], values[1]
    return (
        isinstance(namespace, str)
        and isinstance(key, str)
        and (namespace.lower(), key.lower()) in _SCHEMA_PROPS
    )


def _is_data_change(change: apsw.TableChange) -> bool:
    return not _is_schema_change(change)


class _Conflicts:
    """The conflict handler of one apply; remembers why it aborted, for the error message."""

    def __init__(self, db: apsw.Connection) -> None:
        self.db = db
        self.reason: str | None = None

    def __call__(self, cause: int, change: apsw.TableChange) -> int:
        if cause == apsw.SQLITE_CHANGESET_NOTFOUND and (
            change.op == "DELETE" or (change.op == "UPDATE" and _is_schema_table(change.name))
        ):
            return apsw.SQLITE_CHANGESET_OMIT
        if self.reason is None:
            self.reason = self._describe(cause, change)
        return apsw.SQLITE_CHANGESET_ABORT

    def _column(self, table: str, index: int) -> str:
        try:
            names = [row[1] for row in self.db.execute("SELECT * FROM pragma_table_info(?)", (table,))]
        except apsw.Error:
            names = []
        return names[index] if index < len(names) else f"#{index}"

    def _describe(self, cause: int, change: apsw.TableChange) -> str:
        values = change.new if change.op == "INSERT" else change.old
        key = tuple(values[i] for i in sorted(change.pk_columns)) if values else ()
        what = f"{change.op} of {change.name} row {_preview(key[0] if len(key) == 1 else key)}"
        reason = _CONFLICT_REASONS.get(cause, f"conflict {cause}")
        if cause == apsw.SQLITE_CHANGESET_FOREIGN_KEY:
            return f"after the changeset's {change.name} rows {reason} ({change.fk_conflicts} violations)"
        detail = ""
        if cause == apsw.SQLITE_CHANGESET_DATA and change.conflict is not None and change.old is not None:
            for column, (expected, actual) in enumerate(zip(change.old, change.conflict, strict=False)):
                if expected is not apsw.no_change and expected != actual:
                    detail = (
                        f"; column {self._column(change.name, column)} is {_preview(actual)} in the file,"
                        f" the changeset expects {_preview(expected)}"
                    )
                    break
        return f"{what}: {reason}{detail}"


def patch_ddl(db: apsw.Connection, ddl: str) -> list[str]:
    """The prefix DDL as statements, minus unchanged indexes (imodel-native ``PatchSlowDdlChanges``).

    Schema changesets re-create every index of a changed table; an index whose ``CREATE`` equals the SQL
    already in ``sqlite_master`` is neither dropped nor created (that saves minutes on large files). Index
    statements go after the others, drops before creates, as natively.
    """
    current = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"))
    others: list[str] = []
    drops: dict[str, str] = {}
    creates: dict[str, str] = {}
    for sql in (part for part in ddl.split(";") if part.strip()):
        tokens = sql.split(" ")
        if sql.startswith("DROP INDEX IF EXISTS") and len(tokens) > 4:
            drops[_unbracket(tokens[4])] = sql
        elif sql.startswith(("CREATE INDEX", "CREATE UNIQUE INDEX")):
            name = _unbracket(tokens[2] if tokens[1] == "INDEX" else tokens[3])
            existing = current.get(name)
            if existing == sql:
                drops.pop(name, None)
            else:
                creates[name] = sql
                if existing is not None and name not in drops:
                    drops[name] = f"DROP INDEX IF EXISTS [{name}]"
        else:
            others.append(sql)
    return others + list(drops.values()) + list(creates.values())


def _unbracket(token: str) -> str:
    return token[1:-1] if token.startswith("[") and token.endswith("]") else token


def _profile_version(db: apsw.Connection, namespace: str) -> tuple[int, ...] | None:
    row = db.execute(
        "SELECT StrData FROM be_Prop WHERE Namespace=? AND Name='SchemaVersion' AND Id=0 AND SubId=0",
        (namespace,),
    ).fetchone()
    if row is None or not isinstance(row[0], str):
        return None
    try:
        parsed = json.loads(row[0])
        return tuple(int(parsed[k]) for k in ("major", "minor", "sub1", "sub2"))
    except (ValueError, KeyError, TypeError):
        return None


def check_replayable(db: apsw.Connection, path: str = "") -> None:
    """Raise unless ``db`` is an iModel whose BeSQLite, ECDb and DgnDb profiles this engine replays onto."""
    where = f" {path}" if path else ""
    try:
        (app_id,) = db.execute("PRAGMA application_id").fetchone() or (0,)
        tables = {name.lower() for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except apsw.Error as exc:
        raise BimFormatError(f"not an iModel file{where}: {exc}") from exc
    if app_id != BEDB_APPLICATION_ID or not {"be_prop", "be_local"} <= tables:
        raise BimFormatError(
            f"not an iModel file{where}: no BeDb application id or no be_Prop/be_Local tables"
        )
    for namespace, (major, minor), what in SUPPORTED_PROFILES:
        version = _profile_version(db, namespace)
        if version is None:
            raise UnsupportedProfileError(
                f"the file{where} has no {what} profile version (be_Prop {namespace}/SchemaVersion):"
                " it is not an iModel twinbase can replay changesets onto"
            )
        if version[:2] != (major, minor):
            shown = ".".join(map(str, version))
            age = "older" if version[:2] < (major, minor) else "newer"
            raise UnsupportedProfileError(
                f"the file{where} has {what} profile {shown}, {age} than the {major}.{minor}.x.x twinbase"
                " replays changesets onto"
            )
    if "bis_element" not in tables:
        raise UnsupportedProfileError(f"the file{where} has no bis_Element table: it is not a BIS iModel")


def open_for_replay(path: str | os.PathLike[str]) -> apsw.Connection:
    """Open an existing .bim read-write for applying changesets: DGN_* functions registered, profile checked.

    Foreign keys are enforced as in iTwin.js (its SQLite is built with them on), so a changeset whose rows
    point at missing rows aborts instead of writing a broken file.
    """
    name = os.fspath(path)
    if not Path(name).is_file():
        raise BimFormatError(f"no such .bim file: {name}")
    try:
        db = apsw.Connection(name, flags=apsw.SQLITE_OPEN_READWRITE)
    except apsw.Error as exc:
        raise BimFormatError(f"cannot open {name} for writing: {exc}") from exc
    try:
        db.setbusytimeout(5000)
        check_replayable(db, name)
        db.execute("PRAGMA foreign_keys=ON")
        dgnfuncs.register(db)
    except BaseException:
        db.close()
        raise
    return db


def _schema_flags(changeset: ChangesetFile) -> tuple[bool, bool]:
    """(changes the schema, FKNOACTION) for this changeset, decided as TxnManager::ApplyChanges decides."""
    tables = changeset.summary.tables
    schema = (
        changeset.contains_schema_changes or bool(changeset.ddl.strip()) or any(map(_is_schema_table, tables))
    )
    if not schema:
        return False, True
    touches_caches = any(
        name[:9].lower() == "ec_cache_" and (counts.updates or counts.deletes)
        for name, counts in tables.items()
    )
    return True, touches_caches


def _pragma(db: apsw.Connection, pragma: str) -> str:
    row = db.execute(f"PRAGMA {pragma}").fetchone()
    return "" if row is None else str(row[0])


def _changegroup() -> apsw.ChangesetBuilder:
    return apsw.ChangesetBuilder()  # type: ignore[no-untyped-call]  # apsw's stub leaves __init__ unannotated


def _ordered_schema_changes(changeset: ChangesetFile) -> bytes:
    """The schema rows as one changeset: deletes, then updates, then inserts (ApplySchemaChangesInOrder).

    A changegroup scrambles the order of its changes, so each operation gets its own and the three
    outputs are concatenated as bytes (a changeset may name the same table more than once).
    """
    groups = {"DELETE": _changegroup(), "UPDATE": _changegroup(), "INSERT": _changegroup()}
    try:
        for change in apsw.Changeset.iter(changeset.stream_input()):
            if _is_schema_change(change):
                groups[change.op].add_change(change)
        return b"".join(groups[op].output() for op in ("DELETE", "UPDATE", "INSERT"))
    finally:
        for group in groups.values():
            group.close()


def _apply(db: apsw.Connection, source: Any, flags: int, label: str, phase: str, **kwargs: Any) -> None:
    conflicts = _Conflicts(db)
    try:
        apsw.Changeset.apply(
            source, db, conflict=conflicts, flags=flags | apsw.SQLITE_CHANGESETAPPLY_NOSAVEPOINT, **kwargs
        )
    except apsw.Error as exc:
        if conflicts.reason is not None:
            raise ReplayError(
                f"changeset {label} does not apply ({phase}): {conflicts.reason}."
                " Is the file at this changeset's parent?"
            ) from exc
        raise ReplayError(f"changeset {label} does not apply ({phase}): {exc}") from exc


def missing_schema_objects(db: apsw.Connection) -> list[str]:
    """Tables and columns ``ec_Table``/``ec_Column`` map that SQLite does not have (virtual ones aside)."""
    table_columns = {row[1].lower() for row in db.execute("PRAGMA table_info(ec_Table)")}
    virtual = (
        "t.Type=4" if "type" in table_columns else ("t.IsVirtual=1" if "isvirtual" in table_columns else "0")
    )
    existing = {name.lower() for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    missing: list[str] = []
    rows = db.execute(
        f"SELECT t.Name, c.Name FROM ec_Table t LEFT JOIN ec_Column c ON c.TableId=t.Id AND c.IsVirtual=0"
        f" WHERE NOT ({virtual}) ORDER BY t.Name"
    )
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        key = table.lower()
        if key not in existing:
            if not missing or missing[-1] != f"table {table}":
                missing.append(f"table {table}")
            continue
        if column is None:
            continue
        if key not in columns:
            columns[key] = {
                row[1].lower() for row in db.execute("SELECT * FROM pragma_table_xinfo(?)", (table,))
            }
        if column.lower() not in columns[key]:
            missing.append(f"column {table}.{column}")
    return missing


def apply_changeset(db: apsw.Connection, changeset: ChangesetFile, *, label: str = "") -> None:
    """Apply one changeset to ``db`` (from ``open_for_replay``) atomically: all of it, or nothing.

    Runs inside a SAVEPOINT, so it nests in a transaction the caller holds; on any error the savepoint is
    rolled back and ``ReplayError`` (or the reader's ``ChangesetFormatError``) is raised.
    """
    label = label or "(unnamed)"
    schema, fk_no_action = _schema_flags(changeset)
    fk_flag = apsw.SQLITE_CHANGESETAPPLY_FKNOACTION if fk_no_action else 0
    db.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        if changeset.ddl.strip():
            for sql in patch_ddl(db, changeset.ddl):
                try:
                    db.execute(sql)
                except apsw.Error as exc:
                    raise ReplayError(
                        f"changeset {label}: its DDL does not apply to the file ({exc}): {_preview(sql)}."
                        " Is the file at this changeset's parent?"
                    ) from exc
        if schema:
            ordered = _ordered_schema_changes(changeset)
            if ordered:
                _apply(db, ordered, apsw.SQLITE_CHANGESETAPPLY_IGNORENOOP | fk_flag, label, "schema changes")
            _apply(
                db, changeset.stream_input(), fk_flag, label, "data changes", filter_change=_is_data_change
            )
            missing = missing_schema_objects(db)
            if missing:
                raise ReplayError(
                    f"changeset {label}: after its schema changes, what ec_Table/ec_Column map is missing: "
                    + ", ".join(missing[:10])
                    + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                )
        else:
            _apply(db, changeset.stream_input(), fk_flag, label, "data changes")
    except BaseException:
        db.execute(f"ROLLBACK TO {_SAVEPOINT}")
        db.execute(f"RELEASE {_SAVEPOINT}")
        raise
    db.execute(f"RELEASE {_SAVEPOINT}")


def current_changeset(db: apsw.Connection) -> tuple[str, int | None]:
    """The changeset the file is at, from ``be_Local``: (id, index); ("", 0) at the baseline."""
    local = dict(
        db.execute("SELECT Name, Val FROM be_Local WHERE Name IN ('parentChangeset','ParentChangeSetId')")
    )
    raw = local.get("parentChangeset")
    if raw is not None:
        try:
            parsed = json.loads(bytes(raw).decode() if isinstance(raw, bytes) else str(raw))
            cs_id, index = parsed.get("id", ""), parsed.get("index")
            if isinstance(cs_id, str):
                return cs_id, index if isinstance(index, int) else None
        except (ValueError, UnicodeDecodeError, AttributeError):
            pass
    legacy = local.get("ParentChangeSetId")
    if isinstance(legacy, bytes):
        legacy = legacy.decode(errors="replace")
    if isinstance(legacy, str) and legacy:
        return legacy, None
    return "", 0


def _record_position(db: apsw.Connection, cs_id: str, index: int | None) -> None:
    db.execute("INSERT OR REPLACE INTO be_Local(Name, Val) VALUES('ParentChangeSetId', ?)", (cs_id,))
    if index is None:
        db.execute("DELETE FROM be_Local WHERE Name='parentChangeset'")
    else:
        value = json.dumps({"id": cs_id, "index": index}, separators=(",", ":"))
        db.execute("INSERT OR REPLACE INTO be_Local(Name, Val) VALUES('parentChangeset', ?)", (value,))


def replay(
    path: str | os.PathLike[str],
    changesets: Iterable[str | os.PathLike[str]],
    *,
    progress: Callable[[int], None] | None = None,
    expected_ids: Iterable[str] | None = None,
) -> None:
    """Apply changeset files, in order, to the .bim at ``path``, in place (pass a scratch copy).

    Each changeset is one transaction, with the file's position (``be_Local`` ``ParentChangeSetId`` and
    ``parentChangeset`` {"id","index"}, the id computed from the file's previous position) written in it.
    If one fails, its error is raised and the file stays exactly at the last changeset that applied, with
    its position recorded; the changesets after it are not read.

    ``expected_ids``, if given, are the hub's ids of the changesets (same order): each computed id must
    equal its expected one before anything of it is applied, as iTwin.js checks, which also catches a
    changeset applied onto the wrong parent when its rows alone would not conflict.
    ``progress(n)`` is called after the n-th changeset committed.

    Speed: the file is a scratch copy, so ``synchronous=OFF`` (no fsync; an OS crash may lose the copy, a
    killed process may not), an exclusive lock, and a rollback journal kept in a file (``journal_mode``
    TRUNCATE) so that each changeset stays atomic even if the process dies mid-commit. The file's own
    journal mode is restored at the end.
    """
    db = open_for_replay(path)
    try:
        original_mode = _pragma(db, "journal_mode")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-65536")
        db.execute("PRAGMA temp_store=MEMORY")
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=TRUNCATE")
        try:
            _replay_all(db, changesets, progress, expected_ids)
        finally:
            db.execute("PRAGMA journal_mode=" + str(original_mode))
            db.execute("PRAGMA locking_mode=NORMAL")
            db.execute("SELECT 1 FROM be_Local LIMIT 1").fetchall()  # releases the exclusive lock
    finally:
        db.close()


def _replay_all(
    db: apsw.Connection,
    changesets: Iterable[str | os.PathLike[str]],
    progress: Callable[[int], None] | None,
    expected_ids: Iterable[str] | None,
) -> None:
    expected = iter(expected_ids) if expected_ids is not None else None
    parent_id, parent_index = current_changeset(db)
    for count, path in enumerate(changesets, start=1):
        name = Path(os.fspath(path)).name
        try:
            changeset = read_changeset(path)
        except (OSError, ChangesetFormatError) as exc:
            raise ReplayError(f"changeset {count} ({name}) cannot be read: {exc}") from exc
        with changeset:
            cs_id = changeset.changeset_id(parent_id)
            label = f"{count} ({name}, id {cs_id})"
            if expected is not None:
                want = next(expected, None)
                if want is None:
                    raise ReplayError(f"changeset {count} ({name}) has no expected id: fewer ids than files")
                if want.lower() != cs_id:
                    raise ReplayError(
                        f"changeset {count} ({name}) is not the one expected after"
                        f" {parent_id or 'the baseline'}:"
                        f" applied there its id would be {cs_id}, the hub's id is {want}"
                        " (wrong parent, wrong order, or a damaged file)"
                    )
            index = parent_index + 1 if parent_index is not None else None
            db.execute("BEGIN IMMEDIATE")
            try:
                apply_changeset(db, changeset, label=label)
                _record_position(db, cs_id, index)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        parent_id, parent_index = cs_id, index
        if progress is not None:
            progress(count)


def make_checkpoint(
    path: str | os.PathLike[str], *, imodel_id: str, itwin_id: str, changeset_id: str, changeset_index: int
) -> None:
    """Finish a replayed file as this iModel's checkpoint at ``changeset_id`` / ``changeset_index``.

    As iTwin.js leaves a checkpoint (``CheckpointManager.updateToRequestedVersion``): no local transactions
    (``dgn_Txns`` and ``dgn_Rebase`` emptied; no pull/merge state), briefcase id 0, the iModel and iTwin
    ids, ``parentChangeset`` {"id","index"} and ``ParentChangeSetId``; then the WAL folded in and the file
    put in rollback-journal mode (DELETE), which checkpoints served from cloud containers use: the result
    is one self-contained file that opens read-only anywhere (no -wal/-shm needed).
    """
    name = os.fspath(path)
    db = open_for_replay(name)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            existing = {n.lower() for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            for table in (_TXN_TABLE, "dgn_Rebase"):
                if table.lower() in existing:
                    db.execute(f"DELETE FROM [{table}]")
            # Pull/merge and stash state belong to a briefcase being edited, never to a checkpoint.
            db.execute("DELETE FROM be_Local WHERE Name IN ('pull_merge_conf','StandaloneEdit')")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.close()
    stamp(
        Path(name),
        imodel_id=imodel_id,
        itwin_id=itwin_id,
        changeset_id=changeset_id,
        changeset_index=changeset_index,
    )
    db = apsw.Connection(name, flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        mode = _pragma(db, "journal_mode=DELETE")
        if str(mode).lower() != "delete":
            raise BimFormatError(f"{name}: could not leave WAL mode (journal_mode is {mode})")
    finally:
        db.close()
