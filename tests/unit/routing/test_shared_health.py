"""Health shared by replicas through Redis: one replica's ejection or cool-down holds on all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import cast

import pytest

from orcarouter.observability.metrics import Metrics
from orcarouter.routing.health import COOL, EJECT, HealthBook, HealthEvent
from orcarouter.settings import HealthConfig
from orcarouter.state.redis import SharedStore
from orcarouter.state.shared_health import HealthSync
from tests.support.services import RedisSpace

MODEL = "openai/gpt-4o-mini"


@dataclass
class Replica:
    book: HealthBook
    store: SharedStore
    sync: HealthSync


@pytest.fixture
async def replicas(redis_space: RedisSpace) -> AsyncIterator[list[Replica]]:
    config = HealthConfig(consecutive_failures=2, base_ejection=30.0)
    made: list[Replica] = []
    listeners: list[asyncio.Task[None]] = []
    for _ in range(2):
        store = SharedStore(redis_space.url, prefix=redis_space.prefix, metrics=Metrics())
        book = HealthBook(config, targets=10)
        made.append(Replica(book, store, HealthSync(book, store)))
        listeners.append(asyncio.create_task(store.listen()))
    await asyncio.sleep(0.2)  # both subscribed
    yield made
    for task in listeners:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for replica in made:
        await replica.store.close()


async def _until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (a flag other tasks set) for up to two seconds."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the change did not reach the other replica within 2 s")


async def test_an_ejection_on_one_replica_ejects_the_target_on_the_other(
    replicas: list[Replica],
) -> None:
    first, second = replicas
    first.book.failure(MODEL, "server error")
    first.book.failure(MODEL, "server error")
    assert not first.book.is_live(MODEL)
    await _until(lambda: not second.book.is_live(MODEL))
    assert second.book.state(MODEL)["status"] == "ejected"


async def test_a_cool_down_is_shared_and_a_readmission_too(replicas: list[Replica]) -> None:
    first, second = replicas
    first.book.throttled(MODEL, "20")
    await _until(lambda: not second.book.is_live(MODEL))
    assert second.book.state(MODEL)["status"] == "cooling_down"
    second.book.failure(MODEL, "timeout")
    second.book.failure(MODEL, "timeout")
    await _until(lambda: first.book.state(MODEL)["status"] == "ejected")
    second.book.readmit(MODEL)
    await _until(lambda: first.book.state(MODEL)["status"] != "ejected")


class _Applied:
    """Stands in for a replica's book on the receiving side: notes what it is told to apply."""

    def __init__(self) -> None:
        self.events: list[HealthEvent] = []

    def apply(self, event: HealthEvent) -> None:
        self.events.append(event)


async def test_a_replica_ignores_its_own_messages(replicas: list[Replica]) -> None:
    first, second = replicas
    applied = _Applied()
    first.sync._book = cast(HealthBook, applied)  # its own book still publishes
    first.book.throttled(MODEL, "5")
    second.book.throttled("openai/gpt-4o", "5")
    await _until(lambda: bool(applied.events))  # the other replica's message arrived
    await first.sync.drain()
    await asyncio.sleep(0.1)
    assert [event.model_id for event in applied.events] == ["openai/gpt-4o"]


def test_remote_ejections_never_empty_the_pool() -> None:
    book = HealthBook(HealthConfig(max_ejected_share=0.5), targets=2)
    book.apply(HealthEvent("a/1", EJECT, 30))
    book.apply(HealthEvent("a/2", EJECT, 30))
    assert not book.is_live("a/1")
    assert book.is_live("a/2")
    book.apply(HealthEvent("a/2", COOL, 10_000))
    assert book.state("a/2")["status"] == "cooling_down"  # capped at max_cooldown, still applied


async def test_without_redis_health_stays_local() -> None:
    store = SharedStore("redis://127.0.0.1:1/0", metrics=Metrics())
    book = HealthBook(HealthConfig(consecutive_failures=1), targets=4)
    sync = HealthSync(book, store)
    book.failure(MODEL, "server error")
    await sync.drain()
    assert not book.is_live(MODEL)
    await store.close()
