"""Request and response bodies of the management API (they generate its OpenAPI document).

Requests forbid unknown fields, so a caller cannot set what it may not (``workspace_id``,
``created_by``, a key's hash): mass assignment is refused with 400.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orcarouter.accounts.limits import (
    MAX_NETWORKS,
    MAX_PATTERNS,
    MAX_RATE_LIMIT,
    MAX_USD_CAP_MICROS,
)

# Printable text without control characters; stored as given, always as a bound parameter.
NAME = r"^[^\x00-\x1f\x7f]+$"
ENVIRONMENT = r"^[A-Za-z0-9._-]+$"

MemberRole = Literal["viewer", "developer", "admin"]
KeyRole = Literal["member", "viewer", "developer", "admin"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Rate limits (requests/min, tokens/min counting prompt and output, requests in flight).
def _rate_limit(description: str) -> Any:
    return Field(default=None, ge=1, le=MAX_RATE_LIMIT, description=description + "; null = none")


RPM = "requests per minute"
TPM = "tokens per minute, prompt and output"
CONCURRENCY = "requests in flight at once"


class RegisterRequest(_Request):
    email: str = Field(max_length=320)
    password: str = Field(max_length=256)
    workspace_name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME)


class LoginRequest(_Request):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class UserOut(BaseModel):
    id: str
    email: str
    created_at: datetime


class WorkspaceOut(BaseModel):
    id: str
    name: str
    role: str = Field(description="the caller's role in this workspace")
    created_at: datetime | None = None


class RegisterResponse(BaseModel):
    user: UserOut
    workspace: WorkspaceOut


class LoginResponse(BaseModel):
    user: UserOut
    token: str = Field(description="management token for scripts (Bearer); shown once")
    token_expires_at: datetime
    csrf_token: str = Field(description="send as X-CSRF-Token with cookie-authenticated writes")
    session_expires_at: datetime


class KeyIdentity(BaseModel):
    id: str
    name: str
    workspace_id: str
    role: str


class MeResponse(BaseModel):
    kind: Literal["user", "key"]
    user: UserOut | None = None
    key: KeyIdentity | None = None
    workspaces: list[WorkspaceOut]


class WorkspaceCreate(_Request):
    name: str = Field(min_length=1, max_length=200, pattern=NAME)


class WorkspaceDetail(WorkspaceOut):
    """A workspace with its workspace-wide rate limits (shared by all its keys)."""

    rpm_limit: int | None = _rate_limit(RPM)
    tpm_limit: int | None = _rate_limit(TPM)
    concurrency_limit: int | None = _rate_limit(CONCURRENCY)


class WorkspaceUpdate(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME)
    rpm_limit: int | None = _rate_limit(RPM)
    tpm_limit: int | None = _rate_limit(TPM)
    concurrency_limit: int | None = _rate_limit(CONCURRENCY)


class MemberOut(BaseModel):
    user_id: str
    email: str
    role: str
    created_at: datetime


class MemberAdd(_Request):
    email: str = Field(max_length=320)
    role: MemberRole = "viewer"


class MemberUpdate(_Request):
    role: MemberRole


class KeyCreate(_Request):
    name: str = Field(min_length=1, max_length=200, pattern=NAME)
    role: KeyRole = Field(
        default="member", description="member: inference only; others: management role too"
    )
    model_limits_enabled: bool = Field(
        default=False, description="on with an empty list allows no model at all"
    )
    model_limits: list[str] = Field(
        default_factory=list, max_length=MAX_PATTERNS, description="provider/model, '*' globs"
    )
    allow_ips: list[str] = Field(
        default_factory=list, max_length=MAX_NETWORKS, description="IPv4/IPv6 addresses or CIDRs"
    )
    usd_cap_micros: int | None = Field(
        default=None, ge=0, le=MAX_USD_CAP_MICROS, description="lifetime cap; null = none"
    )
    environment: str | None = Field(default=None, max_length=32, pattern=ENVIRONMENT)
    expires_at: datetime | None = Field(default=None, description="null = never")
    rpm_limit: int | None = _rate_limit(RPM)
    tpm_limit: int | None = _rate_limit(TPM)
    concurrency_limit: int | None = _rate_limit(CONCURRENCY)


class KeyUpdate(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME)
    status: Literal["active", "disabled"] | None = None
    role: KeyRole | None = None
    model_limits_enabled: bool | None = None
    model_limits: list[str] | None = Field(default=None, max_length=MAX_PATTERNS)
    allow_ips: list[str] | None = Field(default=None, max_length=MAX_NETWORKS)
    usd_cap_micros: int | None = Field(default=None, ge=0, le=MAX_USD_CAP_MICROS)
    environment: str | None = Field(default=None, max_length=32, pattern=ENVIRONMENT)
    expires_at: datetime | None = None
    rpm_limit: int | None = _rate_limit(RPM)
    tpm_limit: int | None = _rate_limit(TPM)
    concurrency_limit: int | None = _rate_limit(CONCURRENCY)


class KeyOut(BaseModel):
    id: str
    name: str
    status: str
    role: str
    display_prefix: str
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    model_limits_enabled: bool
    model_limits: list[str]
    allow_ips: list[str]
    usd_cap_micros: int | None
    environment: str | None
    created_by: str | None
    rpm_limit: int | None
    tpm_limit: int | None
    concurrency_limit: int | None


class KeyCreated(KeyOut):
    secret: str = Field(description="the key itself: shown only in this response")


class AuditOut(BaseModel):
    id: str
    created_at: datetime
    actor_type: str
    actor_id: str
    action: str
    target_type: str | None
    target_id: str | None
    detail: dict[str, object]
    client_ip: str | None


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str


class ErrorResponse(BaseModel):
    error: ErrorBody
