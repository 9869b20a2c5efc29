"""Workspace provider credentials (BYOK), encrypted with a key held outside the database.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``provider_credentials``: one encrypted key per workspace and provider."""
    op.create_table(
        "provider_credentials",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("provider_id", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.Text, nullable=False),
        sa.Column("key_version", sa.String(32), nullable=False),
        sa.Column("hint", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.UniqueConstraint(
            "workspace_id", "provider_id", name="uq_provider_credentials_workspace_provider"
        ),
    )


def downgrade() -> None:
    """Drop the credentials (their ciphertexts are gone with them)."""
    op.drop_table("provider_credentials")
