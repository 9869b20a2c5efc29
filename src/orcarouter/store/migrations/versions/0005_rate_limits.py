"""Rate limits per key and per workspace: requests/min, tokens/min, concurrent requests.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = ("rpm_limit", "tpm_limit", "concurrency_limit")


def upgrade() -> None:
    """Add the three limits (None: unlimited) to ``api_keys`` and ``workspaces``."""
    for table in ("api_keys", "workspaces"):
        for name in _COLUMNS:
            op.add_column(table, sa.Column(name, sa.Integer, nullable=True))


def downgrade() -> None:
    """Drop the limits."""
    for table in ("workspaces", "api_keys"):
        with op.batch_alter_table(table) as batch:
            for name in _COLUMNS:
                batch.drop_column(name)
