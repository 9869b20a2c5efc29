"""Wallets, the ledger of every money movement, and each key's lifetime spend.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``wallets``, ``ledger_entries`` and ``key_spend``."""
    op.create_table(
        "wallets",
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), primary_key=True),
        sa.Column("balance_micros", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_micros", sa.BigInteger, nullable=False),
        sa.Column("balance_after_micros", sa.BigInteger, nullable=True),
        sa.Column("request_id", sa.String(40), nullable=True, unique=True),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("actor", sa.String(80), nullable=True),
        sa.Column("note", sa.String(200), nullable=True),
    )
    op.create_index(
        "ix_ledger_entries_workspace_created", "ledger_entries", ["workspace_id", "created_at"]
    )
    op.create_table(
        "key_spend",
        sa.Column("key_id", sa.String(40), sa.ForeignKey("api_keys.id"), primary_key=True),
        sa.Column("spent_micros", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    """Drop the money tables."""
    op.drop_table("key_spend")
    op.drop_index("ix_ledger_entries_workspace_created", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("wallets")
