"""Budget holds in the database: every process's open reservations, for budgets exact across
processes without Redis (``metering.database_budgets``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``budget_holds``: one row per held request, until its charge is committed."""
    op.create_table(
        "budget_holds",
        sa.Column("request_id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), nullable=True),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("amount_micros", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_budget_holds_workspace", "budget_holds", ["workspace_id"])
    op.create_index("ix_budget_holds_key", "budget_holds", ["key_id"])


def downgrade() -> None:
    """Drop the holds (open requests are then held per process only)."""
    op.drop_index("ix_budget_holds_key", table_name="budget_holds")
    op.drop_index("ix_budget_holds_workspace", table_name="budget_holds")
    op.drop_table("budget_holds")
