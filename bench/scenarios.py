"""The benchmark's scenarios: one entry per kind of traffic, each a fixed request and answer.

A scenario says which gateway route the client calls, which model it asks for, and what the fake
upstream serves for the provider that model resolves to. Adding a kind of traffic is one more
entry in ``SCENARIOS``: give it the gateway body in the client's format and the upstream path and
answer of the provider it reaches, as the two ``cross-format stream`` scenarios do (an OpenAI
client and an Anthropic upstream, and the other way round).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import payloads

OPENAI_ROUTE = "/v1/chat/completions"
ANTHROPIC_ROUTE = "/v1/messages"
# Every gateway request asks the workspace's auto router; each scenario's key allows only its
# provider's model, so the router resolves to that one candidate (on the full routing path).
GATEWAY_MODEL = "orcarouter/auto"
# Catalog prices for the fake models (USD per million tokens), so every request is priced.
PRICE_INPUT, PRICE_OUTPUT = "0.15", "0.60"
# High enough never to refuse a benchmark request, so every request is still counted against them.
KEY_RATE_LIMIT = 10**9
KEY_CONCURRENCY_LIMIT = 100_000
# The USD cap of the capped workers run: never reached, but every request then holds money
KEY_USD_CAP_MICROS = 10**12  # (across workers without Redis: in the database)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One kind of request, sent directly to the upstream and through the gateway."""

    name: str
    provider_id: str  # the fake provider the gateway model resolves to (one per upstream answer)
    protocol: str  # that provider's protocol
    upstream_model: str
    gateway_route: str  # the route the client calls on the gateway
    upstream_suffix: str  # appended to the provider's base URL by the gateway
    stream: bool
    gateway_body: bytes  # what the client sends to the gateway
    direct_body: bytes  # what a client would send to the upstream itself
    headers: tuple[tuple[str, str], ...]  # client headers besides auth and content-type
    response: bytes  # what the fake upstream answers
    content_type: str
    events: int  # SSE events per answer (0 when not streamed)
    client_protocol: str = ""  # the format the client speaks ("": the provider's own)
    paced: bool = False  # served one event per write, paused between (bench/pacer.py)

    @property
    def model_id(self) -> str:
        """The model the gateway's router resolves to: ``provider/model``."""
        return f"{self.provider_id}/{self.upstream_model}"

    @property
    def upstream_base(self) -> str:
        """The provider's base URL path on the fake upstream."""
        return f"/{self.provider_id}/v1"

    @property
    def upstream_path(self) -> str:
        """The path the gateway (and the direct client) POSTs to on the fake upstream."""
        return self.upstream_base + self.upstream_suffix

    @property
    def client(self) -> str:
        """The protocol the client speaks to the gateway."""
        return self.client_protocol or self.protocol

    @property
    def translated(self) -> bool:
        """True when the gateway translates between two protocols (its answer is not the
        upstream's bytes)."""
        return self.client != self.protocol

    @property
    def expect_tail(self) -> bytes:
        """The last bytes of every valid answer through the gateway: the upstream's own when
        the relay forwards them, else the end of the client protocol's stream."""
        if self.translated:
            return payloads.stream_tail(self.client)
        return self.response[-48:]


def _openai(name: str, provider_id: str, *, stream: bool) -> Scenario:
    model = payloads.OPENAI_MODEL_UPSTREAM
    if stream:
        response, events = payloads.openai_stream()
        content_type = "text/event-stream"
    else:
        response, events = payloads.openai_response(), 0
        content_type = "application/json"
    return Scenario(
        name=name,
        provider_id=provider_id,
        protocol="openai",
        upstream_model=model,
        gateway_route=OPENAI_ROUTE,
        upstream_suffix="/chat/completions",
        stream=stream,
        gateway_body=payloads.openai_request(GATEWAY_MODEL, stream=stream),
        direct_body=payloads.openai_request(model, stream=stream),
        headers=(),
        response=response,
        content_type=content_type,
        events=events,
    )


def _anthropic(name: str, provider_id: str, *, stream: bool) -> Scenario:
    model = payloads.ANTHROPIC_MODEL_UPSTREAM
    if stream:
        response, events = payloads.anthropic_stream()
        content_type = "text/event-stream"
    else:
        response, events = payloads.anthropic_response(), 0
        content_type = "application/json"
    return Scenario(
        name=name,
        provider_id=provider_id,
        protocol="anthropic",
        upstream_model=model,
        gateway_route=ANTHROPIC_ROUTE,
        upstream_suffix="/messages",
        stream=stream,
        gateway_body=payloads.anthropic_request(GATEWAY_MODEL, stream=stream),
        direct_body=payloads.anthropic_request(model, stream=stream),
        headers=(("anthropic-version", "2023-06-01"),),
        response=response,
        content_type=content_type,
        events=events,
    )


def _cross_stream(name: str, provider_id: str, client: str) -> Scenario:
    """A client of one protocol streaming from an upstream of the other: every event is
    translated (``client``: "openai" for an Anthropic upstream, "anthropic" for an OpenAI one)."""
    if client == "openai":
        upstream = _anthropic(name, provider_id, stream=True)
        gateway_body, route = payloads.openai_request(GATEWAY_MODEL, stream=True), OPENAI_ROUTE
    else:
        upstream = _openai(name, provider_id, stream=True)
        gateway_body = payloads.anthropic_request(GATEWAY_MODEL, stream=True)
        route = ANTHROPIC_ROUTE
    headers = (("anthropic-version", "2023-06-01"),)  # what either upstream or client expects
    return replace(
        upstream,
        gateway_route=route,
        gateway_body=gateway_body,
        headers=headers,
        client_protocol=client,
    )


SCENARIOS: list[Scenario] = [
    _openai("openai non-stream", "oai", stream=False),
    _anthropic("anthropic non-stream", "ant", stream=False),
    _openai("openai stream", "oai-sse", stream=True),
    _anthropic("anthropic stream", "ant-sse", stream=True),
    _cross_stream("cross-format stream", "xant-sse", client="openai"),
    _cross_stream("cross-format stream (anthropic client)", "xoai-sse", client="anthropic"),
]


def paced(scenario: Scenario) -> Scenario:
    """The same stream from a fake provider of its own that sends it as a model does: one event
    per write, a pause between (``pacer.py``, behind the upstream nginx)."""
    return replace(
        scenario,
        name=f"{scenario.name}, paced",
        provider_id=f"{scenario.provider_id}-paced",
        paced=True,
    )


def by_provider(scenarios: Sequence[Scenario]) -> dict[str, Scenario]:
    """One scenario per fake provider (the first that names it)."""
    seen: dict[str, Scenario] = {}
    for scenario in scenarios:
        seen.setdefault(scenario.provider_id, scenario)
    return seen


def gateway_config(upstream: str, scenarios: Sequence[Scenario]) -> str:
    """The gateway's YAML: one fake provider per distinct upstream answer, its model priced."""
    providers, models = ["providers:"], ["models:"]
    for provider_id, scenario in by_provider(scenarios).items():
        providers += [
            f"  - id: {provider_id}",
            f"    protocol: {scenario.protocol}",
            f"    base_url: {upstream}{scenario.upstream_base}",
            "    api_key_env: BENCH_UPSTREAM_KEY",
            f"    models: [{scenario.upstream_model}]",
        ]
        models += [
            f"  - provider: {provider_id}",
            f"    model: {scenario.upstream_model}",
            "    kind: chat",
            "    capabilities: [streaming]",
            f"    prices: [{{effective_from: 2025-01-01, input: {PRICE_INPUT}, "
            f"output: {PRICE_OUTPUT}}}]",
        ]
    return "\n".join(providers + models) + "\n"


def key_request(scenario: Scenario, capped: bool = False) -> dict[str, object]:
    """The workspace key a scenario's requests carry: only its provider's model allowed, with
    rate limits (requests, tokens, concurrency) on; ``capped``: a lifetime USD cap too."""
    cap = {"usd_cap_micros": KEY_USD_CAP_MICROS} if capped else {}
    return {
        **cap,
        "name": f"bench-{scenario.provider_id}",
        "model_limits_enabled": True,
        "model_limits": [scenario.model_id],
        "rpm_limit": KEY_RATE_LIMIT,
        "tpm_limit": KEY_RATE_LIMIT,
        "concurrency_limit": KEY_CONCURRENCY_LIMIT,
    }
