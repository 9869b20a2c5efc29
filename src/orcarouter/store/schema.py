"""The tables, as SQLAlchemy Core metadata. Migrations in ``migrations/`` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)

metadata = MetaData()

# The rows of requests stored ``open`` before their upstream call and not settled yet. Written
# as literal SQL, in the partial index below and in the queries meant to use it: a generic
# PostgreSQL plan (a statement prepared once, run many times) cannot use a partial index for a
# bound parameter.
OPEN_USAGE = text("outcome = 'open'")

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Workspace-wide rate limits across all its keys (0005); None = unlimited.
    Column("rpm_limit", Integer, nullable=True),
    Column("tpm_limit", Integer, nullable=True),
    Column("concurrency_limit", Integer, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("display_prefix", String(32), nullable=False),
    Column("role", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    # The hosted token object's limits (0002): JSON lists as text, money in micro-dollars.
    Column("model_limits_enabled", Boolean, nullable=False, server_default=false()),
    Column("model_limits", Text, nullable=False, server_default="[]"),
    Column("allow_ips", Text, nullable=False, server_default="[]"),
    Column("usd_cap_micros", BigInteger, nullable=True),
    Column("environment", String(32), nullable=True),
    Column("created_by", String(40), nullable=True),
    # The key's rate limits (0005); None = unlimited.
    Column("rpm_limit", Integer, nullable=True),
    Column("tpm_limit", Integer, nullable=True),
    Column("concurrency_limit", Integer, nullable=True),
    Index("ix_api_keys_updated_at", "updated_at"),
)

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

workspace_members = Table(
    "workspace_members",
    metadata,
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("workspace_id", "user_id", name="pk_workspace_members"),
    Index("ix_workspace_members_user", "user_id"),
)

auth_sessions = Table(
    "auth_sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("csrf_hash", String(64), nullable=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index("ix_auth_sessions_user", "user_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("workspace_id", String(40), nullable=True),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(40), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("detail", Text, nullable=False, server_default="{}"),
    Column("client_ip", String(64), nullable=True),
    Index("ix_audit_log_workspace_created", "workspace_id", "created_at"),
)

usage_records = Table(
    "usage_records",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("workspace_id", String(40), nullable=True),
    Column("key_id", String(40), nullable=True),
    Column("endpoint", String(32), nullable=False),
    Column("model_requested", String(200), nullable=True),
    Column("model_served", String(200), nullable=True),
    Column("upstream_model", String(200), nullable=True),
    Column("provider_id", String(64), nullable=True),
    Column("stream", Boolean, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("outcome", String(24), nullable=False),
    Column("error_type", String(64), nullable=True),
    Column("prompt_tokens", BigInteger, nullable=True),
    Column("completion_tokens", BigInteger, nullable=True),
    Column("total_tokens", BigInteger, nullable=True),
    Column("cache_read_tokens", BigInteger, nullable=True),
    Column("cache_write_tokens", BigInteger, nullable=True),
    Column("reasoning_tokens", BigInteger, nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("ttft_ms", Integer, nullable=True),
    Column("route_reason", Text, nullable=True),  # 0003: the router's decision, as JSON
    Column("cost_micros", BigInteger, nullable=True),  # 0004: USD x 1e6; None: unpriced
    Index("ix_usage_records_workspace_created", "workspace_id", "created_at"),
    Index("ix_usage_records_key_created", "key_id", "created_at"),
    # 0009: the sweep of rows left open reads these few rows, not the whole table.
    Index(
        "ix_usage_records_open",
        "created_at",
        sqlite_where=OPEN_USAGE,
        postgresql_where=OPEN_USAGE,
    ),
)

# Named routers (0003): JSON lists and maps as text, as the key limits are.
routers = Table(
    "routers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(50), nullable=False),
    Column("strategy", String(16), nullable=False),
    Column("allowed_models", Text, nullable=False, server_default="[]"),
    Column("default_model", String(200), nullable=True),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("quality_bar", Integer, nullable=True),
    Column("priority", Text, nullable=False, server_default="[]"),
    Column("weights", Text, nullable=False, server_default="{}"),
    Column("quality_scores", Text, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("workspace_id", "name", name="uq_routers_workspace_name"),
)

# Money (0006): a wallet per paying workspace, every movement in the ledger, and each key's
# lifetime spend for its USD cap. Amounts are integer micro-dollars (USD x 1e6).
wallets = Table(
    "wallets",
    metadata,
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), primary_key=True),
    Column("balance_micros", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),  # topup | charge | adjustment
    Column("amount_micros", BigInteger, nullable=False),  # signed: charges are negative
    Column("balance_after_micros", BigInteger, nullable=True),  # None: no wallet (cap only)
    Column("request_id", String(40), nullable=True, unique=True),  # a charge's request
    Column("key_id", String(40), nullable=True),
    Column("actor", String(80), nullable=True),  # who topped up or adjusted
    Column("note", String(200), nullable=True),
    Index("ix_ledger_entries_workspace_created", "workspace_id", "created_at"),
)

key_spend = Table(
    "key_spend",
    metadata,
    Column("key_id", String(40), ForeignKey("api_keys.id"), primary_key=True),
    Column("spent_micros", BigInteger, nullable=False),
)

# Workspace provider credentials (0007, BYOK): a workspace's own API key for a configured
# provider, AES-256-GCM encrypted (base64 text) under the secret key named by ``key_version``;
# ``hint`` is the only readable part (``sk-...abcd``). See accounts/credentials.py.
provider_credentials = Table(
    "provider_credentials",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("provider_id", String(64), nullable=False),
    Column("ciphertext", Text, nullable=False),
    Column("key_version", String(32), nullable=False),
    Column("hint", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(40), nullable=True),
    UniqueConstraint(
        "workspace_id", "provider_id", name="uq_provider_credentials_workspace_provider"
    ),
)

# Budget holds (0008): what each request holds against its workspace's wallet and its key's
# USD cap until its charge is committed, when budgets are exact through the database (no Redis;
# see metering/database_budgets.py). Both ids are stored; a hold counts wherever a wallet or a
# cap exists. ``state``: open (the worst case) | settled (the actual cost, not yet written).
budget_holds = Table(
    "budget_holds",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("workspace_id", String(40), nullable=True),
    Column("key_id", String(40), nullable=True),
    Column("amount_micros", BigInteger, nullable=False),
    Column("state", String(8), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_budget_holds_workspace", "workspace_id"),
    Index("ix_budget_holds_key", "key_id"),
)
