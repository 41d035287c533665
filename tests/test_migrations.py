"""Alembic migrations produce exactly the schema of the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from conftest import create_pg_database, drop_pg_database, pg_url
from twinbase.store.db import upgrade
from twinbase.store.models import Base


def _modelled(name: str | None, type_: str, parent_names: object) -> bool:
    if name is None:
        return True
    if type_ == "table" and name.startswith("itwins_search"):
        return False
    return not (type_ == "index" and name.endswith("_trgm"))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_match_models(backend: str, tmp_path: Path) -> None:
    name = None
    if backend == "postgres":
        name = create_pg_database()
        url = pg_url(name)
    else:
        url = f"sqlite:///{tmp_path / 'm.db'}"
    try:
        upgrade(url)
        upgrade(url)  # idempotent
        engine = create_engine(url)
        with engine.connect() as conn:
            # Migration 0012's search structures live outside the models: the FTS5 table (and its
            # shadow tables) on SQLite, the trigram indexes on PostgreSQL.
            context = MigrationContext.configure(conn, opts={"include_name": _modelled})
            diff = compare_metadata(context, Base.metadata)
        engine.dispose()
        assert diff == [], diff
    finally:
        if name:
            drop_pg_database(name)
