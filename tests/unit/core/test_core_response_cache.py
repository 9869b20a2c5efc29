"""The response cache hook over Redis: shared by replicas, per workspace, never failing."""

from __future__ import annotations

import asyncio

from orcarouter.observability.metrics import Metrics
from orcarouter.state.redis import SharedStore
from orcarouter.state.response_cache import RedisResponseCache, fingerprint
from tests.support.services import RedisSpace


def test_fingerprints_ignore_key_order_and_separate_workspaces() -> None:
    one = fingerprint("ws_a", "openai/gpt-4o-mini", {"messages": [], "temperature": 0})
    same = fingerprint("ws_a", "openai/gpt-4o-mini", {"temperature": 0, "messages": []})
    other = fingerprint("ws_b", "openai/gpt-4o-mini", {"messages": [], "temperature": 0})
    assert one == same
    assert one != other


async def test_a_response_put_by_one_replica_is_read_by_another(redis_space: RedisSpace) -> None:
    stores = [SharedStore(redis_space.url, prefix=redis_space.prefix) for _ in range(2)]
    first, second = (RedisResponseCache(s, max_bytes=64) for s in stores)
    name = fingerprint("ws", "m", {"x": 1})
    assert await second.get(name) is None
    assert await first.put(name, b'{"ok":true}', ttl=0.3)
    assert await second.get(name) == b'{"ok":true}'
    assert not await first.put(name, b"x" * 65, ttl=10)  # too large: not kept
    await asyncio.sleep(0.4)
    assert await second.get(name) is None  # expired
    for store in stores:
        await store.close()


async def test_an_unreachable_redis_is_a_miss_not_an_error() -> None:
    store = SharedStore("redis://127.0.0.1:1/0", metrics=Metrics())
    cache = RedisResponseCache(store)
    assert await cache.get("x") is None
    assert not await cache.put("x", b"body", ttl=5)
    await store.close()
