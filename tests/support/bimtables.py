"""Comparing two .bim files the way a changeset sees them: every change-tracked table, row by row.

Change-tracked = what iTwin.js' session records (imodel-native ``TxnManager::_FilterTable``): every table
with a primary key except ``be_Local``, ``dgn_Txns``, ``dgn_Rebase``, the FTS5 index ``dgn_fts_idx*`` and the
R-tree ``dgn_SpatialIndex*``. The R-tree's layout tables (``_node``, ``_parent``, ``_rowid``) may differ
between two correct replays, so the spatial index is compared by content (``dgn_SpatialIndex`` rows) instead.
``sqlite_master`` SQL is compared too (tables, indexes, triggers, views).

Files are opened read-only with ``immutable=1`` (they may be WAL files on read-only media); a file with a
pending ``-wal`` must be checkpointed first, and this refuses one rather than read stale pages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import apsw

UNTRACKED_PREFIXES = ("be_local", "dgn_txns", "dgn_rebase", "dgn_fts_idx", "dgn_spatialindex", "sqlite_")
SPATIAL_INDEX = "dgn_SpatialIndex"
_PREVIEW = 120


def open_readonly(path: str | os.PathLike[str]) -> apsw.Connection:
    name = os.fspath(path)
    wal = Path(name + "-wal")
    assert not (wal.exists() and wal.stat().st_size > 0), f"{name} has a pending WAL: checkpoint it first"
    return apsw.Connection(f"file:{name}?immutable=1", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)


def change_tracked_tables(conn: apsw.Connection) -> list[str]:
    """The tables a changeset can change, sorted (names as the file spells them)."""
    tables = []
    for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type='table' ORDER BY name"):
        if name.lower().startswith(UNTRACKED_PREFIXES) or (sql or "").upper().startswith("CREATE VIRTUAL"):
            continue
        if any(row[5] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (name,))):
            tables.append(name)
    return tables


def _key_columns(conn: apsw.Connection, table: str) -> list[str]:
    info = list(conn.execute("SELECT * FROM pragma_table_info(?)", (table,)))
    return [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]


def _rows(
    conn: apsw.Connection, table: str, columns: list[str], key: list[str]
) -> Iterator[tuple[object, ...]]:
    select = ", ".join(f"[{c}]" for c in columns)
    order = ", ".join(f"[{c}]" for c in key)
    yield from conn.execute(f"SELECT {select} FROM [{table}] ORDER BY {order}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _PREVIEW else f"{text[:_PREVIEW]}... ({len(text)} chars)"


def _schema(conn: apsw.Connection) -> dict[tuple[str, str], str | None]:
    return {
        (kind, name): sql
        for kind, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master")
        if not name.startswith("sqlite_autoindex")
    }


def table_differences(
    actual: apsw.Connection, expected: apsw.Connection, table: str, *, limit: int = 10
) -> list[str]:
    """Readable differences of one table: rows missing or extra by primary key, columns with both values."""
    columns = [row[1] for row in actual.execute("SELECT * FROM pragma_table_info(?)", (table,))]
    expected_columns = [row[1] for row in expected.execute("SELECT * FROM pragma_table_info(?)", (table,))]
    if columns != expected_columns:
        return [f"{table}: columns {columns} but expected {expected_columns}"]
    # The R-tree has no declared key: its rowid is the first column (ElementId).
    key = _key_columns(actual, table) or columns[:1]
    positions = [columns.index(k) for k in key if k in columns]
    out: list[str] = []
    left = {
        tuple(row[i] for i in positions) if positions else row: row
        for row in _rows(actual, table, columns, key)
    }
    for row in _rows(expected, table, columns, key):
        pk = tuple(row[i] for i in positions) if positions else row
        mine = left.pop(pk, None)
        shown = pk[0] if len(pk) == 1 else pk
        if mine is None:
            out.append(f"{table} pk {_show(shown)}: missing (expected {_show(row)})")
        elif mine != row:
            for column, a, b in zip(columns, mine, row, strict=True):
                if a != b or type(a) is not type(b):
                    out.append(
                        f"{table} pk {_show(shown)} column {column}: {_show(a)} != expected {_show(b)}"
                    )
        if len(out) >= limit:
            return out
    for pk, row in list(left.items())[: limit - len(out)]:
        out.append(f"{table} pk {_show(pk[0] if len(pk) == 1 else pk)}: unexpected row {_show(row)}")
    return out


def content_differences(
    actual_path: str | os.PathLike[str], expected_path: str | os.PathLike[str], *, limit: int = 20
) -> list[str]:
    """Every difference between two files' change-tracked content, spatial index and schema SQL."""
    actual, expected = open_readonly(actual_path), open_readonly(expected_path)
    try:
        out: list[str] = []
        mine, theirs = _schema(actual), _schema(expected)
        # All of sqlite_master, the local tables' schema included: only their content may differ.
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                mine_sql, their_sql = _show(mine.get(key)), _show(theirs.get(key))
                out.append(f"sqlite_master {key[0]} {key[1]}: {mine_sql} != expected {their_sql}")
        tables = change_tracked_tables(expected)
        mine_tables = change_tracked_tables(actual)
        if tables != mine_tables:
            out.append(f"change-tracked tables {sorted(set(mine_tables) ^ set(tables))} are in one file only")
        for table in [t for t in tables if t in mine_tables] + [SPATIAL_INDEX]:
            if len(out) >= limit:
                break
            out.extend(table_differences(actual, expected, table, limit=limit - len(out)))
        return out[:limit]
    finally:
        actual.close()
        expected.close()


def assert_same_content(actual_path: str | os.PathLike[str], expected_path: str | os.PathLike[str]) -> None:
    """Fail with each differing table, primary key, column and both values (first 20 differences)."""
    differences = content_differences(actual_path, expected_path)
    assert not differences, f"{actual_path} differs from {expected_path}:\n  " + "\n  ".join(differences)
