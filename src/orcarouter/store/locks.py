"""A lock shared by every process on one database, for work that must run once at a time.

On PostgreSQL it is a session advisory lock, held on a connection of its own for the duration;
on SQLite (processes on one machine sharing the file) an exclusive ``flock`` on a file next to
the database. Replicas starting together use it so that start-up work (the bootstrap admin key,
the default workspace) is done by one of them while the others wait, then find it done.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def lock_id(name: str) -> int:
    """A stable signed 64-bit advisory lock id for ``name``."""
    digest = hashlib.sha256(b"orcarouter:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.asynccontextmanager
async def exclusive(engine: AsyncEngine, name: str) -> AsyncIterator[None]:
    """Hold the lock ``name`` across processes sharing the database (waits for it)."""
    if engine.dialect.name == "postgresql":
        key = lock_id(name)
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":  # one process only: nothing to share
        yield
        return
    descriptor = os.open(f"{database}.{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
