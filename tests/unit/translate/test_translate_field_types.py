"""A client request's typed fields are checked as they are read: a value of the wrong JSON type
is the client's error, named by its field, whichever protocol it is translated for."""

from __future__ import annotations

from typing import Any

import pytest

from orcarouter.errors import InvalidRequest
from orcarouter.providers.exchange import read_client_request
from orcarouter.translate import anthropic_messages, gemini, openai_chat
from orcarouter.translate.codecs import AnthropicCodec, OpenAICodec, WireCodec
from orcarouter.translate.common import (
    MalformedRequest,
    as_bool,
    as_integer,
    as_number,
    as_string,
    as_strings,
)

OPENAI = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (as_number, [0, 1, 0.5, -2.25, None], ["1", True, [], {}]),
        (as_integer, [0, 7, -3, None], ["7", 1.5, False, [1], {}]),
        (as_bool, [True, False, None], [0, 1, "true", []]),
        (as_string, ["", "x", None], [0, 1.5, True, [], {}]),
        (as_strings, [[], ["a", "b"], None], ["a", [1], ["a", None], {}, 3]),
    ],
)
def test_each_check_takes_its_type_and_refuses_others(
    check: Any, good: list[Any], bad: list[Any]
) -> None:
    for value in good:
        expected = tuple(value) if isinstance(value, list) else value
        assert check(value, "field") == expected
    for value in bad:
        with pytest.raises(MalformedRequest) as caught:
            check(value, "field")
        assert caught.value.param == "field"


def test_an_integer_written_with_a_zero_fraction_is_an_integer() -> None:
    value = as_integer(40.0, "topK")
    assert value == 40
    assert type(value) is int


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", "hot"),
        ("top_p", [1]),
        ("top_k", 1.5),
        ("presence_penalty", "x"),
        ("frequency_penalty", {}),
        ("seed", "x"),
        ("n", 1.5),
        ("logprobs", "yes"),
        ("top_logprobs", "x"),
        ("logit_bias", 3),
        ("stop", [1]),
        ("stop", 5),
        ("user", 7),
        ("parallel_tool_calls", "no"),
        ("max_tokens", "x"),
        ("max_completion_tokens", 2.5),
    ],
)
def test_openai_fields_of_the_wrong_type_are_named(field: str, value: Any) -> None:
    with pytest.raises(MalformedRequest) as caught:
        openai_chat.request_to_canonical({**OPENAI, field: value})
    assert caught.value.param == field


def test_openai_message_name_of_the_wrong_type_is_named() -> None:
    body = {**OPENAI, "messages": [{"role": "user", "content": "hi", "name": 7}]}
    with pytest.raises(MalformedRequest) as caught:
        openai_chat.request_to_canonical(body)
    assert caught.value.param == "messages[].name"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", "hot"),
        ("top_p", {}),
        ("top_k", 2.5),
        ("stop_sequences", "END"),
        ("stop_sequences", ["END", 1]),
        ("max_tokens", "10"),
    ],
)
def test_anthropic_fields_of_the_wrong_type_are_named(field: str, value: Any) -> None:
    with pytest.raises(MalformedRequest) as caught:
        anthropic_messages.request_to_canonical({**ANTHROPIC, field: value})
    assert caught.value.param == field


def test_values_of_the_right_type_are_kept_as_given() -> None:
    request = openai_chat.request_to_canonical(
        {**OPENAI, "temperature": 1, "top_p": 0.5, "seed": 3.0, "stop": "END", "user": "u"}
    )
    sampling = request.sampling
    assert (sampling.temperature, sampling.top_p, sampling.seed) == (1, 0.5, 3)
    assert sampling.stop == ("END",)
    assert request.user == "u"


def test_gemini_top_k_written_as_a_float_reads_as_an_integer() -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    request = gemini.request_to_canonical({**body, "generationConfig": {"topK": 40.0}})
    assert request.sampling.top_k == 40


@pytest.mark.parametrize(
    ("codec", "body", "message"),
    [
        (OpenAICodec(), {**OPENAI, "temperature": "hot"}, "'temperature' must be a number"),
        (AnthropicCodec(), {**ANTHROPIC, "top_k": 2.5}, "'top_k' must be an integer"),
        (
            OpenAICodec(),
            {**OPENAI, "messages": [{"role": "wizard", "content": "x"}]},
            "the request could not be read: unsupported OpenAI message role 'wizard'",
        ),
    ],
)
def test_reading_a_client_request_turns_its_errors_into_the_clients(
    codec: WireCodec, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        read_client_request(codec, body)
    assert caught.value.status == 400
    assert caught.value.message == message
