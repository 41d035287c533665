"""$search on iTwins by index: an FTS5 trigram table on SQLite, pg_trgm GIN indexes on PostgreSQL

``$search`` matches iTwins whose displayName or number contains the text, case-insensitively: a
substring, which no B-tree serves. SQLite: ``itwins_search``, an external-content FTS5 table with the
trigram tokenizer over ``itwins`` (kept by triggers; it follows ``itwins``' rowids, so a VACUUM of the
database must be followed by ``INSERT INTO itwins_search(itwins_search) VALUES ('rebuild')``).
PostgreSQL: trigram GIN indexes on ``lower(display_name)`` and ``lower(number)``, which serve the
``LIKE '%text%'`` the query already uses (pg_trgm is a trusted extension: the database's owner may
create it).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 02:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_UP = (
    "CREATE VIRTUAL TABLE itwins_search USING fts5("
    "display_name, number, content='itwins', content_rowid='rowid', tokenize='trigram')",
    "CREATE TRIGGER itwins_search_insert AFTER INSERT ON itwins BEGIN"
    " INSERT INTO itwins_search(rowid, display_name, number)"
    " VALUES (new.rowid, new.display_name, new.number);"
    " END",
    "CREATE TRIGGER itwins_search_delete AFTER DELETE ON itwins BEGIN"
    " INSERT INTO itwins_search(itwins_search, rowid, display_name, number)"
    " VALUES ('delete', old.rowid, old.display_name, old.number);"
    " END",
    "CREATE TRIGGER itwins_search_update AFTER UPDATE OF display_name, number ON itwins BEGIN"
    " INSERT INTO itwins_search(itwins_search, rowid, display_name, number)"
    " VALUES ('delete', old.rowid, old.display_name, old.number);"
    " INSERT INTO itwins_search(rowid, display_name, number)"
    " VALUES (new.rowid, new.display_name, new.number);"
    " END",
    "INSERT INTO itwins_search(itwins_search) VALUES ('rebuild')",
)
_SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS itwins_search_update",
    "DROP TRIGGER IF EXISTS itwins_search_delete",
    "DROP TRIGGER IF EXISTS itwins_search_insert",
    "DROP TABLE IF EXISTS itwins_search",
)
_PG_UP = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_itwins_display_name_trgm ON itwins USING gin (lower(display_name) gin_trgm_ops)",
    "CREATE INDEX ix_itwins_number_trgm ON itwins USING gin (lower(number) gin_trgm_ops)",
)
_PG_DOWN = ("DROP INDEX IF EXISTS ix_itwins_number_trgm", "DROP INDEX IF EXISTS ix_itwins_display_name_trgm")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_UP if dialect == "sqlite" else _PG_UP if dialect == "postgresql" else ():
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_DOWN if dialect == "sqlite" else _PG_DOWN if dialect == "postgresql" else ():
        op.execute(statement)
