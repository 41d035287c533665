"""jobs: claim token, progress, cancellation, result; content hashes of completed files

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import twinbase.store.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("progress", sa.Float(), nullable=True))
        batch.add_column(sa.Column("progress_message", sa.String(length=512), nullable=True))
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("started_at", twinbase.store.models.UTCDateTime(), nullable=True))
    with op.batch_alter_table("baseline_files") as batch:
        batch.add_column(sa.Column("content_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("changesets") as batch:
        batch.add_column(sa.Column("content_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("changesets") as batch:
        batch.drop_column("content_sha256")
    with op.batch_alter_table("baseline_files") as batch:
        batch.drop_column("content_sha256")
    with op.batch_alter_table("jobs") as batch:
        for name in (
            "started_at",
            "result",
            "cancel_requested",
            "progress_message",
            "progress",
            "claim_token",
        ):
            batch.drop_column(name)
