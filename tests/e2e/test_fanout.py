"""``n > 1`` from an OpenAI client to a provider that answers one message per request."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import ADMIN_KEY
from tests.support.fleet import anthropic_message, anthropic_stream
from tests.support.gateway import GatewayProcess
from tests.support.replay import ReplayUpstream, json_answer, sse_answer

MODEL = "replay-anthropic/claude-sonnet-4-5"
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say something."}]


def _client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)


def test_n_choices_from_n_concurrent_requests(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    for text in ("one", "two", "three"):
        upstream.expect(json_answer(anthropic_message(text)))
    with _client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=ASK, n=3, max_tokens=20
        )
    completion = raw.parse()
    assert [c.index for c in completion.choices] == [0, 1, 2]
    texts = {c.message.content for c in completion.choices}
    assert texts == {"one", "two", "three"}  # answers may finish in any order
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (15, 3)
    assert len(upstream.received) == 3
    assert all("n" not in seen.body for seen in upstream.received)
    record = gateway.usage_record(raw.headers["x-orca-request-id"])
    assert (record["prompt_tokens"], record["completion_tokens"]) == (15, 3)


def test_n_choices_stream_as_one_stream(gateway: GatewayProcess, upstream: ReplayUpstream) -> None:
    for text in ("alpha", "beta"):
        upstream.expect(sse_answer(anthropic_stream(text)))
    with _client(gateway) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            n=2,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    texts: dict[int, str] = {}
    finishes: dict[int, str | None] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert set(texts.values()) == {"alpha", "beta"}
    assert finishes == {0: "stop", 1: "stop"}
    assert len({chunk.id for chunk in chunks}) == 1  # one stream, one id
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (10, 2)
    assert sum(1 for chunk in chunks if chunk.usage is not None) == 1


def test_the_stream_helper_accumulates_every_choice(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    for text in ("left", "right"):
        upstream.expect(sse_answer(anthropic_stream(text)))
    with (
        _client(gateway) as client,
        client.chat.completions.stream(model=MODEL, messages=ASK, n=2, max_tokens=20) as stream,
    ):
        final = stream.get_final_completion()
    assert {c.message.content for c in final.choices} == {"left", "right"}


def test_one_failing_request_fails_the_call(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(json_answer(anthropic_message("fine")))
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    upstream.expect(json_answer(overloaded, status=529))
    with _client(gateway) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=MODEL, messages=ASK, n=2, max_tokens=20)
    assert caught.value.status_code == 503  # Anthropic's 529, as OpenAI clients know it


def test_n_out_of_range_is_400(gateway: GatewayProcess) -> None:
    with _client(gateway) as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=ASK, n=99, max_tokens=20)
    assert caught.value.param == "n"
