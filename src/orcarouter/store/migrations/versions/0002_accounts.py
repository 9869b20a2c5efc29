"""Users, workspace members, management sessions, the audit log and the key object's limits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_KEY_COLUMNS = (
    sa.Column("model_limits_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("model_limits", sa.Text, nullable=False, server_default="[]"),
    sa.Column("allow_ips", sa.Text, nullable=False, server_default="[]"),
    sa.Column("usd_cap_micros", sa.BigInteger, nullable=True),
    sa.Column("environment", sa.String(32), nullable=True),
    sa.Column("created_by", sa.String(40), nullable=True),
)


def upgrade() -> None:
    """Create the account tables and add the key limits (constant defaults: portable)."""
    for column in _KEY_COLUMNS:
        op.add_column("api_keys", column)
    op.create_table(
        "users",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "workspace_members",
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "user_id", name="pk_workspace_members"),
    )
    op.create_index("ix_workspace_members_user", "workspace_members", ["user_id"])
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("csrf_hash", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_auth_sessions_user", "auth_sessions", ["user_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=True),
        sa.Column("actor_type", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(40), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=True),
        sa.Column("target_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
        sa.Column("client_ip", sa.String(64), nullable=True),
    )
    op.create_index("ix_audit_log_workspace_created", "audit_log", ["workspace_id", "created_at"])


def downgrade() -> None:
    """Drop the account tables and the key limits."""
    op.drop_table("audit_log")
    op.drop_table("auth_sessions")
    op.drop_table("workspace_members")
    op.drop_table("users")
    with op.batch_alter_table("api_keys") as batch:  # SQLite drops columns by copying the table
        for column in reversed(_KEY_COLUMNS):
            batch.drop_column(column.name)
