"""Routers served from memory: loaded at start, refreshed when the stored set changes.

The request path reads a dict; the database is asked once a second (by a background task)
for the routers' count and newest change time, and the whole set is read again only when that
pair moves, so a router created, changed or deleted by another process (the CLI, another
worker) takes effect within about a second, and at once in the process that made the change
(the management API refreshes after every write). When the database cannot be read, the
routers already loaded keep working.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from orcarouter.routing.routers import RouterSpec, StoredRouter, router_spec
from orcarouter.state.snapshot import Snapshot


class RouterSource(Protocol):
    """Where routers are stored (``store.routers.RouterRepository`` fits)."""

    async def all(self) -> Sequence[StoredRouter]: ...
    async def version(self) -> tuple[int, datetime | None]: ...


class RouterTable(Snapshot[StoredRouter]):
    """Every workspace's routers by (workspace id, name)."""

    what = "router"

    def __init__(self, source: RouterSource, *, interval: float = 1.0) -> None:
        super().__init__(source, interval=interval)
        self._routers: dict[tuple[str, str], RouterSpec] = {}

    def get(self, workspace_id: str, name: str) -> RouterSpec | None:
        """The router, from memory only."""
        return self._routers.get((workspace_id, name))

    def of_workspace(self, workspace_id: str) -> list[RouterSpec]:
        """The workspace's routers, by name."""
        found = [r for (ws, _), r in self._routers.items() if ws == workspace_id]
        return sorted(found, key=lambda r: r.name)

    def replace(self, routers: Sequence[RouterSpec]) -> None:
        """Serve exactly these routers (tests, and each load)."""
        self._routers = {(r.workspace_id, r.name): r for r in routers}

    def _apply(self, rows: Sequence[StoredRouter]) -> None:
        self.replace([router_spec(row) for row in rows])
