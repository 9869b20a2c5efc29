"""Password hashing with Argon2id (argon2-cffi), run off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256  # a bound on the hashing work one request can ask for


class Passwords:
    """Hashes and verifies passwords; each call runs in a worker thread (Argon2 is slow)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """The Argon2id encoded hash of ``password``."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, encoded: str | None, password: str) -> bool:
        """Whether ``password`` matches; with no stored hash, spend the same time and fail."""
        if encoded is None:  # unknown user: hash anyway so timing does not reveal who exists
            if self._dummy is None:
                self._dummy = await self.hash("orcarouter-no-such-user")
            encoded = self._dummy
            password = password + "\x00"
        return await asyncio.to_thread(self._check, encoded, password)

    def _check(self, encoded: str, password: str) -> bool:
        try:
            return self._hasher.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return False
