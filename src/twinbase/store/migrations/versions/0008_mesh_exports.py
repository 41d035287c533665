"""mesh exports: one row per iModel, changeset, type and tiler configuration

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import twinbase.store.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mesh_exports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("imodel_id", sa.String(length=36), nullable=False),
        sa.Column("itwin_id", sa.String(length=36), nullable=False),
        sa.Column("changeset_id", sa.String(length=64), nullable=False),
        sa.Column("changeset_index", sa.Integer(), nullable=False),
        sa.Column("export_type", sa.String(length=16), nullable=False),
        sa.Column("tiler_config", sa.JSON(), nullable=True),
        sa.Column("config_key", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=True),
        sa.Column("bundle_id", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", twinbase.store.models.UTCDateTime(), nullable=False),
        sa.Column("started_at", twinbase.store.models.UTCDateTime(), nullable=True),
        sa.Column("completed_at", twinbase.store.models.UTCDateTime(), nullable=True),
        sa.Column("last_modified", twinbase.store.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["imodel_id"],
            ["imodels.id"],
            name=op.f("fk_mesh_exports_imodel_id_imodels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mesh_exports")),
        sa.UniqueConstraint(
            "imodel_id", "changeset_id", "export_type", "config_key", name="uq_mesh_exports_request"
        ),
    )
    op.create_index("ix_mesh_exports_itwin_modified", "mesh_exports", ["itwin_id", "last_modified"])


def downgrade() -> None:
    op.drop_index("ix_mesh_exports_itwin_modified", table_name="mesh_exports")
    op.drop_table("mesh_exports")
