"""The real PostgreSQL and Redis servers on this machine, as fixtures.

Every PostgreSQL test gets a database of its own, named after the process and a random token,
created from ``template0`` and dropped afterwards, so concurrent test runs on one server never
see each other's tables. ``ORCAROUTER_TEST_POSTGRES_URL`` names the server (any database on it
to connect to; default ``postgresql://postgres@127.0.0.1:5432/test``).

Every Redis test gets a key prefix of its own (``orca-test-{pid}-{token}:``), and its keys are
deleted afterwards. ``ORCAROUTER_TEST_REDIS_URL`` names the server (default
``redis://127.0.0.1:6379/0``).

When a server is unreachable its tests skip, unless ``ORCAROUTER_TEST_POSTGRES=require`` or
``ORCAROUTER_TEST_REDIS=require`` makes that a failure (CI sets both).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "ORCAROUTER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("ORCAROUTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def server_conninfo() -> str:
    """The PostgreSQL server URL as libpq takes it (no SQLAlchemy driver suffix)."""
    return make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(False)


def _unreachable(reason: str, variable: str) -> None:
    if os.environ.get(variable) == "require":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The reachable server's URL; skips (once per session) when it is not reachable."""
    try:
        with psycopg.connect(server_conninfo(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {make_url(POSTGRES_URL)!r} is unreachable: {exc}".strip()
        _unreachable(reason, "ORCAROUTER_TEST_POSTGRES")
    return POSTGRES_URL


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A new empty database on the server for this test alone (its plain URL); dropped after."""
    name = f"orcarouter_test_{os.getpid()}_{secrets.token_hex(6)}"
    with psycopg.connect(server_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(False)
    finally:
        with psycopg.connect(server_conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@dataclass(frozen=True)
class RedisSpace:
    """A Redis server and a key prefix no other test uses."""

    url: str
    prefix: str

    def keys(self) -> list[bytes]:
        """Every key under the prefix."""
        with redis.Redis.from_url(self.url) as client:
            return list(client.scan_iter(match=self.prefix + "*", count=1000))


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The reachable Redis server's URL; skips (once per session) when it is not reachable."""
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3) as client:
            client.ping()
    except redis.RedisError as exc:
        _unreachable(f"Redis at {REDIS_URL} is unreachable: {exc}", "ORCAROUTER_TEST_REDIS")
    return REDIS_URL


@pytest.fixture
def redis_space(redis_server: str) -> Iterator[RedisSpace]:
    """A fresh key prefix on the Redis server; its keys are deleted afterwards."""
    space = RedisSpace(redis_server, f"orca-test-{os.getpid()}-{secrets.token_hex(4)}:")
    yield space
    with redis.Redis.from_url(redis_server) as client:
        stale = list(client.scan_iter(match=space.prefix + "*", count=1000))
        if stale:
            client.delete(*stale)
