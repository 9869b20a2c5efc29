"""The benchmark's scenarios: one entry per kind of traffic, each a fixed request and answer.

A scenario says which gateway route the client calls, which model it asks for, and what the fake
upstream serves for the provider that model resolves to. Adding a kind of traffic (for example
cross-format translation, once it exists) is one more entry in ``SCENARIOS``: give it the gateway
body in the client's format and the upstream path and answer of the provider it reaches, as
``cross-format stream`` does (an OpenAI client, an Anthropic upstream).
"""

from __future__ import annotations

from dataclasses import dataclass

import payloads

OPENAI_ROUTE = "/v1/chat/completions"
ANTHROPIC_ROUTE = "/v1/messages"


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

    @property
    def gateway_model(self) -> str:
        """The model id the client asks the gateway for."""
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
        gateway_body=payloads.openai_request(f"{provider_id}/{model}", stream=stream),
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
        gateway_body=payloads.anthropic_request(f"{provider_id}/{model}", stream=stream),
        direct_body=payloads.anthropic_request(model, stream=stream),
        headers=(("anthropic-version", "2023-06-01"),),
        response=response,
        content_type=content_type,
        events=events,
    )


def _cross_stream(name: str, provider_id: str) -> Scenario:
    """An OpenAI client streaming from an Anthropic upstream: every event is translated."""
    model = payloads.ANTHROPIC_MODEL_UPSTREAM
    response, events = payloads.anthropic_stream()
    return Scenario(
        name=name,
        provider_id=provider_id,
        protocol="anthropic",
        upstream_model=model,
        gateway_route=OPENAI_ROUTE,
        upstream_suffix="/messages",
        stream=True,
        gateway_body=payloads.openai_request(f"{provider_id}/{model}", stream=True),
        direct_body=payloads.anthropic_request(model, stream=True),
        headers=(("anthropic-version", "2023-06-01"),),
        response=response,
        content_type="text/event-stream",
        events=events,
        client_protocol="openai",
    )


SCENARIOS: list[Scenario] = [
    _openai("openai non-stream", "oai", stream=False),
    _anthropic("anthropic non-stream", "ant", stream=False),
    _openai("openai stream", "oai-sse", stream=True),
    _anthropic("anthropic stream", "ant-sse", stream=True),
    _cross_stream("cross-format stream", "xant-sse"),
]
