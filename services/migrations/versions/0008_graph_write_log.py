"""graph write pacing: the recent writes of each app and tenant, for a shared sliding window

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 09:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("graph_write_pacing") as batch:
        batch.add_column(sa.Column("recent", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("graph_write_pacing") as batch:
        batch.drop_column("recent")
