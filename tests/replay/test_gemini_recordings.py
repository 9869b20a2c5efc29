"""Every Gemini recording, replayed through the gateway by an OpenAI and an Anthropic client
(issue 3, "Proof on real traffic", Gemini upstream family).

For each recorded ``generateContent`` / ``streamGenerateContent`` request R, the client request
is R in the client's wire made by the project's own translators (R → canonical → client wire),
sent with that wire's official SDK to ``replay-gemini/<model>``; the replay upstream answers
with the recorded response. Checked:

1. the request the gateway sent upstream (path, ``x-goog-api-key``, body) has the meaning of R
   (``gemini_support`` normalisers, every forgiven difference a numbered rule there);
2. the SDK's result carries what the recorded answer carried that its format can carry: text,
   function calls (argument JSON), thinking text and signatures, the mapped stop reason, usage
   converted exactly; streamed recordings through the SDK stream helpers; a recorded error
   status raises with that status.

Recordings whose request uses something a client format cannot express are excluded (skipped)
with their reason, from ``openai_exclusion`` / ``anthropic_exclusion``, which read R itself.

How the client request is made: ``gemini.request_to_canonical`` then
``oc.request_from_canonical`` / ``am.request_from_canonical`` (the Anthropic client sends
``max_tokens`` ``CLIENT_MAX_TOKENS`` when R has no limit). ``safetySettings`` has no field in
either client format; the gateway takes it as a top-level client key and passes it to Gemini
(gemini/requests.py, as LiteLLM's ``safety_settings``), so the client sends it that way.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from orcarouter.translate import anthropic_messages as am
from orcarouter.translate import gemini
from orcarouter.translate import openai_chat as oc
from tests.conftest import ADMIN_KEY, GEMINI_UPSTREAM_KEY
from tests.replay.cross_support import (
    ANTHROPIC_ERROR_TYPES,
    anthropic_answer,
    assert_same,
    openai_answer,
)
from tests.replay.gemini_support import (
    CLIENT_MAX_TOKENS,
    FILES_API,
    accumulate_gemini_stream,
    blank_made_up_ids,
    camel_keys,
    expected_anthropic_answer,
    expected_openai_answer,
    gemini_request_meaning,
    method_of,
    model_of,
    request_body,
)
from tests.support.gateway import GatewayProcess
from tests.support.recordings import Interaction, load_family
from tests.support.replay import ReplayUpstream, replay

GEMINI = [
    i
    for i in load_family("gemini")
    if method_of(i.uri) in ("generateContent", "streamGenerateContent")
]

# ---- exclusions: what a client format cannot say -----------------------------------------------

_SERVER_PARTS = {"executableCode", "codeExecutionResult", "toolCall", "toolResponse"}


def _parts(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every part of R (with those inside function responses), in camelCase."""
    out: list[tuple[str, dict[str, Any]]] = []
    for content in body.get("contents") or ():
        role = str(content.get("role") or "user")
        for raw in content.get("parts") or ():
            part = camel_keys(raw)
            out.append((role, part))
            nested = camel_keys(part.get("functionResponse")).get("parts") or ()
            out.extend((role, camel_keys(p)) for p in nested)
    return out


def _common_exclusion(body: dict[str, Any]) -> str | None:
    """What neither client format can say."""
    if "cachedContent" in body or "cached_content" in body:
        return "cachedContent names server-side cached context: no client field for it"
    tools = {k for t in body.get("tools") or () for k in camel_keys(t)} - {
        "functionDeclarations",
        "googleSearch",
    }
    if tools:
        return f"Gemini server tool {sorted(tools)}: no client tool for it"
    if "includeServerSideToolInvocations" in camel_keys(body.get("toolConfig")):
        return "toolConfig.includeServerSideToolInvocations: a Gemini-only switch"
    kinds = {k for _, p in _parts(body) for k in p} & _SERVER_PARTS
    if kinds:
        return f"server-side tool parts {sorted(kinds)} in history: no client block for them"
    for _, part in _parts(body):
        data = camel_keys(part.get("fileData") or part.get("inlineData"))
        mime = str(data.get("mimeType") or "")
        uri = str(data.get("fileUri") or "")
        if "videoMetadata" in part:
            return "video clipping (videoMetadata): no client field for it"
        if mime.startswith("video/") or "youtube.com" in uri or "youtu.be" in uri:
            return "video input: neither client format has video content"
    thinking = camel_keys(camel_keys(body.get("generationConfig")).get("thinkingConfig"))
    if thinking.get("includeThoughts") and not {"thinkingBudget", "thinkingLevel"} & set(thinking):
        return (
            "thoughts shown at the model's default thinking (includeThoughts alone): each "
            "client's way to ask for reasoning (reasoning_effort; thinking budget or adaptive) "
            "also sets how much to think"
        )
    return None


def openai_exclusion(body: dict[str, Any]) -> str | None:
    """Why a Gemini request cannot be sent by an OpenAI client (``None``: it can)."""
    common = _common_exclusion(body)
    if common is not None:
        return common
    for _, part in _parts(body):
        data = camel_keys(part.get("fileData"))
        uri, mime = str(data.get("fileUri") or ""), str(data.get("mimeType") or "")
        if uri.startswith(FILES_API) and mime.startswith(("audio/", "image/")):
            kind = mime.partition("/")[0]
            return (
                f"{kind} by Files API URI: read as an uploaded-file reference, which no Chat "
                f"Completions {kind} part holds (input_audio is inline only)"
            )
    return None


def anthropic_exclusion(body: dict[str, Any]) -> str | None:
    """Why a Gemini request cannot be sent by an Anthropic client (``None``: it can)."""
    common = _common_exclusion(body)
    if common is not None:
        return common
    for _, part in _parts(body):
        data = camel_keys(part.get("inlineData") or part.get("fileData"))
        if str(data.get("mimeType") or "").startswith("audio/"):
            return "audio input: Anthropic Messages has no audio content"
    generation = camel_keys(body.get("generationConfig"))
    schema = "responseSchema" in generation or "responseJsonSchema" in generation
    if generation.get("responseMimeType") == "application/json" and not schema:
        return "JSON mode without a schema: Anthropic has none"
    calling = camel_keys(camel_keys(body.get("toolConfig")).get("functionCallingConfig"))
    names = calling.get("allowedFunctionNames")
    declared = {
        camel_keys(d).get("name")
        for t in body.get("tools") or ()
        for d in camel_keys(t).get("functionDeclarations") or ()
    }
    if isinstance(names, list) and len(names) > 1 and set(names) != declared:
        return "a choice among some of the tools (allowedFunctionNames): Anthropic has none"
    return None


# ---- the client requests -----------------------------------------------------------------------


def _canonical(interaction: Interaction) -> Any:
    return gemini.request_to_canonical(
        request_body(interaction.request_body), model=model_of(interaction.uri)
    )


def _pass_through(body: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    safety = recorded.get("safetySettings", recorded.get("safety_settings"))
    if safety is not None:
        body["safetySettings"] = safety
    return body


def openai_client_request(interaction: Interaction) -> dict[str, Any]:
    """R as an OpenAI client sends it."""
    body = oc.request_from_canonical(_canonical(interaction)).body
    return _pass_through(body, request_body(interaction.request_body))


def anthropic_client_request(interaction: Interaction) -> dict[str, Any]:
    """R as an Anthropic client sends it."""
    canonical = _canonical(interaction)
    body = am.request_from_canonical(canonical, default_max_tokens=CLIENT_MAX_TOKENS).body
    if canonical.reasoning is not None and canonical.reasoning.effort == "none":
        # Thinking off (``thinkingBudget: 0``): the translator omits ``thinking``, Anthropic's
        # default; against a Gemini model whose default is to think, the client says it.
        body["thinking"] = {"type": "disabled"}
    return _pass_through(body, request_body(interaction.request_body))


def _split(method: Any, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fields the SDK method names as parameters, and the rest for ``extra_body``."""
    names = set(inspect.signature(method).parameters)
    known = {k: v for k, v in body.items() if k in names}
    return known, {k: v for k, v in body.items() if k not in names}


@pytest.fixture(scope="module")
def anthropic_client(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    """One Anthropic SDK client for the module."""
    with anthropic.Anthropic(
        base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def openai_client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    """One OpenAI SDK client for the module."""
    with openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0, timeout=30
    ) as client:
        yield client


def _check_upstream(
    interaction: Interaction, upstream: ReplayUpstream, client: str, body: dict[str, Any]
) -> None:
    seen = upstream.received[-1]
    model, method = model_of(interaction.uri), method_of(interaction.uri)
    assert seen.path == f"/gemini/v1beta/models/{model}:{method}"
    assert seen.headers.get("x-goog-api-key") == GEMINI_UPSTREAM_KEY
    recorded = request_body(interaction.request_body)
    assert_same(
        gemini_request_meaning(seen.body, client=client, recorded=recorded),
        gemini_request_meaning(
            recorded, client=client, json_schema=model.startswith(("gemini-2.5", "gemini-3"))
        ),
        f"upstream request differs from the recording; client request: {json.dumps(body):.1500}",
    )


def _recorded_answer(interaction: Interaction) -> dict[str, Any]:
    if interaction.is_stream:
        recorded = accumulate_gemini_stream(interaction.response_text or "")
        assert recorded["error"] is None  # no recorded Gemini stream ends in an error event
        return recorded
    answer = interaction.response_json
    assert isinstance(answer, dict)
    return answer


def _error_message(interaction: Interaction) -> str:
    error = (interaction.response_json or {}).get("error") or {}
    return str(error.get("message"))


# ---- coverage ----------------------------------------------------------------------------------


def test_recording_counts() -> None:
    """Every recording is run or excluded with a reason (the counts go in the closing note)."""
    assert len(GEMINI) == 298
    bodies = [request_body(i.request_body) for i in GEMINI]
    openai_excluded = [b for b in bodies if openai_exclusion(b)]
    anthropic_excluded = [b for b in bodies if anthropic_exclusion(b)]
    assert (len(openai_excluded), len(anthropic_excluded)) == (43, 55)


# ---- OpenAI client -----------------------------------------------------------------------------


@pytest.mark.parametrize("interaction", GEMINI, ids=lambda i: i.id)
def test_gemini_recording_from_openai_client(
    interaction: Interaction, openai_client: openai.OpenAI, upstream: ReplayUpstream
) -> None:
    reason = openai_exclusion(request_body(interaction.request_body))
    if reason is not None:
        pytest.skip(f"excluded: {reason}")
    body = openai_client_request(interaction)
    body.pop("model")
    stream = method_of(interaction.uri) == "streamGenerateContent"
    known, extra = _split(openai_client.chat.completions.create, body)
    call: dict[str, Any] = {
        "model": f"replay-gemini/{model_of(interaction.uri)}",
        **known,
        "extra_body": extra or None,
    }
    upstream.expect(replay(interaction))
    if interaction.status >= 400:
        with pytest.raises(openai.APIStatusError) as caught:
            openai_client.chat.completions.create(**call, stream=stream)
        assert caught.value.status_code == interaction.status
        envelope = caught.value.response.json()
        assert envelope["error"]["message"] == _error_message(interaction)
    elif stream:
        call["stream_options"] = {"include_usage": True}  # usage comes only when asked for
        with openai_client.chat.completions.stream(**call) as events:
            final = events.get_final_completion()
        _compare_openai(final, _recorded_answer(interaction), "streamed answer")
    else:
        completion = openai_client.chat.completions.create(**call)
        _compare_openai(completion, _recorded_answer(interaction), "answer")
    _check_upstream(interaction, upstream, "openai", body)


def _compare_openai(completion: Any, recorded: dict[str, Any], context: str) -> None:
    expected = expected_openai_answer(recorded)
    got = openai_answer(completion)
    got["tool_calls"] = blank_made_up_ids(got["tool_calls"], expected["tool_calls"], None, 0)
    assert_same(got, expected, context)


# ---- Anthropic client --------------------------------------------------------------------------


@pytest.mark.parametrize("interaction", GEMINI, ids=lambda i: i.id)
def test_gemini_recording_from_anthropic_client(
    interaction: Interaction, anthropic_client: anthropic.Anthropic, upstream: ReplayUpstream
) -> None:
    reason = anthropic_exclusion(request_body(interaction.request_body))
    if reason is not None:
        pytest.skip(f"excluded: {reason}")
    body = anthropic_client_request(interaction)
    body.pop("model")
    body.pop("stream", None)
    stream = method_of(interaction.uri) == "streamGenerateContent"
    known, extra = _split(anthropic_client.messages.create, body)
    call: dict[str, Any] = {
        "model": f"replay-gemini/{model_of(interaction.uri)}",
        **known,
        "extra_body": extra or None,
    }
    upstream.expect(replay(interaction))
    if interaction.status >= 400:
        with pytest.raises(anthropic.APIStatusError) as caught:
            anthropic_client.messages.create(**call, stream=stream)
        assert caught.value.status_code == interaction.status
        envelope = caught.value.body
        assert isinstance(envelope, dict) and envelope.get("type") == "error"
        assert envelope["error"]["type"] == ANTHROPIC_ERROR_TYPES[interaction.status]
        assert envelope["error"]["message"] == _error_message(interaction)
    elif stream:
        with anthropic_client.messages.stream(**call) as events:
            final = events.get_final_message()
        _compare_anthropic(final, _recorded_answer(interaction), "streamed answer")
    else:
        message = anthropic_client.messages.create(**call)
        _compare_anthropic(message, _recorded_answer(interaction), "answer")
    _check_upstream(interaction, upstream, "anthropic", body)


def _compare_anthropic(message: Any, recorded: dict[str, Any], context: str) -> None:
    expected = expected_anthropic_answer(recorded)
    got = anthropic_answer(message)
    got["blocks"] = blank_made_up_ids(got["blocks"], expected["blocks"], "tool_use", 1)
    assert_same(got, expected, context)
