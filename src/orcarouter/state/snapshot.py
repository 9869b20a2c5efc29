"""A table served from memory, reloaded whole when its stored version moves.

A background task asks the source for a cheap version (count and newest change) every
``interval`` seconds and reloads every row only when that version moved, so a change made by any
process takes effect within about a second; ``refresh(force=True)`` applies one at once. Loads
are single-flight. When the source cannot be read, what is loaded keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

Row = TypeVar("Row")
Row_co = TypeVar("Row_co", covariant=True)
Version = tuple[int, datetime | None]


class VersionedSource(Protocol[Row_co]):
    """Where the rows are stored (a repository with ``all`` and ``version``)."""

    async def all(self) -> Sequence[Row_co]: ...
    async def version(self) -> Version: ...


class Snapshot(Generic[Row]):
    """Rows of a versioned source, applied by ``_apply``; subclasses serve them."""

    what = "rows"  # for the log line when the source cannot be read

    def __init__(self, source: VersionedSource[Row], *, interval: float = 1.0) -> None:
        self._source = source
        self._interval = interval
        self._version: Version | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self.healthy = False

    def _apply(self, rows: Sequence[Row]) -> None:
        """Serve exactly these rows from now on."""
        raise NotImplementedError

    def _loaded(self) -> None:
        """A load (or a check that found nothing new) succeeded."""

    async def refresh(self, *, force: bool = False) -> None:
        """Reload when the stored set changed (single flight)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._load(force))
        await asyncio.shield(self._refreshing)

    async def _load(self, force: bool) -> None:
        try:
            version = await self._source.version()
            if force or version != self._version:
                self._apply(await self._source.all())
                self._version = version
        except Exception:
            self.healthy = False
            log.warning("%s refresh failed; serving those already loaded", self.what, exc_info=True)
            return
        self.healthy = True
        self._loaded()

    async def run(self) -> None:
        """Refresh forever, every ``interval`` seconds (cancel to stop)."""
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()
