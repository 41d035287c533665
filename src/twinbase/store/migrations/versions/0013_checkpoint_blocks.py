"""checkpoints as CloudSqlite containers: each checkpoint's block ids

A checkpoint made from now on is also stored as CloudSqlite blocks (``domain.containers``); its row
keeps the 16-byte ids of its blocks in file order, from which the iModel's container manifest is
composed. Rows made before stay NULL: they are served as plain ``.bim`` files only.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("blocks", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("blocks")
