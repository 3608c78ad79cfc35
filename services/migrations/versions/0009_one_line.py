"""merge: bulk imports and the Graph write log branched from 0005; one line again from here

Revision ID: 0009
Revises: 0006_bulk, 0008
Create Date: 2026-11-30 10:20:00.000000
"""

from __future__ import annotations

revision = "0009"
down_revision = ("0006_bulk", "0008")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: the two branches touch different tables."""


def downgrade() -> None:
    """Nothing to change."""
