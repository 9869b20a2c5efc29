"""Dashboard sessions (cookie, with a CSRF token) and management tokens (bearer, for scripts).

Both are random secrets stored only as SHA-256, like API keys; their prefixes differ from
``sk-orca-`` so neither can ever be taken for an inference key.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from orcarouter.accounts.keys import hash_key, new_id
from orcarouter.store.accounts import SessionRepository, SessionRow
from orcarouter.store.ids import utcnow

SESSION_PREFIX = "sk-sess-"
TOKEN_PREFIX = "sk-mgmt-"  # noqa: S105 - a prefix, not a secret
SESSION = "session"
TOKEN = "token"  # noqa: S105 - a kind name, not a secret
_TTL = {SESSION: timedelta(hours=12), TOKEN: timedelta(days=30)}
_PREFIX = {SESSION: SESSION_PREFIX, TOKEN: TOKEN_PREFIX}


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A new session; ``secret`` and ``csrf_token`` are given to the user once."""

    row: SessionRow
    secret: str
    csrf_token: str | None


class Sessions:
    """Opens, resolves and closes sessions and management tokens."""

    def __init__(self, repo: SessionRepository) -> None:
        self._repo = repo

    async def open(self, user_id: str, kind: str) -> IssuedSession:
        """A new session (``SESSION``, with a CSRF token) or management token (``TOKEN``)."""
        secret = _PREFIX[kind] + secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24) if kind == SESSION else None
        now = utcnow()
        row = SessionRow(
            id=new_id("ses"),
            token_hash=hash_key(secret),
            csrf_hash=hash_key(csrf) if csrf else None,
            user_id=user_id,
            kind=kind,
            created_at=now,
            expires_at=now + _TTL[kind],
        )
        await self._repo.add(row)
        return IssuedSession(row, secret, csrf)

    async def resolve(self, secret: str, kind: str) -> SessionRow | None:
        """The live session of ``kind`` for a presented secret."""
        if not secret.startswith(_PREFIX[kind]) or len(secret) > 200:
            return None
        row = await self._repo.find_active(hash_key(secret))
        return row if row is not None and row.kind == kind else None

    async def close(self, session_id: str) -> None:
        """Revoke a session or token now."""
        await self._repo.revoke(session_id)


def csrf_matches(row: SessionRow, presented: str | None) -> bool:
    """Whether the presented CSRF token is the session's (constant-time)."""
    if row.csrf_hash is None or not presented:
        return False
    return hmac.compare_digest(row.csrf_hash, hash_key(presented))
