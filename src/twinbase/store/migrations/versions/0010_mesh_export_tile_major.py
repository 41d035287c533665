"""mesh exports: the iMdl major version of an IMODEL export's tiles

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mesh_exports") as batch:
        batch.add_column(sa.Column("tile_major", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mesh_exports") as batch:
        batch.drop_column("tile_major")
