"""Two gateway replicas sharing PostgreSQL and Redis: money, rate limits and revocations hold
across them exactly as on one.

Each test starts two ``orcarouter serve`` processes on a fresh PostgreSQL database and a fresh
Redis key prefix, in front of a ``Fleet`` model priced at $1 per million tokens each way (a
token costs one micro-dollar), and drives them alternately.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from orcarouter.metering.pricing import PROMPT_HOLD_FACTOR
from orcarouter.routing.needs import needs_of
from tests.conftest import ADMIN_KEY
from tests.support.fleet import Fleet
from tests.support.gateway import GatewayProcess
from tests.support.http import Answer, request
from tests.support.services import RedisSpace
from tests.support.tcp_proxy import TcpProxy
from tests.unit.core.conftest import run_sql

MODEL = "cheap/m-cheap"
AUTH = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}


def cluster_config(fleet: Fleet, redis_prefix: str) -> dict[str, Any]:
    """One $1-per-million-tokens model on the fleet, and Redis under the test's prefix."""
    return {
        "providers": [
            {
                "id": "cheap",
                "protocol": "openai",
                "base_url": fleet.url("cheap"),
                "models": ["m-cheap"],
                "timeouts": {"first_byte": 10, "idle": 10, "total": 30},
            }
        ],
        "models": [
            {
                "provider": "cheap",
                "model": "m-cheap",
                "max_output": 4096,
                "context_window": 100000,
                "prices": [{"effective_from": "2020-01-01", "input": "1", "output": "1"}],
            }
        ],
        "redis": {"key_prefix": redis_prefix, "retry_interval": 0.2},
    }


@dataclass
class Cluster:
    """Replicas on one database and one Redis."""

    replicas: list[GatewayProcess]
    database_url: str

    def sql(self, statement: str) -> list[tuple[object, ...]]:
        return run_sql(self.database_url, statement)

    def api(self, method: str, path: str, body: Any = None, replica: int = 0) -> Answer:
        data = orjson.dumps(body) if body is not None else None
        return request(self.replicas[replica].base_url + path, data, AUTH, method=method)


def start_all(replicas: list[GatewayProcess]) -> None:
    """Start the replicas together (they race through migrations and bootstrap)."""
    errors: list[BaseException] = []

    def start(replica: GatewayProcess) -> None:
        try:
            replica.start(timeout=60)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def make_cluster(
    fleet: Fleet, workdir: Path, database_url: str, redis_url: str | None, redis_prefix: str
) -> Cluster:
    """Two replicas (started) on ``database_url`` and ``redis_url`` (None: without Redis)."""
    fleet.reset()
    config = cluster_config(fleet, redis_prefix)
    env = {"ORCAROUTER_ADMIN_KEY": ADMIN_KEY, "ORCAROUTER_DATABASE_URL": database_url}
    if redis_url is not None:
        env["ORCAROUTER_REDIS_URL"] = redis_url
    replicas = []
    for name in ("a", "b"):
        (workdir / name).mkdir()
        replicas.append(GatewayProcess(workdir / name, config, env=env))
    start_all(replicas)
    return Cluster(replicas, database_url)


@pytest.fixture
def cluster(
    fleet: Fleet, tmp_path: Path, postgres_database: str, redis_space: RedisSpace
) -> Iterator[Cluster]:
    made = make_cluster(fleet, tmp_path, postgres_database, redis_space.url, redis_space.prefix)
    yield made
    for replica in made.replicas:
        replica.stop()


@pytest.fixture(params=["redis", "database"])
def paying_cluster(
    request: pytest.FixtureRequest,
    fleet: Fleet,
    tmp_path: Path,
    postgres_database: str,
    redis_space: RedisSpace,
) -> Iterator[Cluster]:
    """Replicas holding budgets through Redis, or (without Redis) through the database."""
    redis_url = redis_space.url if request.param == "redis" else None
    made = make_cluster(fleet, tmp_path, postgres_database, redis_url, redis_space.prefix)
    yield made
    for replica in made.replicas:
        replica.stop()


@dataclass
class Outages:
    """A cluster whose database and Redis connections pass through proxies a test can cut."""

    cluster: Cluster
    database: TcpProxy
    redis: TcpProxy


@pytest.fixture
def outages(
    fleet: Fleet, tmp_path: Path, postgres_database: str, redis_space: RedisSpace
) -> Iterator[Outages]:
    with (
        TcpProxy.for_url(postgres_database) as database,
        TcpProxy.for_url(redis_space.url) as redis,
    ):
        made = make_cluster(
            fleet,
            tmp_path,
            database.url_for(postgres_database),
            redis.url_for(redis_space.url),
            redis_space.prefix,
        )
        made.database_url = postgres_database  # the test reads the database directly
        yield Outages(made, database, redis)
        for replica in made.replicas:
            replica.stop()


def _body(max_tokens: int, stream: bool = True) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens,
            "stream": stream,
        }
    )


def _worst_case(max_tokens: int) -> int:
    body = _body(max_tokens)
    return needs_of(orjson.loads(body), len(body)).prompt_tokens * PROMPT_HOLD_FACTOR + max_tokens


def _chat(replica: GatewayProcess, key: str = ADMIN_KEY, max_tokens: int = 100) -> Answer:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    return request(replica.base_url + "/v1/chat/completions", _body(max_tokens), headers)


def _settled(cluster: Cluster, request_ids: list[str], timeout: float = 15.0) -> dict[str, Any]:
    """Each request's settled record (request id → (status, cost)), once all are written."""
    deadline = time.monotonic() + timeout
    wanted = set(request_ids)
    while True:
        rows = cluster.sql(
            "SELECT request_id, status_code, cost_micros FROM usage_records WHERE outcome <> 'open'"
        )
        found = {str(r[0]): (r[1], r[2]) for r in rows if r[0] in wanted}
        if len(found) == len(wanted) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_replicas_start_together_on_one_database(cluster: Cluster) -> None:
    admins = cluster.sql("SELECT count(*) FROM api_keys WHERE role = 'admin' AND status = 'active'")
    assert admins == [(1,)]
    for replica in cluster.replicas:
        ready = request(replica.base_url + "/readyz", None, {}, method="GET")
        assert ready.status == 200, ready.body
        assert ready.json()["checks"]["redis"] == "ok"


def test_a_wallet_is_exact_across_replicas_under_200_concurrent_requests(
    paying_cluster: Cluster, fleet: Fleet
) -> None:
    cluster = paying_cluster
    fleet.set("cheap", "hold")  # every request is still in flight when the last one arrives
    per_request = _worst_case(100)
    topup = cluster.api(
        "POST",
        "/api/workspaces/ws_default/wallet/topups",
        {"amount_usd": f"{50 * per_request / 1e6:.6f}"},
    )
    assert topup.status == 201, topup.body
    time.sleep(1.5)  # both replicas read the balance back

    a, b = cluster.replicas
    with concurrent.futures.ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(lambda i: _chat(a if i % 2 else b), range(200)))
    statuses = [answer.status for answer in answers]
    assert set(statuses) <= {200, 402}
    # Holds are shared: the wallet covers 50 worst cases, on both replicas together.
    assert statuses.count(200) == 50

    records = _settled(cluster, [x.headers["x-orca-request-id"] for x in answers])
    assert len(records) == 200  # every request, served or refused, has its record
    costs = [cost for status, cost in records.values() if status == 200]
    assert len(costs) == 50 and all(c == 6 for c in costs)  # 5 in + 1 out
    charged = cluster.sql(
        "SELECT count(*), coalesce(sum(amount_micros), 0) FROM ledger_entries WHERE kind = 'charge'"
    )
    assert charged == [(50, -sum(costs))]  # to the micro-dollar, each request once
    balance = cluster.sql("SELECT balance_micros FROM wallets WHERE workspace_id = 'ws_default'")
    assert balance == [(50 * per_request - sum(costs),)]


def test_a_rate_limit_holds_across_replicas(cluster: Cluster) -> None:
    made = cluster.api("POST", "/api/workspaces/ws_default/keys", {"name": "r", "rpm_limit": 10})
    assert made.status == 201, made.body
    secret = made.json()["secret"]
    time.sleep(0.3)
    a, b = cluster.replicas
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(lambda i: _chat(a if i % 2 else b, secret, max_tokens=5), range(30))
        )
    statuses = [answer.status for answer in answers]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 20
    refused = next(x for x in answers if x.status == 429)
    assert int(refused.headers["retry-after"]) >= 1


def test_a_key_revoked_on_one_replica_is_refused_by_the_other_within_a_second(
    cluster: Cluster,
) -> None:
    made = cluster.api("POST", "/api/workspaces/ws_default/keys", {"name": "revoked"})
    secret, key_id = made.json()["secret"], made.json()["id"]
    b = cluster.replicas[1]
    client = openai.OpenAI(base_url=b.base_url + "/v1", api_key=secret, max_retries=0)
    hi = [{"role": "user", "content": "hi"}]
    for _ in range(50):  # the new key reaches b (at once with the change announced)
        try:
            client.chat.completions.create(model=MODEL, messages=hi)  # type: ignore[arg-type]
            break
        except openai.AuthenticationError:
            time.sleep(0.02)
    revoked = cluster.api("DELETE", f"/api/workspaces/ws_default/keys/{key_id}", replica=0)
    assert revoked.status == 200, revoked.body
    started = time.monotonic()
    while True:
        try:
            client.chat.completions.create(model=MODEL, messages=hi)  # type: ignore[arg-type]
        except openai.AuthenticationError:
            break
        assert time.monotonic() - started < 1.0, "the other replica still accepts the key"
        time.sleep(0.01)


def _load(cluster: Cluster, key: str, seconds: float) -> list[Answer]:
    """Requests to both replicas in turn, four at a time, for ``seconds``."""
    deadline = time.monotonic() + seconds
    answers: list[Answer] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        replica = cluster.replicas[index % 2]
        while time.monotonic() < deadline:
            answer = _chat(replica, key, max_tokens=5)
            with lock:
                answers.append(answer)
            time.sleep(0.01)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(worker, range(4)))
    return answers


def _limited_paying_key(cluster: Cluster) -> str:
    """A key under a generous rate limit, in a workspace paying from its wallet."""
    topup = cluster.api("POST", "/api/workspaces/ws_default/wallet/topups", {"amount_usd": "10"})
    assert topup.status == 201, topup.body
    made = cluster.api(
        "POST", "/api/workspaces/ws_default/keys", {"name": "load", "rpm_limit": 100_000}
    )
    assert made.status == 201, made.body
    time.sleep(1.5)  # balances are read back
    return str(made.json()["secret"])


def _metric(replica: GatewayProcess, name: str, labels: str) -> float:
    text = request(replica.base_url + "/metrics", None, AUTH, method="GET").body.decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _each_served_once(cluster: Cluster, answers: list[Answer]) -> None:
    """Every answered request has exactly one settled record; each served one is charged once."""
    ids = [a.headers["x-orca-request-id"] for a in answers]
    records = _settled(cluster, ids, timeout=30)
    assert len(records) == len(ids), f"{len(ids) - len(records)} requests have no record"
    served = [i for i, a in zip(ids, answers, strict=True) if a.status == 200]
    charges = cluster.sql("SELECT request_id FROM ledger_entries WHERE kind = 'charge'")
    charged = [str(row[0]) for row in charges]
    assert sorted(charged) == sorted(served)  # once each, none missing, none twice


def test_redis_going_down_under_load_degrades_visibly_and_recovers(outages: Outages) -> None:
    cluster = outages.cluster
    key = _limited_paying_key(cluster)
    timer = threading.Timer(1.0, outages.redis.cut)
    restore = threading.Timer(3.0, outages.redis.restore)
    timer.start()
    restore.start()
    answers = _load(cluster, key, seconds=5.0)
    timer.join()
    restore.join()
    assert answers and all(a.status == 200 for a in answers), {a.status for a in answers}
    _each_served_once(cluster, answers)
    degraded = sum(
        _metric(r, "orcarouter_degraded_decisions_total", 'reason="redis unavailable"')
        for r in cluster.replicas
    )
    assert degraded > 0
    for replica in cluster.replicas:  # back on Redis without a restart
        ready = request(replica.base_url + "/readyz", None, {}, method="GET").json()
        assert ready["checks"]["redis"] == "ok"


def test_the_database_going_down_under_load_loses_no_usage(outages: Outages) -> None:
    cluster = outages.cluster
    key = _limited_paying_key(cluster)
    timer = threading.Timer(1.0, outages.database.cut)
    restore = threading.Timer(4.0, outages.database.restore)
    timer.start()
    restore.start()
    answers = _load(cluster, key, seconds=6.0)
    timer.join()
    restore.join()
    assert answers and all(a.status == 200 for a in answers), {a.status for a in answers}
    _each_served_once(cluster, answers)
    for replica in cluster.replicas:  # ready again without a restart
        deadline = time.monotonic() + 10
        while request(replica.base_url + "/readyz", None, {}, method="GET").status != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
