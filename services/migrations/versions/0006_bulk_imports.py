"""bulk: imports of many users from a spreadsheet, each row's plan and fate

Revision ID: 0006_bulk
Revises: 0005
Create Date: 2026-11-30 09:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_bulk"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.JSON(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('applying', 'finished')", name=op.f("ck_bulk_imports_importstatus")
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprises.id"],
            name=op.f("fk_bulk_imports_enterprise_id_enterprises"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_imports")),
        sa.UniqueConstraint(
            "enterprise_id", "token", name=op.f("uq_bulk_imports_enterprise_id_token")
        ),
    )
    op.create_index(
        "ix_bulk_imports_enterprise_status", "bulk_imports", ["enterprise_id", "status"]
    )
    op.create_table(
        "bulk_import_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("number", sa.String(length=20), nullable=True),
        sa.Column("extension", sa.Integer(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "action IN ('create', 'update', 'remove', 'unchanged', 'rejected')",
            name=op.f("ck_bulk_import_rows_rowaction"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'applied', 'failed', 'rejected', 'unchanged')",
            name=op.f("ck_bulk_import_rows_rowstatus"),
        ),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["bulk_imports.id"],
            name=op.f("fk_bulk_import_rows_import_id_bulk_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_import_rows")),
        sa.UniqueConstraint("import_id", "line", name=op.f("uq_bulk_import_rows_import_id_line")),
    )
    op.create_index("ix_bulk_import_rows_todo", "bulk_import_rows", ["import_id", "status", "seq"])


def downgrade() -> None:
    op.drop_index("ix_bulk_import_rows_todo", table_name="bulk_import_rows")
    op.drop_table("bulk_import_rows")
    op.drop_index("ix_bulk_imports_enterprise_status", table_name="bulk_imports")
    op.drop_table("bulk_imports")
