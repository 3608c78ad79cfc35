"""pbx: hunt groups, desk phone credentials, push leases, the built-in PBX configuration

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:12:40.118204
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hunt_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", services.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprises.id"],
            name=op.f("fk_hunt_groups_enterprise_id_enterprises"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hunt_groups")),
        sa.UniqueConstraint(
            "enterprise_id", "name", name=op.f("uq_hunt_groups_enterprise_id_name")
        ),
    )
    op.create_table(
        "hunt_group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("added_at", services.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["hunt_groups.id"],
            name=op.f("fk_hunt_group_members_group_id_hunt_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_hunt_group_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_hunt_group_members")),
    )
    with op.batch_alter_table("hunt_group_members", schema=None) as batch_op:
        batch_op.create_index("ix_hunt_group_members_user", ["user_id"], unique=False)

    op.create_table(
        "pbx_sip_credentials",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=40), nullable=False),
        sa.Column("realm", sa.String(length=255), nullable=False),
        sa.Column("md5_cred", sa.String(length=32), nullable=False),
        sa.Column("issued_at", services.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_pbx_sip_credentials_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_pbx_sip_credentials")),
    )
    op.create_table(
        "pbx_leases",
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", services.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprises.id"],
            name=op.f("fk_pbx_leases_enterprise_id_enterprises"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("enterprise_id", name=op.f("pk_pbx_leases")),
    )
    op.create_table(
        "pbx_lines",
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("caller_name", sa.String(length=64), nullable=False),
        sa.Column("caller_number", sa.String(length=20), nullable=False),
        sa.Column("caller_private", sa.Boolean(), nullable=False),
        sa.Column("send_pai", sa.Boolean(), nullable=False),
        sa.Column("pai_number", sa.String(length=20), nullable=True),
        sa.Column("sip_username", sa.String(length=40), nullable=True),
        sa.Column("sip_realm", sa.String(length=255), nullable=True),
        sa.Column("sip_md5_cred", sa.String(length=32), nullable=True),
        sa.Column("updated_at", services.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprises.id"],
            name=op.f("fk_pbx_lines_enterprise_id_enterprises"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("endpoint", name=op.f("pk_pbx_lines")),
    )
    with op.batch_alter_table("pbx_lines", schema=None) as batch_op:
        batch_op.create_index("ix_pbx_lines_enterprise", ["enterprise_id"], unique=False)

    op.create_table(
        "pbx_routes",
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprises.id"],
            name=op.f("fk_pbx_routes_enterprise_id_enterprises"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("enterprise_id", "kind", "key", name=op.f("pk_pbx_routes")),
    )
    with op.batch_alter_table("pbx_routes", schema=None) as batch_op:
        batch_op.create_index("ix_pbx_routes_endpoint", ["endpoint"], unique=False)

    op.create_table(
        "pbx_line_groups",
        sa.Column("queue_name", sa.String(length=80), nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("queue_name", "endpoint", name=op.f("pk_pbx_line_groups")),
    )
    with op.batch_alter_table("pbx_line_groups", schema=None) as batch_op:
        batch_op.create_index("ix_pbx_line_groups_endpoint", ["endpoint"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pbx_line_groups", schema=None) as batch_op:
        batch_op.drop_index("ix_pbx_line_groups_endpoint")
    op.drop_table("pbx_line_groups")
    with op.batch_alter_table("pbx_routes", schema=None) as batch_op:
        batch_op.drop_index("ix_pbx_routes_endpoint")
    op.drop_table("pbx_routes")
    with op.batch_alter_table("pbx_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_pbx_lines_enterprise")
    op.drop_table("pbx_lines")
    op.drop_table("pbx_leases")
    op.drop_table("pbx_sip_credentials")
    with op.batch_alter_table("hunt_group_members", schema=None) as batch_op:
        batch_op.drop_index("ix_hunt_group_members_user")
    op.drop_table("hunt_group_members")
    op.drop_table("hunt_groups")
