"""The cost of every request, in integer micro-dollars.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``cost_micros`` (None: the model has no price) to ``usage_records``."""
    op.add_column("usage_records", sa.Column("cost_micros", sa.BigInteger, nullable=True))


def downgrade() -> None:
    """Drop ``cost_micros``."""
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("cost_micros")
