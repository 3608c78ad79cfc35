"""pbx: hunt groups get a ring strategy, an extension and a direct number

Revision ID: 0005
Revises: 0002, 0004
Create Date: 2026-11-30 09:10:00.000000
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = ("0002", "0004")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hunt_groups", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("strategy", sa.String(length=16), nullable=False, server_default="ringall")
        )
    # SQLite's batch mode reflects the tables it copies; an expression index of another table
    # (users, by lower(display_name)) is not its business and stays as it is.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression")
        for table in ("extensions", "phone_numbers"):
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.add_column(sa.Column("hunt_group_id", sa.Integer(), nullable=True))
                batch_op.create_foreign_key(
                    op.f(f"fk_{table}_hunt_group_id_hunt_groups"),
                    "hunt_groups",
                    ["hunt_group_id"],
                    ["id"],
                    ondelete="SET NULL",
                )
                batch_op.create_unique_constraint(
                    op.f(f"uq_{table}_hunt_group_id"), ["hunt_group_id"]
                )


def downgrade() -> None:
    for table in ("phone_numbers", "extensions"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"uq_{table}_hunt_group_id"), type_="unique")
            batch_op.drop_constraint(
                op.f(f"fk_{table}_hunt_group_id_hunt_groups"), type_="foreignkey"
            )
            batch_op.drop_column("hunt_group_id")
    with op.batch_alter_table("hunt_groups", schema=None) as batch_op:
        batch_op.drop_column("strategy")
