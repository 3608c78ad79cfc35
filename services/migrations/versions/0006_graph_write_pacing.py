"""graph write pacing: the next moment each app may write to each tenant, shared by workers

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 09:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graph_write_pacing",
        sa.Column("budget_key", sa.String(200), primary_key=True),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("graph_write_pacing")
