"""changeset summaries (per-table counts, changed elements); checkpoints: error, pinning, last use

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 16:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import twinbase.store.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("changesets") as batch:
        batch.add_column(sa.Column("table_changes", sa.JSON(), nullable=True))
    op.create_table(
        "changeset_elements",
        sa.Column("imodel_id", sa.String(length=36), nullable=False),
        sa.Column("changeset_index", sa.Integer(), nullable=False),
        sa.Column("element_id", sa.BigInteger(), nullable=False),
        sa.Column("op", sa.String(length=1), nullable=False),
        sa.Column("model_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["imodel_id"],
            ["imodels.id"],
            name=op.f("fk_changeset_elements_imodel_id_imodels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "imodel_id", "changeset_index", "element_id", name=op.f("pk_changeset_elements")
        ),
    )
    op.create_index("ix_changeset_elements_element", "changeset_elements", ["imodel_id", "element_id"])
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pinned", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("used_at", twinbase.store.models.UTCDateTime(), nullable=True))
    # Checkpoints that exist today are baselines (index 0): they are always kept.
    op.execute("UPDATE checkpoints SET pinned = 'baseline' WHERE changeset_index = 0")


def downgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("used_at")
        batch.drop_column("pinned")
        batch.drop_column("error")
    op.drop_index("ix_changeset_elements_element", table_name="changeset_elements")
    op.drop_table("changeset_elements")
    with op.batch_alter_table("changesets") as batch:
        batch.drop_column("table_changes")
