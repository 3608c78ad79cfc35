"""enterprises: the voice routing policy (by name) each enterprise's calling users get

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 09:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enterprises") as batch:
        batch.add_column(sa.Column("voice_routing_policy", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enterprises") as batch:
        batch.drop_column("voice_routing_policy")
