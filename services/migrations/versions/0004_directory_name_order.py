"""directory: an index in the order the directory lists users (by name, case ignored)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 05:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_users_enterprise_lower_name",
        "users",
        ["enterprise_id", sa.text("lower(display_name)")],
    )


def downgrade() -> None:
    op.drop_index("ix_users_enterprise_lower_name", table_name="users")
