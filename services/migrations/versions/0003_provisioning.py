"""provisioning: per-user sync items with leases, and the proactive notices about syncs

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23 10:02:11.504113
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.models

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

_OUTBOX_STATUS = sa.Enum(
    "pending",
    "in_progress",
    "done",
    "failed",
    name="outboxstatus",
    native_enum=False,
    length=24,
)


def upgrade() -> None:
    op.create_table(
        "provisioning_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column(
            "action",
            sa.Enum("provision", "remove", name="provisioningaction", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column(
            "step",
            sa.Enum(
                "entra_user",
                "licence",
                "number",
                "policy",
                "verify",
                "notify",
                "done",
                name="provisioningstep",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("status", _OUTBOX_STATUS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", services.models.UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", services.models.UTCDateTime(), nullable=True),
        sa.Column("entra_created", sa.Boolean(), nullable=False),
        sa.Column("finished_by", sa.String(length=100), nullable=True),
        sa.Column("created_at", services.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", services.models.UTCDateTime(), nullable=False),
        sa.Column("finished_at", services.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprises.id"],
            name=op.f("fk_provisioning_items_enterprise_id_enterprises"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sync_id"],
            ["sync_runs.id"],
            name=op.f("fk_provisioning_items_sync_id_sync_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_provisioning_items_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provisioning_items")),
        sa.UniqueConstraint(
            "sync_id", "user_id", name=op.f("uq_provisioning_items_sync_id_user_id")
        ),
    )
    with op.batch_alter_table("provisioning_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_provisioning_items_due",
            ["enterprise_id", "status", "next_attempt_at"],
            unique=False,
        )
        batch_op.create_index("ix_provisioning_items_sync", ["sync_id", "status"], unique=False)

    op.create_table(
        "sync_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "sync.finished", "sync.overdue", name="noticekind", native_enum=False, length=24
            ),
            nullable=False,
        ),
        sa.Column("status", _OUTBOX_STATUS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", services.models.UTCDateTime(), nullable=False),
        sa.Column("delivered_to", sa.JSON(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", services.models.UTCDateTime(), nullable=False),
        sa.Column("sent_at", services.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["sync_id"],
            ["sync_runs.id"],
            name=op.f("fk_sync_notices_sync_id_sync_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_notices")),
        sa.UniqueConstraint("sync_id", "kind", name=op.f("uq_sync_notices_sync_id_kind")),
    )
    with op.batch_alter_table("sync_notices", schema=None) as batch_op:
        batch_op.create_index("ix_sync_notices_due", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sync_notices", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_notices_due")
    op.drop_table("sync_notices")
    with op.batch_alter_table("provisioning_items", schema=None) as batch_op:
        batch_op.drop_index("ix_provisioning_items_sync")
        batch_op.drop_index("ix_provisioning_items_due")
    op.drop_table("provisioning_items")
