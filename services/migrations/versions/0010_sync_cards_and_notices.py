"""sync runs keep the card their Global Admin pressed; notices about an enterprise itself

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("card_activity_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("card_conversation_id", sa.String(512), nullable=True))
    with op.batch_alter_table("sync_notices") as batch:
        batch.alter_column("sync_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("enterprise_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("detail", sa.JSON(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_sync_notices_enterprise_id_enterprises"),
            "enterprises",
            ["enterprise_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_notices") as batch:
        batch.drop_constraint(op.f("fk_sync_notices_enterprise_id_enterprises"), type_="foreignkey")
        batch.drop_column("detail")
        batch.drop_column("enterprise_id")
        batch.alter_column("sync_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("card_conversation_id")
        batch.drop_column("card_activity_id")
