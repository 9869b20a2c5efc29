"""Health, failover, fallback chains and the retry budget, against several fake upstreams.

Each test starts its own gateway (health state is per process) in front of one ``Fleet``:
upstreams that are healthy and cheap, expensive, throttling with 429 + ``Retry-After``,
failing with 500, stalling before headers, or opening a 200 stream with an overloaded error.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.conftest import ADMIN_KEY
from tests.support.fleet import Fleet
from tests.support.gateway import GatewayProcess
from tests.support.http import Answer, request

# name -> (protocol, input price per million, output price per million)
UPSTREAMS: dict[str, tuple[str, str, str]] = {
    "throttle": ("openai", "0.1", "0.2"),
    "broken": ("openai", "0.2", "0.4"),
    "down": ("anthropic", "0.25", "0.5"),
    "stall": ("openai", "0.3", "0.6"),
    "over": ("anthropic", "0.4", "0.8"),
    "breaker": ("openai", "0.5", "1.0"),
    "cheap": ("openai", "1", "2"),
    "pricey": ("openai", "10", "20"),
}

MakeGateway = Callable[..., GatewayProcess]


@pytest.fixture
def make_gateway(fleet: Fleet, tmp_path: Path) -> Iterator[MakeGateway]:
    """Start a gateway serving the named upstreams, with the given health settings."""
    fleet.reset()
    started: list[GatewayProcess] = []

    def make(names: list[str], **health: Any) -> GatewayProcess:
        providers, models = [], []
        for name in names:
            protocol, price_in, price_out = UPSTREAMS[name]
            providers.append(
                {
                    "id": name,
                    "protocol": protocol,
                    "base_url": fleet.url(name),
                    "models": [f"m-{name}"],
                    "timeouts": {"connect": 2, "first_byte": 1, "idle": 2, "total": 10},
                }
            )
            models.append(
                {
                    "provider": name,
                    "model": f"m-{name}",
                    "capabilities": ["tools", "streaming"],
                    "context_window": 128000,
                    "max_output": 4096,
                    "prices": [
                        {"effective_from": "2020-01-01", "input": price_in, "output": price_out}
                    ],
                }
            )
        config = {"providers": providers, "models": models, "health": health}
        workdir = tmp_path / f"gateway{len(started)}"
        workdir.mkdir()
        process = GatewayProcess(workdir, config, env={"ORCAROUTER_ADMIN_KEY": ADMIN_KEY})
        process.start()
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


def _chat(gateway: GatewayProcess, model: str = "orcarouter/auto", **extra: Any) -> Answer:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return request(
        gateway.base_url + "/v1/chat/completions",
        orjson.dumps(body),
        {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
    )


def _served(answer: Answer) -> tuple[int, str | None, str | None]:
    headers = answer.headers
    return (
        answer.status,
        headers.get("x-orca-resolved-model"),
        headers.get("x-orca-fallback-level"),
    )


def _health(gateway: GatewayProcess) -> dict[str, dict[str, Any]]:
    answer = request(
        gateway.base_url + "/api/health/targets",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        method="GET",
    )
    assert answer.status == 200, answer.body
    return {t["model"]: t for t in answer.json()["targets"]}


def test_auto_picks_the_cheapest_then_ejects_and_readmits_after_back_off(
    make_gateway: MakeGateway, fleet: Fleet
) -> None:
    gateway = make_gateway(
        ["cheap", "pricey"], consecutive_failures=2, base_ejection=1.5, max_ejected_share=1.0
    )
    assert _served(_chat(gateway)) == (200, "cheap/m-cheap", "0")

    fleet.set("cheap", "fail")
    for _ in range(2):  # two failures in a row, each failed over before the first byte
        answer = _chat(gateway)
        assert _served(answer) == (200, "pricey/m-pricey", "1")
        assert answer.headers["x-orca-router"] == "orcarouter/auto"
    record = gateway.usage_record(answer.headers["x-orca-request-id"])
    assert record["model_served"] == "pricey/m-pricey"
    attempts = orjson.loads(record["route_reason"])["attempts"]
    assert [a["model"] for a in attempts] == ["cheap/m-cheap"]
    assert attempts[0]["error"].startswith("500")

    hits = fleet.hits["cheap"]
    ejected = _chat(gateway)  # cheap is out: not even tried
    assert _served(ejected) == (200, "pricey/m-pricey", "0")
    assert "health=1" in ejected.headers["x-orca-route-reason"]
    assert fleet.hits["cheap"] == hits
    assert _health(gateway)["cheap/m-cheap"]["status"] == "ejected"
    card = request(gateway.base_url + "/api/public/models/cheap/m-cheap", method="GET").json()
    assert card["data"]["health"]["status"] == "ejected"

    fleet.set("cheap", "ok")
    time.sleep(1.7)  # the back-off runs out: cheap is tried again and serves
    assert _served(_chat(gateway)) == (200, "cheap/m-cheap", "0")
    assert _health(gateway)["cheap/m-cheap"]["status"] == "healthy"


def test_a_429_cools_the_target_down_for_its_retry_after(
    make_gateway: MakeGateway, fleet: Fleet
) -> None:
    gateway = make_gateway(["throttle", "cheap"], consecutive_failures=1)
    fleet.set("throttle", "throttle")
    assert _served(_chat(gateway)) == (200, "cheap/m-cheap", "1")
    assert fleet.hits["throttle"] == 1
    state = _health(gateway)["throttle/m-throttle"]
    assert state["status"] == "cooling_down"
    assert state["consecutive_failures"] == 0  # throttling is not ill health
    assert _served(_chat(gateway)) == (200, "cheap/m-cheap", "0")
    assert fleet.hits["throttle"] == 1  # not asked again during the cool-down

    fleet.set("throttle", "ok")
    time.sleep(2.2)
    assert _served(_chat(gateway)) == (200, "throttle/m-throttle", "0")


def test_a_stalled_upstream_fails_over_at_the_first_byte_timeout(
    make_gateway: MakeGateway, fleet: Fleet
) -> None:
    gateway = make_gateway(["stall", "cheap"])
    fleet.set("stall", "stall")
    with openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0
    ) as client:
        started = time.monotonic()
        stream = client.chat.completions.create(
            model="orcarouter/auto", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "from cheap"
    assert 0.9 < time.monotonic() - started < 5
    assert fleet.hits["stall"] == 1


def test_an_overloaded_first_stream_event_fails_over_for_both_client_formats(
    make_gateway: MakeGateway, fleet: Fleet
) -> None:
    gateway = make_gateway(["over", "cheap"], consecutive_failures=10)
    fleet.set("over", "overloaded")
    with (
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0) as oc,
        oc.chat.completions.stream(
            model="orcarouter/auto", messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "from cheap"
    with (
        anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0) as ac,
        ac.messages.stream(
            model="orcarouter/auto", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as events,
    ):
        message = events.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == "from cheap"
    assert fleet.hits["over"] == 2


def test_no_failover_after_the_first_byte(make_gateway: MakeGateway, fleet: Fleet) -> None:
    gateway = make_gateway(["breaker", "cheap"])
    fleet.set("breaker", "break")
    with openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0
    ) as client:
        stream = client.chat.completions.with_raw_response.create(
            model="orcarouter/auto", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        request_id = stream.headers["x-orca-request-id"]
        with pytest.raises(openai.APIError):  # one terminal error event, not a clean end
            for _ in stream.parse():
                pass
    assert fleet.hits["cheap"] == 0
    record = gateway.usage_record(request_id)
    assert (record["model_served"], record["outcome"]) == ("breaker/m-breaker", "incomplete")


def test_the_fallback_chain_in_both_extra_body_shapes(
    make_gateway: MakeGateway, fleet: Fleet
) -> None:
    gateway = make_gateway(["broken", "cheap", "pricey"], consecutive_failures=10)
    fleet.set("broken", "fail")
    chain = {"models": ["nobody/unknown", "cheap/m-cheap"], "route": "fallback"}
    with openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0
    ) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="broken/m-broken",
            messages=[{"role": "user", "content": "hi"}],
            extra_body=chain,  # the SDK merges these into the top level
        )
    assert raw.headers["x-orca-resolved-model"] == "cheap/m-cheap"
    assert raw.headers["x-orca-fallback-level"] == "1"
    assert raw.parse().model == "cheap"
    record = gateway.usage_record(raw.headers["x-orca-request-id"])
    assert orjson.loads(record["route_reason"])["skipped_fallbacks"] == ["nobody/unknown"]

    nested = _chat(gateway, "broken/m-broken", extra_body=chain)  # a literal extra_body
    assert _served(nested) == (200, "cheap/m-cheap", "1")
    assert fleet.hits["broken"] == 2

    # Entries the key may not use are skipped.
    created = request(
        gateway.base_url + "/api/workspaces/ws_default/keys",
        orjson.dumps(
            {
                "name": "no-cheap",
                "model_limits_enabled": True,
                "model_limits": ["broken/*", "pricey/*"],
            }
        ),
        {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
    )
    assert created.status == 201, created.body
    limited = anthropic.Anthropic(
        base_url=gateway.base_url, api_key=created.json()["secret"], max_retries=0
    )
    with limited:
        answer = limited.messages.with_raw_response.create(
            model="broken/m-broken",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"models": ["cheap/m-cheap", "pricey/m-pricey"], "route": "fallback"},
        )
    assert answer.headers["x-orca-resolved-model"] == "pricey/m-pricey"
    assert answer.parse().content[0].type == "text"

    too_many = _chat(gateway, "cheap/m-cheap", models=["cheap/m-cheap"] * 6, route="fallback")
    assert too_many.status == 400 and too_many.json()["error"]["param"] == "models"


def test_all_candidates_failing_is_502_fallback_exhausted(
    make_gateway: MakeGateway, fleet: Fleet
) -> None:
    gateway = make_gateway(["broken", "throttle", "down"], consecutive_failures=10)
    fleet.set("broken", "fail")
    fleet.set("throttle", "throttle")
    fleet.set("down", "fail")
    chain = {"models": ["throttle/m-throttle"], "route": "fallback"}
    with (
        openai.OpenAI(
            base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0
        ) as client,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        client.chat.completions.create(
            model="broken/m-broken", messages=[{"role": "user", "content": "hi"}], extra_body=chain
        )
    assert caught.value.status_code == 502
    assert caught.value.code == "fallback_exhausted"
    assert (
        "broken/m-broken" in caught.value.message and "throttle/m-throttle" in caught.value.message
    )
    with (
        anthropic.Anthropic(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0) as ac,
        pytest.raises(anthropic.APIStatusError) as anthropic_caught,
    ):
        ac.messages.create(
            model="broken/m-broken",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"models": ["broken/m-broken", "down/m-down"], "route": "fallback"},
        )
    assert anthropic_caught.value.status_code == 502
    body = anthropic_caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "api_error"
    record = gateway.usage_record(caught.value.response.headers["x-orca-request-id"])
    assert (record["status_code"], record["error_type"]) == (502, "fallback_exhausted")
    assert record["model_served"] is None


def test_the_retry_budget_caps_retries_under_a_flood_of_failures(
    make_gateway: MakeGateway, fleet: Fleet
) -> None:
    gateway = make_gateway(["broken", "pricey"], consecutive_failures=1000, retry_floor=3)
    fleet.set("broken", "fail")
    fleet.set("pricey", "slow")
    flood = 30
    with concurrent.futures.ThreadPoolExecutor(flood) as pool:
        answers = list(
            pool.map(
                lambda _: _chat(
                    gateway, "broken/m-broken", models=["pricey/m-pricey"], route="fallback"
                ),
                range(flood),
            )
        )
    statuses = sorted(a.status for a in answers)
    served = statuses.count(200)
    # At most 20% of the requests in flight may be retrying (never fewer than 3).
    assert 3 <= served <= flood * 0.2
    assert fleet.hits["pricey"] == served
    assert statuses.count(500) == flood - served  # the first answer stands when not retried


def test_active_probes_readmit_an_ejected_target_early(
    make_gateway: MakeGateway, fleet: Fleet
) -> None:
    gateway = make_gateway(
        ["cheap", "pricey"],
        consecutive_failures=1,
        base_ejection=60,
        max_ejected_share=1.0,
        probe_interval=0.3,
    )
    fleet.set("cheap", "fail")
    assert _served(_chat(gateway)) == (200, "pricey/m-pricey", "1")
    assert _health(gateway)["cheap/m-cheap"]["status"] == "ejected"
    time.sleep(0.8)
    assert fleet.hits["cheap"] >= 2  # probed while down, still failing: stays out
    assert _health(gateway)["cheap/m-cheap"]["status"] == "ejected"
    fleet.set("cheap", "ok")
    deadline = time.monotonic() + 5
    while _health(gateway)["cheap/m-cheap"]["status"] != "healthy":
        assert time.monotonic() < deadline, "the probe never readmitted the target"
        time.sleep(0.1)
    assert _served(_chat(gateway)) == (200, "cheap/m-cheap", "0")  # long before the 60 s back-off
