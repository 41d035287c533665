"""lists at scale: a user's favorite iTwins and iModels newest first, by keyset

Follows 0014 (which was merged first and revises 0012), so that a database already at 0014 gets these
indexes too; the history stays one line.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_favorites_user_created", "favorites", ["user_id", "created_at", "itwin_id"])
    op.create_index(
        "ix_imodel_favorites_user_created", "imodel_favorites", ["user_id", "created_at", "imodel_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_imodel_favorites_user_created", table_name="imodel_favorites")
    op.drop_index("ix_favorites_user_created", table_name="favorites")
