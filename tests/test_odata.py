"""The $filter parser, executed on a real SQLite table (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, insert, select

from twinbase.domain.odata import FilterSyntaxError, UnknownProperty, compile_filter

meta = MetaData()
rows_table = Table(
    "t",
    meta,
    Column("id", Integer, primary_key=True),
    Column("name", String),
    Column("status", String),
    Column("size", Integer),
    Column("created", DateTime),
)
COLUMNS = {
    "name": rows_table.c.name,
    "status": rows_table.c.status,
    "size": rows_table.c.size,
    "createdDateTime": rows_table.c.created,
}


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    eng = create_engine("sqlite://")
    meta.create_all(eng)
    with eng.begin() as conn:
        conn.execute(
            insert(rows_table),
            [
                {
                    "id": 1,
                    "name": "Bridge A",
                    "status": "Active",
                    "size": 10,
                    "created": datetime(2024, 1, 1),
                },
                {"id": 2, "name": "Road B", "status": "Trial", "size": 20, "created": datetime(2025, 6, 1)},
                {
                    "id": 3,
                    "name": "O'Hare",
                    "status": "Inactive",
                    "size": 30,
                    "created": datetime(2026, 1, 1),
                },
                {"id": 4, "name": "100%_done", "status": "Active", "size": None, "created": None},
            ],
        )
    return eng


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status eq 'Active'", [1, 4]),
        ("status eq 'active'", [1, 4]),
        ("status ne 'Active'", [2, 3]),
        ("status eq 'Active' or status eq 'Trial'", [1, 2, 4]),
        ("status in ('Active','Trial')", [1, 2, 4]),
        ("status in ['Inactive']", [3]),
        ("size gt 10 and size le 30", [2, 3]),
        ("not (size ge 20)", [1]),
        ("size eq null", [4]),
        ("contains(name,'ro')", [2]),
        ("contains('ro', name)", [2]),
        ("startswith(name,'bridge')", [1]),
        ("endswith(name,'B')", [2]),
        ("name eq 'O''Hare'", [3]),
        ("contains(name,'%_')", [4]),
        ("createdDateTime gt 2025-01-01", [2, 3]),
        ("createdDateTime lt 2025-01-01T00:00:00Z", [1]),
        ("(status eq 'Active' or status eq 'Trial') and size lt 15", [1]),
    ],
)
def test_filters(engine, text: str, expected: list[int]) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        got = conn.scalars(select(rows_table.c.id).where(compile_filter(text, COLUMNS)).order_by("id")).all()
    assert got == expected


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("invalid filter syntax without proper operators", 14),
        ("status eq", 9),
        ("status eq 'x' and", 17),
        ("(status eq 'x'", 14),
        ("status in (", 11),
        ("status eq 'unterminated", 10),
        ("contains(name)", 14),
    ],
)
def test_syntax_errors(text: str, position: int) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        compile_filter(text, COLUMNS)
    assert info.value.position == position
    assert str(info.value) == f"Syntax error at position {position} in '{text}'."


def test_unknown_property() -> None:
    with pytest.raises(UnknownProperty, match="colour"):
        compile_filter("colour eq 'red'", COLUMNS)


def test_aware_datetimes() -> None:
    expr = compile_filter("createdDateTime ge 2024-05-01T10:00:00+02:00", COLUMNS)
    assert expr.right.value == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)  # type: ignore[attr-defined]
