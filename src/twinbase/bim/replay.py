"""Replaying changesets onto a .bim file in pure Python with apsw's session extension (bim-format.md §3.4).

What iTwin.js does when it pulls a changeset (imodel-native 5.x ``TxnManager::MergeChangeset``), done here:

1. the prefix DDL, minus unchanged indexes (``PatchSlowDdlChanges``);
2. for a schema changeset (its prefix says ``ContainsSchemaChanges`` or carries DDL; the writer sets that
   flag exactly for the hub's Schema changeset type, which is what iTwin.js goes by): the schema rows alone
   (``ec_*`` tables and the ``be_Prop`` profile-version keys, ``ApplyChangesArgs::IsSchemaChange``) as one
   changeset ordered deletes, updates, inserts (``ApplySchemaChangesInOrder``), with ``IGNORENOOP``;
3. the data rows: all of them, or all but the schema rows after step 2.

``FKNOACTION`` is set as iTwin.js sets it: always for data changesets; for schema changesets only when the
changeset updates or deletes ``ec_cache_*`` rows (otherwise SQLite's cascades keep those caches right).
Foreign keys are on, as in iTwin.js' SQLite. The conflict handler is ``ChangesetFileReaderBase::_OnConflict``:
a DELETE of a row that is not there (a cascade got it first) and an UPDATE of a missing ``ec_*`` row (a SET
NULL got it) are skipped; any other conflict aborts, and ``ReplayError`` names changeset, table, row, reason.

Where this differs from iTwin.js, on purpose: a DDL statement that fails raises ``ReplayError`` (natively it
is logged and skipped, and the apply goes on against a schema the changeset was not made for), and after a
schema changeset every table and column ``ec_Table``/``ec_Column`` map must exist (natively ``UpdateDbSchema``
would create what is missing; twinbase refuses instead of guessing). Not reproduced, since no table a
checkpoint carries depends on them: the ECDb/DgnDb caches, the domain sync, and the id sequences in
``be_Local`` (local state, reset whenever a briefcase id is assigned).

Speed (measured; ``replay`` documents the journal and commit choices):
- data changesets need no Python per row: one streamed apply; the schema/data split uses per-table
  filters, the per-row ``filter_change`` (about 12 us a row, +35%) only for the rare changeset that carries
  be_Prop profile rows; rebuilding a data-only changeset with ``ChangesetBuilder`` costs as much and holds
  it in memory;
- streaming chunks of 64 KiB (SQLite's default of 1 KiB means one Python read call per KiB);
- no savepoint nested in a transaction around an apply: SQLite's per-statement savepoints then copy and
  truncate the sub-journal for every row (16% of the time on 200-element changesets);
- the ``DGN_*`` trigger functions (dgnfuncs.py), about 8 us of Python per 3D element inserted or moved;
- every apply with ``FKNOACTION`` makes SQLite reparse the schema twice (it bumps the schema cookie to
  reprepare statements): a fixed ~2-4 ms per changeset, paid by iTwin.js' SQLite as well.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import apsw

from twinbase.bim import changeset as changeset_format
from twinbase.bim import dgnfuncs
from twinbase.bim.changeset import ChangesetFile, ChangesetFormatError, ChangeSummary, InvalidChangesetIdError
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
_NO_SUMMARY = ChangeSummary(tables={}, elements_inserted=(), elements_updated=(), elements_deleted=())
# replay(): commit after this much changeset data (uncompressed) and at the end; a 128 MiB page cache.
COMMIT_BYTES = 64 << 20
STREAM_CHUNK = 64 << 10
REPLAY_CACHE_KIB = 128 << 10
_TXN_TABLE = "dgn_Txns"
_VALUE_PREVIEW = 80
_CONFLICT_REASONS = {
    apsw.SQLITE_CHANGESET_DATA: "the row in the file has other values than the changeset expects",
    apsw.SQLITE_CHANGESET_NOTFOUND: "the row is not in the file",
    apsw.SQLITE_CHANGESET_CONFLICT: "a row with this primary key is already in the file",
    apsw.SQLITE_CHANGESET_CONSTRAINT: "it breaks a constraint of the table",
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
        if cause == apsw.SQLITE_CHANGESET_FOREIGN_KEY:
            # Checked once at the end of the apply: no row to name, only how many references dangle.
            return (
                f"the changeset leaves {change.fk_conflicts} foreign key violation(s): rows that point at"
                " rows the file does not have"
            )
        values = change.new if change.op == "INSERT" else change.old
        key = tuple(values[i] for i in sorted(change.pk_columns)) if values else ()
        what = f"{change.op} of {change.name} row {_preview(key[0] if len(key) == 1 else key)}"
        reason = _CONFLICT_REASONS.get(cause, f"conflict {cause}")
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


def profile_version(db: apsw.Connection, namespace: str) -> tuple[int, ...] | None:
    """A profile's version (``be_Db``, ``ec_Db``, ``dgn_Db``) from ``be_Prop``; None if absent."""
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
        version = profile_version(db, namespace)
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


def _configure_session_streams() -> None:
    # Streamed applies read their input in chunks of this size (SQLite's default is 1 KiB: one Python read
    # call per KiB). 64 KiB is what the native library builds SQLite with. sqlite3_session_config is
    # process-wide and not thread-safe: it must not run while any thread streams a changeset (the web
    # process reads summaries and applies changesets in several threads), so it runs once, when this
    # module is imported, before any of them starts.
    apsw.session_config(apsw.SQLITE_SESSION_CONFIG_STRMSIZE, STREAM_CHUNK)


_configure_session_streams()


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


def _pragma(db: apsw.Connection, pragma: str) -> str:
    row = db.execute(f"PRAGMA {pragma}").fetchone()
    return "" if row is None else str(row[0])


def _changegroup() -> apsw.ChangesetBuilder:
    return apsw.ChangesetBuilder()  # type: ignore[no-untyped-call]  # apsw's stub leaves __init__ unannotated


class _SchemaSplit:
    """One pass over a schema changeset: its schema rows as one changeset ordered deletes, updates, inserts
    (``ApplySchemaChangesInOrder``), and what the rest of the apply needs to know about it.

    A changegroup scrambles the order of its changes, so each operation gets its own and the three outputs
    are concatenated as bytes (a changeset may name the same table more than once).
    """

    def __init__(self, changeset: ChangesetFile) -> None:
        groups = {"DELETE": _changegroup(), "UPDATE": _changegroup(), "INSERT": _changegroup()}
        # TxnManager::ApplyChanges: FKNOACTION for a schema changeset only if it updates or deletes
        # ec_cache_* rows; otherwise SQLite's cascades are what keeps those caches right.
        self.fk_no_action = False
        # be_Prop rows of the schema (profile versions): the data phase must then skip rows, not tables.
        self.schema_props = False
        try:
            for change in apsw.Changeset.iter(changeset.stream_input()):
                if _is_schema_change(change):
                    groups[change.op].add_change(change)
                    if change.op != "INSERT" and change.name[:9].lower() == "ec_cache_":
                        self.fk_no_action = True
                    if not _is_schema_table(change.name):
                        self.schema_props = True
            self.ordered = b"".join(groups[op].output() for op in ("DELETE", "UPDATE", "INSERT"))
        finally:
            for group in groups.values():
                group.close()


def _data_tables(table: str) -> bool:
    return not _is_schema_table(table)


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

    Also records the file's new position in ``be_Local`` (``ParentChangeSetId``, ``parentChangeset``
    {"id","index"}): the id computed from the recorded one (SHA-1 of parent id, prefix and changeset),
    the index one more, as a pull does; ``make_checkpoint`` checks it.

    Runs inside a SAVEPOINT: with no transaction open that is the transaction (committed at the end), in
    a caller's transaction it nests. On any error the savepoint is rolled back and ``ReplayError`` is
    raised. (Nested savepoints make SQLite's per-statement savepoints slow on large changesets: the
    replay loop keeps them out.)
    """
    label = label or "(unnamed)"
    parent_id, parent_index = current_changeset(db)
    cs_id = _changeset_id(changeset, parent_id)
    db.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        _apply_changeset(db, changeset, label)
        _record_position(db, cs_id, parent_index + 1 if parent_index is not None else None)
    except BaseException:
        db.execute(f"ROLLBACK TO {_SAVEPOINT}")
        db.execute(f"RELEASE {_SAVEPOINT}")
        raise
    db.execute(f"RELEASE {_SAVEPOINT}")


def _changeset_id(changeset: ChangesetFile, parent_id: str) -> str:
    try:
        return changeset.changeset_id(parent_id)
    except InvalidChangesetIdError as exc:
        raise ReplayError(f"the file's recorded changeset (be_Local) is not a changeset id: {exc}") from exc


def _apply_changeset(db: apsw.Connection, changeset: ChangesetFile, label: str) -> None:
    """The apply itself, with no savepoint of its own: the caller undoes a failure.

    A schema changeset is one whose prefix says so or carries DDL: the writer sets that flag exactly when
    it pushes a changeset of the hub's Schema type, which is what iTwin.js goes by. Others (``ec_*`` rows
    included, should one ever have them) are applied as data, as iTwin.js does: one streamed apply, no
    Python per row.
    """
    if changeset.contains_schema_changes or changeset.ddl.strip():
        _apply_schema_changeset(db, changeset, label)
    else:
        _apply(db, changeset.stream_input(), apsw.SQLITE_CHANGESETAPPLY_FKNOACTION, label, "data changes")


def _apply_schema_changeset(db: apsw.Connection, changeset: ChangesetFile, label: str) -> None:
    if changeset.ddl.strip():
        for sql in patch_ddl(db, changeset.ddl):
            try:
                db.execute(sql)
            except apsw.Error as exc:
                raise ReplayError(
                    f"changeset {label}: its DDL does not apply to the file ({exc}): {_preview(sql)}."
                    " Is the file at this changeset's parent?"
                ) from exc
    try:
        split = _SchemaSplit(changeset)
    except apsw.Error as exc:
        raise ReplayError(f"changeset {label}: its session changeset is malformed: {exc}") from exc
    fk_flag = apsw.SQLITE_CHANGESETAPPLY_FKNOACTION if split.fk_no_action else 0
    if split.ordered:
        _apply(db, split.ordered, apsw.SQLITE_CHANGESETAPPLY_IGNORENOOP | fk_flag, label, "schema changes")
    data = changeset.stream_input()
    if split.schema_props:  # be_Prop holds rows of both phases: filter row by row
        _apply(db, data, fk_flag, label, "data changes", filter_change=_is_data_change)
    else:
        _apply(db, data, fk_flag, label, "data changes", filter=_data_tables)
    missing = missing_schema_objects(db)
    if missing:
        raise ReplayError(
            f"changeset {label}: after its schema changes, what ec_Table/ec_Column map is missing: "
            + ", ".join(missing[:10])
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        )


def read_for_replay(path: str | os.PathLike[str]) -> ChangesetFile:
    """``read_changeset`` without its change summary, which replay never reads.

    The summary walks every row in Python (a tenth of a replay's time); the apply streams the same rows
    through SQLite anyway, and reports a malformed changeset itself. The result's ``summary`` is empty:
    it stays inside this module.
    """
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=changeset_format.SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        with open(path, "rb") as source:
            header = changeset_format.parse_header(source.read(changeset_format.HEADER_SIZE + 1))
            splitter = changeset_format._Splitter(spool, changeset_format.DEFAULT_MAX_UNCOMPRESSED_SIZE)
            changeset_format._decode(source, header, splitter)
        splitter.finish()
        prefix = bytes(splitter.prefix)
        schema, ddl = changeset_format._parse_prefix(prefix)
        spool.seek(0)
        if spool.read(1) not in (b"", b"T"):
            raise changeset_format.SessionChangesetError(
                "session changeset is malformed: it does not start with a changeset table record ('T')"
            )
    except BaseException:
        spool.close()
        raise
    return ChangesetFile(header, prefix, schema, ddl, splitter.changeset_size, _NO_SUMMARY, spool)


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

    Each changeset is atomic: it applies whole, together with the file's new position (``be_Local``
    ``ParentChangeSetId`` and ``parentChangeset`` {"id","index"}, the id computed from the previous
    position), or not at all. If one fails, its error is raised and the file is left exactly at the last
    changeset that applied, that position recorded; the changesets after it are not read.

    ``expected_ids``, if given, are the hub's ids of the changesets (same order): each computed id must
    equal its expected one before anything of it is applied, as iTwin.js checks. Without them a changeset
    applied onto the wrong parent is caught only when its rows conflict with the file (inserts of new rows
    alone never do). ``progress(n)`` is called after the n-th changeset applied.

    Speed, on a scratch copy: ``synchronous=OFF`` (no fsync), an exclusive lock, a 128 MiB page cache, and
    commits grouped: changesets are applied in one transaction, committed every ``COMMIT_BYTES`` of
    changeset data and at the end. No savepoint per changeset (nested savepoints make SQLite's own
    per-statement savepoints cost more than the apply): if a changeset fails, the transaction is rolled
    back, the changesets of the group before it are applied again and committed, and the error is raised.
    The file keeps its kind of journal (WAL, or a rollback journal kept as a file with
    ``journal_mode=TRUNCATE`` meanwhile), so a process killed mid-replay leaves the file at its last commit,
    a changeset boundary that ``be_Local`` records, recovered on the next open. Only an OS crash or power
    loss (no fsync) can damage the copy. When it returns or raises, a WAL has been folded into the file and
    no journal file is left.
    """
    db = open_for_replay(path)
    try:
        original_mode = _pragma(db, "journal_mode")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(f"PRAGMA cache_size={-REPLAY_CACHE_KIB}")
        db.execute("PRAGMA temp_store=MEMORY")
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        # The file's own kind of journal: switching between WAL and a rollback journal rewrites the header
        # (change counter included), and a replay that fails first thing must leave every byte as it was.
        wal = original_mode.lower() == "wal"
        if not wal:
            db.execute("PRAGMA journal_mode=TRUNCATE")  # no create/delete of the journal file per commit
        try:
            _Replay(db, progress, expected_ids).run(changesets)
        finally:
            db.execute("PRAGMA locking_mode=NORMAL")
            db.execute("SELECT 1 FROM be_Local LIMIT 1").fetchall()  # drops the exclusive lock
            if not wal:
                db.execute("PRAGMA journal_mode=" + original_mode)  # DELETE removes the journal file
    finally:
        db.close()


class _Replay:
    """The replay loop: grouped commits, and on a failure the group's good changesets applied again."""

    def __init__(
        self,
        db: apsw.Connection,
        progress: Callable[[int], None] | None,
        expected_ids: Iterable[str] | None,
    ) -> None:
        self.db = db
        self.progress = progress
        self.expected = iter(expected_ids) if expected_ids is not None else None
        self.parent_id, self.parent_index = current_changeset(db)
        # Changesets applied since the last commit: (path, label, id, index), to apply again after a rollback.
        self.group: list[tuple[str | os.PathLike[str], str, str, int | None]] = []
        self.pending = 0

    def run(self, changesets: Iterable[str | os.PathLike[str]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for count, path in enumerate(changesets, start=1):
                self._one(count, path)
                if self.pending >= COMMIT_BYTES:
                    self._commit()
                    self.db.execute("BEGIN IMMEDIATE")
                if self.progress is not None:
                    self.progress(count)
        except BaseException:
            self._recover()
            raise
        self._commit()

    def _one(self, count: int, path: str | os.PathLike[str]) -> None:
        name = Path(os.fspath(path)).name
        try:
            changeset = read_for_replay(path)
        except (OSError, ChangesetFormatError) as exc:
            raise ReplayError(f"changeset {count} ({name}) cannot be read: {exc}") from exc
        with changeset:
            cs_id = _changeset_id(changeset, self.parent_id)
            if self.expected is not None:
                _check_expected(count, name, self.parent_id, cs_id, next(self.expected, None))
            index = self.parent_index + 1 if self.parent_index is not None else None
            label = f"{count} ({name}, id {cs_id})"
            _apply_changeset(self.db, changeset, label)
            _record_position(self.db, cs_id, index)
            self.pending += changeset.uncompressed_size
        self.group.append((path, label, cs_id, index))
        self.parent_id, self.parent_index = cs_id, index

    def _commit(self) -> None:
        self.db.execute("COMMIT")
        self.group.clear()
        self.pending = 0

    def _recover(self) -> None:
        """After a failure: back to the last commit, then the group's changesets that applied, committed."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        if not self.group:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for path, label, cs_id, index in self.group:
                with read_for_replay(path) as changeset:
                    _apply_changeset(self.db, changeset, label)
                    _record_position(self.db, cs_id, index)
            self._commit()
        except BaseException:
            self.db.execute("ROLLBACK")  # still at the last commit: a changeset boundary all the same
            raise


def _check_expected(count: int, name: str, parent_id: str, cs_id: str, want: str | None) -> None:
    if want is None:
        raise ReplayError(f"changeset {count} ({name}) has no expected id: fewer ids than files")
    if want.lower() != cs_id:
        raise ReplayError(
            f"changeset {count} ({name}) is not the one expected after {parent_id or 'the baseline'}:"
            f" applied there its id would be {cs_id}, the hub's id is {want}"
            " (wrong parent, wrong order, or a damaged file)"
        )


def make_checkpoint(
    path: str | os.PathLike[str], *, imodel_id: str, itwin_id: str, changeset_id: str, changeset_index: int
) -> None:
    """Finish a replayed file as this iModel's checkpoint at ``changeset_id`` / ``changeset_index``.

    The file must be at that changeset (the position ``apply_changeset`` and ``replay`` record), else
    ``BimFormatError``; index 0 makes any file this iModel's baseline.

    As iTwin.js leaves a checkpoint (``CheckpointManager.updateToRequestedVersion``): no local transactions
    (``dgn_Txns`` and ``dgn_Rebase`` emptied; no pull/merge state), briefcase id 0, the iModel and iTwin
    ids, ``parentChangeset`` {"id","index"} and ``ParentChangeSetId``; then the WAL folded in and the file
    put in rollback-journal mode (DELETE), which checkpoints served from cloud containers use: the result
    is one self-contained file that opens read-only anywhere (no -wal/-shm needed).
    """
    name = os.fspath(path)
    db = open_for_replay(name)
    try:
        # The position the applies recorded must be the one claimed: a checkpoint that says it is at a
        # changeset whose rows it does not hold would make every client that pulls onto it go wrong.
        # Index 0 makes the file a baseline, whatever it holds (a fork squashes its history into one).
        recorded_id, recorded_index = current_changeset(db)
        if changeset_index != 0 and (
            recorded_id != changeset_id or recorded_index not in (None, changeset_index)
        ):
            at = f"changeset {recorded_id} (index {recorded_index})" if recorded_id else "the baseline"
            raise BimFormatError(
                f"{name} is at {at}, not at changeset {changeset_id or '(baseline)'} index {changeset_index}:"
                " replay the changesets up to it first"
            )
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
