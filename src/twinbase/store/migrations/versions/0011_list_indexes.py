"""lists at scale: members carry their iTwin's createdDateTime (the iTwins list's keyset order);
indexes for the case-insensitive equality filters on number and displayName

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 02:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import twinbase.store.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("itwin_created_at", twinbase.store.models.UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE members SET itwin_created_at ="
        " (SELECT itwins.created_at FROM itwins WHERE itwins.id = members.itwin_id)"
    )
    with op.batch_alter_table("members") as batch:
        batch.alter_column(
            "itwin_created_at", existing_type=twinbase.store.models.UTCDateTime(), nullable=False
        )
    op.create_index("ix_members_user_created", "members", ["user_id", "itwin_created_at", "itwin_id"])
    op.create_index("ix_members_itwin_created", "members", ["itwin_id", "created_at", "user_id"])
    op.create_index("ix_itwins_number_lower", "itwins", [sa.text("lower(number)")])
    op.create_index("ix_itwins_display_name_lower", "itwins", [sa.text("lower(display_name)")])
    op.create_index("ix_itwins_display_name", "itwins", ["display_name"])
    op.create_index("ix_imodels_itwin_created", "imodels", ["itwin_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_imodels_itwin_created", table_name="imodels")
    op.drop_index("ix_itwins_display_name", table_name="itwins")
    op.drop_index("ix_itwins_display_name_lower", table_name="itwins")
    op.drop_index("ix_itwins_number_lower", table_name="itwins")
    op.drop_index("ix_members_itwin_created", table_name="members")
    op.drop_index("ix_members_user_created", table_name="members")
    with op.batch_alter_table("members") as batch:
        batch.drop_column("itwin_created_at")
