"""Workspace roles and what each may do: the one authorization policy of the management API.

Viewer reads, Developer also manages keys, Admin also manages the workspace, its members and
its own provider credentials (BYOK).
A key's role is its scope: ``member`` keys call models only, the others act in the management
API with the workspace role of the same name.
"""

from __future__ import annotations

from enum import Enum

VIEWER = "viewer"
DEVELOPER = "developer"
ADMIN = "admin"
MEMBER_KEY = "member"

MEMBER_ROLES = (VIEWER, DEVELOPER, ADMIN)
KEY_ROLES = (MEMBER_KEY, VIEWER, DEVELOPER, ADMIN)

_RANK = {MEMBER_KEY: 0, VIEWER: 1, DEVELOPER: 2, ADMIN: 3}


class Action(Enum):
    """Every management operation, named for the policy table."""

    READ_WORKSPACE = "workspace.read"
    UPDATE_WORKSPACE = "workspace.update"
    READ_MEMBERS = "members.read"
    MANAGE_MEMBERS = "members.manage"
    READ_KEYS = "keys.read"
    MANAGE_KEYS = "keys.manage"
    READ_AUDIT = "audit.read"
    READ_BILLING = "billing.read"
    MANAGE_BILLING = "billing.manage"
    READ_CREDENTIALS = "credentials.read"
    MANAGE_CREDENTIALS = "credentials.manage"


_REQUIRED: dict[Action, str] = {
    Action.READ_WORKSPACE: VIEWER,
    Action.UPDATE_WORKSPACE: ADMIN,
    Action.READ_MEMBERS: VIEWER,
    Action.MANAGE_MEMBERS: ADMIN,
    Action.READ_KEYS: VIEWER,
    Action.MANAGE_KEYS: DEVELOPER,
    Action.READ_AUDIT: ADMIN,
    Action.READ_BILLING: VIEWER,
    Action.MANAGE_BILLING: ADMIN,
    Action.READ_CREDENTIALS: VIEWER,
    Action.MANAGE_CREDENTIALS: ADMIN,
}


def rank(role: str) -> int:
    """Order of roles; an unknown role ranks below every known one."""
    return _RANK.get(role, -1)


def required_role(action: Action) -> str:
    """The least role allowed to perform ``action``."""
    return _REQUIRED[action]


def allows(role: str, action: Action) -> bool:
    """Whether ``role`` may perform ``action``."""
    return rank(role) >= rank(_REQUIRED[action])


def at_most(role: str, ceiling: str) -> bool:
    """Whether ``role`` is no higher than ``ceiling`` (a caller never grants more than it has)."""
    return rank(role) <= rank(ceiling)
