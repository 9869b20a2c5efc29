"""Registration and password login."""

from __future__ import annotations

import re
from dataclasses import dataclass

from orcarouter.accounts.keys import new_id
from orcarouter.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, Passwords
from orcarouter.accounts.roles import ADMIN
from orcarouter.store.accounts import UserRepository, UserRow, WorkspaceRow
from orcarouter.store.ids import utcnow

_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z0-9-]{2,63}$")


class AccountError(ValueError):
    """The email or password is unusable; the message says why (and never echoes it)."""


def normalize_email(email: str) -> str:
    """The email as stored: trimmed and lower-cased; ``AccountError`` if it is not one."""
    value = email.strip().lower()
    if len(value) > 320 or not _EMAIL.fullmatch(value):
        raise AccountError("email must be an address such as name@example.com")
    return value


def check_password(password: str) -> None:
    """``AccountError`` unless the password's length is within bounds."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise AccountError(
            f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )


@dataclass(frozen=True, slots=True)
class Registration:
    """A new user and the workspace it administers."""

    user: UserRow
    workspace: WorkspaceRow


class Accounts:
    """Users: registering (with a workspace of their own) and checking passwords."""

    def __init__(self, users: UserRepository, passwords: Passwords) -> None:
        self._users = users
        self._passwords = passwords

    async def register(self, email: str, password: str, workspace_name: str) -> Registration:
        """Create the user, a workspace and the user's admin membership (``EmailTaken``)."""
        address = normalize_email(email)
        check_password(password)
        now = utcnow()
        user = UserRow(new_id("usr"), address, await self._passwords.hash(password), now)
        workspace = WorkspaceRow(new_id("ws"), workspace_name, now)
        await self._users.register(user, workspace, ADMIN)
        return Registration(user, workspace)

    async def login(self, email: str, password: str) -> UserRow | None:
        """The user whose email and password these are, else None (same time either way)."""
        try:
            address = normalize_email(email)
        except AccountError:
            address = ""
        user = await self._users.find_by_email(address) if address else None
        if len(password) > MAX_PASSWORD_LENGTH:
            return None
        ok = await self._passwords.verify(user.password_hash if user else None, password)
        return user if ok and user is not None else None
