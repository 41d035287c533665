"""export connections and their runs (IFC)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import twinbase.store.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "export_connections",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("itwin_id", sa.String(length=36), nullable=False),
        sa.Column("imodel_id", sa.String(length=36), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=False),
        sa.Column("authentication_type", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", twinbase.store.models.UTCDateTime(), nullable=False),
        sa.Column("last_run_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_connections")),
    )
    op.create_index("ix_export_connections_imodel", "export_connections", ["imodel_id", "created_at"])
    op.create_table(
        "export_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("itwin_id", sa.String(length=36), nullable=False),
        sa.Column("imodel_id", sa.String(length=36), nullable=False),
        sa.Column("started_by", sa.String(length=255), nullable=False),
        sa.Column("run_as", sa.String(length=255), nullable=False),
        sa.Column("export_type", sa.String(length=16), nullable=False),
        sa.Column("ifc_version", sa.String(length=32), nullable=False),
        sa.Column("changeset_id", sa.String(length=64), nullable=False),
        sa.Column("changeset_index", sa.Integer(), nullable=False),
        sa.Column("model_ids", sa.JSON(), nullable=True),
        sa.Column("options_key", sa.String(length=64), nullable=False),
        sa.Column("active_slot", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("retry_attempts", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=True),
        sa.Column("output_key", sa.String(length=512), nullable=True),
        sa.Column("output_name", sa.String(length=255), nullable=True),
        sa.Column("output_size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", twinbase.store.models.UTCDateTime(), nullable=False),
        sa.Column("started_at", twinbase.store.models.UTCDateTime(), nullable=True),
        sa.Column("ended_at", twinbase.store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["export_connections.id"],
            name=op.f("fk_export_runs_connection_id_export_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_runs")),
        sa.UniqueConstraint("connection_id", "active_slot", name="uq_export_runs_active"),
    )
    op.create_index("ix_export_runs_connection", "export_runs", ["connection_id", "created_at"])
    op.create_index("ix_export_runs_reuse", "export_runs", ["imodel_id", "changeset_id", "options_key"])


def downgrade() -> None:
    op.drop_index("ix_export_runs_reuse", table_name="export_runs")
    op.drop_index("ix_export_runs_connection", table_name="export_runs")
    op.drop_table("export_runs")
    op.drop_index("ix_export_connections_imodel", table_name="export_connections")
    op.drop_table("export_connections")
