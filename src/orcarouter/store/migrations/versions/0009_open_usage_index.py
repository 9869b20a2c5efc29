"""A partial index of the usage records still ``open``, for the sweep that settles those a
stopped process left: it read the whole table, holding SQLite's write lock meanwhile.

Building it reads the table once (no rows are open in most of it, so the index is tiny). On
PostgreSQL the build blocks writes to ``usage_records`` for that read: replicas still serving
keep their records queued (and journaled) and write them after it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_OPEN = sa.text("outcome = 'open'")


def upgrade() -> None:
    """Index ``created_at`` of the open rows only."""
    op.create_index(
        "ix_usage_records_open",
        "usage_records",
        ["created_at"],
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )


def downgrade() -> None:
    """Drop the index (the sweep reads the whole table again)."""
    op.drop_index("ix_usage_records_open", table_name="usage_records")
