"""Holding an async method back mid-call, to look at what its caller shows while it waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


class Gate:
    """Replaces ``owner.name`` (an async method) for the test: a call marks ``entered``, then
    waits for ``release()`` before doing what the method does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
        self.entered = asyncio.Event()
        self._open = asyncio.Event()
        method = getattr(owner, name)

        async def held_back(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            await self._open.wait()
            return await method(*args, **kwargs)

        monkeypatch.setattr(owner, name, held_back)

    def release(self) -> None:
        """Let the waiting call, and every later one, go on."""
        self._open.set()
