"""Named routers, ``orcarouter/auto`` for every existing workspace, and the route reason.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``routers``, seed ``orcarouter/auto`` per workspace, add ``route_reason``."""
    routers = op.create_table(
        "routers",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("allowed_models", sa.Text, nullable=False, server_default="[]"),
        sa.Column("default_model", sa.String(200), nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("quality_bar", sa.Integer, nullable=True),
        sa.Column("priority", sa.Text, nullable=False, server_default="[]"),
        sa.Column("weights", sa.Text, nullable=False, server_default="{}"),
        sa.Column("quality_scores", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("workspace_id", "name", name="uq_routers_workspace_name"),
    )
    op.add_column("usage_records", sa.Column("route_reason", sa.Text, nullable=True))
    workspaces = sa.table("workspaces", sa.column("id", sa.String))
    existing = [row.id for row in op.get_bind().execute(sa.select(workspaces.c.id))]
    now = datetime.now(UTC)
    if existing:
        op.bulk_insert(
            routers,
            [
                {
                    "id": f"rtr_{secrets.token_hex(12)}",
                    "workspace_id": workspace_id,
                    "name": "auto",
                    "strategy": "cheapest",
                    "allowed_models": "[]",
                    "enabled": True,
                    "priority": "[]",
                    "weights": "{}",
                    "quality_scores": "{}",
                    "created_at": now,
                    "updated_at": now,
                }
                for workspace_id in existing
            ],
        )


def downgrade() -> None:
    """Drop the routers and the route reason."""
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("route_reason")
    op.drop_table("routers")
