"""Meaning of Gemini requests and answers, for ``test_gemini_recordings.py``.

Every recorded ``generateContent`` / ``streamGenerateContent`` request R is sent through the
gateway by an OpenAI client and by an Anthropic client (R → canonical → client wire, by the
project's translators). The request the gateway then sends to the replay Gemini upstream (U)
must mean what R meant. "Same meaning" is decided here, on the raw JSON of both wires, by
normalisers written independently of the translators under test. Every normalisation is a
numbered rule below; nothing else is forgiven.

Gemini request rules (``gemini_request_meaning``), applied to R and U alike:

* G1  Field names are read in camelCase or snake_case (the REST API is protobuf JSON and takes
      both; the recordings hold both, e.g. ``thinking_budget``).
* G2  ``systemInstruction.role`` is not compared (Gemini ignores it). The system instruction is
      its text parts in order.
* G3  Consecutive contents of one role are one content, and in a user content the
      ``functionResponse`` parts come first (Gemini takes both; the gateway merges, §4.3).
      Empty text parts carry nothing; a user content of media only gets a blank text part
      (LiteLLM #5515), which is not compared.
* G3b Empty ``contents`` (R says only a system instruction) get a ``"."`` user turn from the
      gateway (LiteLLM #9733, #13769), which is not compared.
* G3c An ``inlineData`` part of a ``text/*`` type is compared as a text part holding its
      decoded text (cf. A9 of cross_support): Chat Completions has no text-document part, so it
      reaches Gemini from OpenAI clients as text.
* G4  Function-call / response ids are compared only where R has them, after mapping onto
      ``[A-Za-z0-9_-]`` (the Anthropic id alphabet, §2.3): Gemini pairs calls and responses by
      name and order, an id is optional.
* G5  ``fileData.mimeType`` is compared only where R has it (the gateway names the type of a
      URL it forwards), and not for a Files API URI (Gemini knows an uploaded file's type; an
      OpenAI ``file`` part or Anthropic ``file`` source carries none). ``audio/mpeg`` is
      ``audio/mp3`` (Gemini documents ``audio/mp3``).
* G5b OpenAI client only: a ``functionResponse.response`` ``{"error": text}`` is compared as
      ``{"output": text}``: a Chat Completions tool message cannot say the call failed (A3).
* G6  Function-declaration ``parameters`` (OpenAPI subset) and ``parametersJsonSchema`` are one
      schema; ``type`` names compare in lower case; ``propertyOrdering`` and ``nullable:
      false`` are not compared; an empty ``description`` is none.
* G7  ``responseModalities: ["TEXT"]`` and ``candidateCount: 1`` are the defaults.
* G8  ``toolConfig``: mode ``VALIDATED`` is ``AUTO`` (both let the model answer with text or
      calls; VALIDATED also constrains call arguments to the schema, which no client
      ``tool_choice`` can ask for, cf. A7 of cross_support). ``allowedFunctionNames`` is a set,
      and with mode ``ANY`` naming every declared function it is no restriction.
* G9  ``thinkingConfig``: ``includeThoughts: false`` is the default (absent). With the Anthropic
      client the gateway sends ``includeThoughts: true`` whenever it asks for thinking
      ("clients that ask for reasoning want to see it", gemini/config.py): Anthropic thinking
      blocks are always shown.
* G10 A request without ``maxOutputTokens`` is sent by an Anthropic client with the
      ``max_tokens`` that format requires (``CLIENT_MAX_TOKENS``): the upstream must receive
      exactly that.
* G11 Anthropic client only: ``thoughtSignature`` values and thought parts in the history are
      not compared, and the gateway's
      stand-in signature (``DUMMY_SIGNATURE``, required by Gemini 3 on function calls) is none.
      An Anthropic client cannot hand Gemini reasoning back: a request's ``thinking`` /
      ``redacted_thinking`` blocks are Anthropic-signed by definition, and the gateway must
      not send those to Gemini. (See the report: the gateway shows Gemini signatures to
      Anthropic clients unmarked.)
* G12 OpenAI client only: ``topK`` is not compared (no Chat Completions field, cf. A7).
* G13 A full JSON Schema in R (``responseJsonSchema``, ``parametersJsonSchema``) is compared
      after its reduction to Gemini's OpenAPI ``Schema`` subset (``sanitize_schema``): the
      gateway sends the subset (``responseSchema``, ``parameters``) to every model that
      providers/profiles.py does not flag ``json_schema`` (none is, today; see the report), so
      ``title``, ``additionalProperties``, ``$ref`` … do not reach Gemini. This rule uses the
      project's reducer: it checks the schema survives the two client wires up to it.

Answers: ``expected_openai_answer`` / ``expected_anthropic_answer`` are built from the recorded
Gemini response (streams accumulated by ``accumulate_gemini_stream``) with the §4.4 stop-reason
and §4.5 usage tables, and compared with ``openai_answer`` / ``anthropic_answer`` of
``cross_support`` (what the SDK object holds):

* stop: ``STOP`` is ``stop`` / ``end_turn``, or ``tool_calls`` / ``tool_use`` when the answer
  has a function call; ``MAX_TOKENS`` is ``length`` / ``max_tokens``; ``SAFETY`` and the other
  filters are ``content_filter`` / ``refusal``.
* usage: prompt = ``promptTokenCount`` (includes cached) + ``toolUsePromptTokenCount`` (the
  server tool's prompt, counted in ``totalTokenCount``); output = ``candidatesTokenCount`` +
  ``thoughtsTokenCount``; cached = ``cachedContentTokenCount``. Anthropic: input = prompt -
  cached, cache read = cached.
* reasoning: a thought part is thinking (text and signature); a signature on any other part is
  an opaque reasoning item before that part (OpenAI ``reasoning_details`` entry
  ``reasoning.encrypted``, Anthropic ``redacted_thinking``). Function-call ids are compared
  only where the recording has them (the gateway makes one up otherwise).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from orcarouter.translate.gemini.schema import sanitize_schema
from tests.replay.cross_support import sse_events, tool_id

JSON = dict[str, Any]

CLIENT_MAX_TOKENS = 4321
DUMMY_SIGNATURE = "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I="
"""base64 of ``skip_thought_signature_validator`` (Gemini's documented stand-in)."""

_SNAKE = re.compile(r"_([a-z])")
_FILTERS = {
    "SAFETY",
    "RECITATION",
    "LANGUAGE",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "OTHER",
}


def camel(name: str) -> str:
    """G1: ``thinking_budget`` → ``thinkingBudget``."""
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


def camel_keys(data: Any) -> JSON:
    """G1: one level of a protobuf-JSON object in camelCase."""
    return {camel(str(k)): v for k, v in data.items()} if isinstance(data, Mapping) else {}


def request_body(raw: Any) -> JSON:
    """A recorded request body (one recording holds it as JSON text)."""
    body = json.loads(raw) if isinstance(raw, str) else raw
    assert isinstance(body, dict)
    return body


def model_of(uri: str) -> str:
    """``.../models/{model}:generateContent`` → ``model``."""
    return uri.split("?")[0].split("/models/")[1].rsplit(":", 1)[0]


def method_of(uri: str) -> str:
    """``generateContent`` or ``streamGenerateContent``."""
    return uri.split("?")[0].rsplit(":", 1)[1]


# ---- requests ----------------------------------------------------------------------------------


def _schema(node: Any) -> Any:
    """G6: a schema in one spelling."""
    if isinstance(node, list):
        return [_schema(n) for n in node]
    if not isinstance(node, Mapping):
        return node
    out: JSON = {}
    for key, value in camel_keys(node).items():
        if key == "propertyOrdering" or (key == "nullable" and value is False):
            continue
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {str(k): _schema(v) for k, v in value.items()}
        else:
            out[key] = _schema(value)
    return out


FILES_API = "https://generativelanguage.googleapis.com/"


def _part(
    raw: Mapping[str, Any], *, has_ids: set[str], signatures: bool, client: str = ""
) -> tuple[Any, ...]:
    part = camel_keys(raw)
    signature = part.pop("thoughtSignature", None)
    if not signatures or signature == DUMMY_SIGNATURE:  # G11
        signature = None
    if "text" in part:
        text = part.pop("text")
        if part.pop("thought", False):
            if not signatures:  # G11
                return ("text", "", None, None)
            return ("thought", text, signature, part or None)
        return ("text", text, signature, part or None)
    if "functionCall" in part:
        call = camel_keys(part.pop("functionCall"))
        call_id = tool_id(call["id"]) if "call" in has_ids and call.get("id") else None  # G4
        return ("call", call.get("name"), call.get("args") or {}, call_id, signature, part or None)
    if "functionResponse" in part:
        response = camel_keys(part.pop("functionResponse"))
        response_id = (
            tool_id(response["id"]) if "response" in has_ids and response.get("id") else None
        )
        rest = {k: v for k, v in response.items() if k not in ("id", "name", "response")}
        if isinstance(rest.get("parts"), list):
            rest["parts"] = [
                _part(p, has_ids=has_ids, signatures=signatures, client=client)
                for p in rest["parts"]
            ]
        answer = response.get("response")
        if client == "openai" and isinstance(answer, Mapping) and list(answer) == ["error"]:
            answer = {"output": answer["error"]}  # G5b
        return (
            "response",
            response.get("name"),
            answer,
            response_id,
            rest or None,
            signature,
            part or None,
        )
    if "inlineData" in part:
        data = camel_keys(part.pop("inlineData"))
        payload = str(data.get("data", "")).replace("-", "+").replace("_", "/").rstrip("=")
        mime = _mime(data.get("mimeType"))
        if str(mime).startswith("text/"):  # G3c
            text = base64.b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8")
            return ("text", text, signature, part or None)
        return ("inline", mime, payload, signature, part or None)
    if "fileData" in part:
        data = camel_keys(part.pop("fileData"))
        uri = str(data.get("fileUri"))
        mime = _mime(data.get("mimeType")) if "mime" in has_ids else None  # G5
        if uri.startswith(FILES_API):
            mime = None
        return ("file", mime, data.get("fileUri"), signature, part or None)
    return ("part", signature, part)


def _mime(value: Any) -> Any:
    """G5."""
    return "audio/mp3" if value == "audio/mpeg" else value


def _id_presence(body: Mapping[str, Any]) -> set[str]:
    """Which optional fields R gives (G4/G5), so U's made-up ones are not compared."""
    seen: set[str] = set()
    for content in body.get("contents") or ():
        for raw in content.get("parts") or ():
            part = camel_keys(raw)
            if camel_keys(part.get("functionCall")).get("id"):
                seen.add("call")
            if camel_keys(part.get("functionResponse")).get("id"):
                seen.add("response")
            if camel_keys(part.get("fileData")).get("mimeType"):
                seen.add("mime")
    return seen


def _contents(contents: Any, has_ids: set[str], signatures: bool, client: str) -> list[JSON]:
    """G3: merged same-role turns, responses first, no empty texts or media-only padding."""
    out: list[JSON] = []
    for content in contents or ():
        role = content.get("role") or "user"
        parts = [
            _part(p, has_ids=has_ids, signatures=signatures, client=client)
            for p in content.get("parts") or ()
            if isinstance(p, Mapping)
        ]
        parts = [p for p in parts if not (p[0] == "text" and not p[1] and p[2] is None)]
        if not parts:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    for content in out:
        parts = content["parts"]
        if content["role"] == "user":
            parts[:] = [p for p in parts if p[0] == "response"] + [
                p for p in parts if p[0] != "response"
            ]
            media = [p for p in parts if p[0] in ("inline", "file")]
            blank = [p for p in parts if p[0] == "text" and not p[1].strip() and p[2] is None]
            if media and len(media) + len(blank) == len(parts):
                parts[:] = media
    return out


def _reduced(schema: Any, reduce: bool) -> Any:
    """G13."""
    return sanitize_schema(schema) if reduce and isinstance(schema, Mapping) else schema


def _declarations(tools: Any, reduce: bool) -> tuple[list[Any], list[Any]]:
    functions: list[Any] = []
    others: list[Any] = []
    for raw in tools or ():
        tool = camel_keys(raw)
        declarations = tool.pop("functionDeclarations", None)
        for declaration in declarations or ():
            data = camel_keys(declaration)
            json_schema = data.pop("parametersJsonSchema", None)
            schema = data.pop("parameters", None)
            if json_schema is not None:
                schema = _reduced(json_schema, reduce)
            functions.append(
                {
                    "name": data.pop("name", None),
                    "description": data.pop("description", None) or None,
                    "parameters": _schema(schema),
                    "rest": data or None,
                }
            )
        if tool:
            others.append(tool)
    return functions, others


def _tool_config(config: Any, declared: list[str]) -> Any:
    data = camel_keys(config)
    calling = camel_keys(data.pop("functionCallingConfig", None))
    if not calling and not data:
        return None
    mode = calling.pop("mode", None)
    mode = "AUTO" if mode == "VALIDATED" else mode  # G8
    names = calling.pop("allowedFunctionNames", None)
    allowed = sorted(names) if isinstance(names, list) else None
    if mode == "ANY" and allowed is not None and allowed == sorted(declared):
        allowed = None
    return {"mode": mode, "allowed": allowed, "rest": {**calling, **data} or None}


def _thinking(config: Any, client: str) -> Any:
    data = camel_keys(config)
    if not data:
        return None
    if data.get("includeThoughts") is False:  # G9
        del data["includeThoughts"]
    if "thinkingLevel" in data and isinstance(data["thinkingLevel"], str):
        data["thinkingLevel"] = data["thinkingLevel"].upper()
    return data or None


def gemini_request_meaning(
    body: Mapping[str, Any],
    *,
    client: str,
    recorded: Mapping[str, Any] | None = None,
    json_schema: bool = False,
) -> JSON:
    """What a Gemini ``generateContent`` body asks for (rules G1-G12).

    ``recorded`` is R, which decides the optional fields compared (G4, G5, G10); it defaults to
    ``body`` itself.
    """
    data = camel_keys(body)
    source = camel_keys(recorded if recorded is not None else body)
    has_ids = _id_presence(source)
    signatures = client != "anthropic"
    system = camel_keys(data.pop("systemInstruction", None))
    system_parts = [
        _part(p, has_ids=has_ids, signatures=signatures)
        for p in system.pop("parts", None) or ()
        if isinstance(p, Mapping)
    ]
    system.pop("role", None)  # G2
    reduce = (
        recorded is None and not json_schema
    )  # G13: R's JSON Schemas, as the gateway sends them
    functions, others = _declarations(data.pop("tools", None), reduce)
    declared = [str(f["name"]) for f in functions]
    generation = camel_keys(data.pop("generationConfig", None))
    if generation.get("responseModalities") in (["TEXT"], ["text"]):  # G7
        del generation["responseModalities"]
    if generation.get("candidateCount") == 1:
        del generation["candidateCount"]
    if client == "openai":
        generation.pop("topK", None)  # G12
    recorded_generation = camel_keys(source.get("generationConfig"))
    if client == "anthropic" and "maxOutputTokens" not in recorded_generation:  # G10
        generation.setdefault("maxOutputTokens", CLIENT_MAX_TOKENS)
    thinking = _thinking(generation.pop("thinkingConfig", None), client)
    if client == "anthropic" and thinking is not None and "includeThoughts" in thinking:
        recorded_thinking = _thinking(recorded_generation.get("thinkingConfig"), client) or {}
        if "includeThoughts" not in recorded_thinking:  # G9
            del thinking["includeThoughts"]
    if "responseJsonSchema" in generation:
        generation["responseSchema"] = _reduced(generation.pop("responseJsonSchema"), reduce)
    if "responseSchema" in generation:
        generation["responseSchema"] = _schema(generation["responseSchema"])
    contents = _contents(data.pop("contents", None), has_ids, signatures, client)
    empty = not _contents(source.get("contents"), has_ids, signatures, client)
    if empty and contents == [{"role": "user", "parts": [("text", ".", None, None)]}]:
        contents = []  # G3b
    return {
        "system": [p for p in system_parts if not (p[0] == "text" and not p[1])],
        "system_rest": system or None,
        "contents": contents,
        "functions": functions,
        "tools": others,
        "toolConfig": _tool_config(data.pop("toolConfig", None), declared),
        "generationConfig": generation,
        "thinkingConfig": thinking,
        "rest": data or None,
    }


# ---- answers -----------------------------------------------------------------------------------


def accumulate_gemini_stream(text: str) -> JSON:
    """A recorded ``streamGenerateContent`` stream as the response it amounts to: its parts in
    order (``stream_items`` joins the pieces), the last ``finishReason`` and usage (usage is
    cumulative), and an ``error`` event, after which nothing more counts."""
    parts: list[Any] = []
    finish: str | None = None
    usage: Any = None
    error: Any = None
    grounding: Any = None
    for _, data in sse_events(text):
        chunk = json.loads(data)
        if "error" in chunk:
            error = chunk["error"]
            break
        usage = chunk.get("usageMetadata") or usage
        for piece in chunk.get("candidates") or ():
            parts.extend((piece.get("content") or {}).get("parts") or [])
            finish = piece.get("finishReason") or finish
            grounding = camel_keys(piece).get("groundingMetadata") or grounding
    candidate: JSON = {"content": {"role": "model", "parts": parts}}
    if grounding is not None:
        candidate["groundingMetadata"] = grounding
    if finish is not None:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "error": error, "stream": True}


def _items(response: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Candidate 0 as ordered items: text, thinking, signature, call."""
    candidates = response.get("candidates") or [{}]
    parts = (candidates[0].get("content") or {}).get("parts") or []
    stream = bool(response.get("stream"))
    out: list[tuple[Any, ...]] = []
    for raw in parts:
        part = camel_keys(raw)
        signature = part.get("thoughtSignature") or None
        if isinstance(part.get("text"), str) and part.get("thought"):
            last = out[-1] if out else None
            if stream and last is not None and last[0] == "thinking" and last[2] is None:
                out[-1] = ("thinking", last[1] + part["text"], signature)  # one open block
            else:
                out.append(("thinking", part["text"], signature))
            continue
        if signature is not None:
            out.append(("redacted", signature))
        if isinstance(part.get("text"), str):
            out.append(("text", part["text"]))
        elif "functionCall" in part:
            call = camel_keys(part["functionCall"])
            out.append(("call", call.get("id"), call.get("name"), call.get("args") or {}))
        else:
            out.append(("other", part))
    return out


def _citations(response: Mapping[str, Any]) -> list[Any]:
    """URLs of ``groundingMetadata`` supports, in order (OpenAI ``url_citation`` annotations)."""
    candidates = response.get("candidates") or [{}]
    grounding = camel_keys(camel_keys(candidates[0]).get("groundingMetadata"))
    chunks = grounding.get("groundingChunks") or []
    out: list[Any] = []
    for support in grounding.get("groundingSupports") or ():
        for index in camel_keys(support).get("groundingChunkIndices") or ():
            chunk = camel_keys(chunks[index]) if 0 <= index < len(chunks) else {}
            source = next(
                (camel_keys(chunk[k]) for k in ("web", "retrievedContext", "maps") if k in chunk),
                {},
            )
            if isinstance(source.get("uri"), str):
                out.append(source["uri"])
    return out


def _usage(response: Mapping[str, Any]) -> tuple[int, int, int]:
    """(prompt incl. cached and tool-use prompt, output incl. thoughts, cached)."""
    usage = camel_keys(response.get("usageMetadata"))
    prompt = (usage.get("promptTokenCount") or 0) + (usage.get("toolUsePromptTokenCount") or 0)
    output = (usage.get("candidatesTokenCount") or 0) + (usage.get("thoughtsTokenCount") or 0)
    return prompt, output, usage.get("cachedContentTokenCount") or 0


def _finish(response: Mapping[str, Any]) -> str | None:
    candidates = response.get("candidates") or [{}]
    return camel_keys(candidates[0]).get("finishReason")


def expected_openai_answer(response: Mapping[str, Any]) -> JSON:
    """What an OpenAI client must get for a recorded Gemini answer (``openai_answer`` terms)."""
    items = _items(response)
    calls = [i for i in items if i[0] == "call"]
    finish = _finish(response)
    reason = (
        "length"
        if finish == "MAX_TOKENS"
        else "content_filter"
        if finish in _FILTERS
        else "tool_calls"
        if calls
        else "stop"
    )
    prompt, output, cached = _usage(response)
    thinking = "".join(i[1] for i in items if i[0] == "thinking")
    return {
        "content": "".join(i[1] for i in items if i[0] == "text") or None,
        "refusal": None,
        "tool_calls": [(c[1], c[2], c[3]) for c in calls],
        "reasoning_content": thinking or None,
        "reasoning": [i for i in items if i[0] in ("thinking", "redacted")],
        "annotations": _citations(response),
        "finish_reason": reason,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
            "cached_tokens": cached,
        },
    }


def expected_anthropic_answer(response: Mapping[str, Any]) -> JSON:
    """What an Anthropic client must get (``anthropic_answer`` terms)."""
    blocks: list[tuple[Any, ...]] = []
    for item in _items(response):
        if item[0] == "text":
            if not item[1]:
                continue
            if blocks and blocks[-1][0] == "text":
                blocks[-1] = ("text", blocks[-1][1] + item[1])
            else:
                blocks.append(item)
        elif item[0] == "call":
            blocks.append(("tool_use", item[1], item[2], item[3]))
        elif item[0] == "thinking" and item[2] is not None:
            blocks.append(("thinking", item[1], "orcarouter:google-gemini-v1:" + item[2]))
        elif item[0] == "redacted":
            blocks.append(("redacted", "orcarouter:google-gemini-v1:" + item[1]))
        else:
            blocks.append(item)
    finish = _finish(response)
    calls = any(b[0] == "tool_use" for b in blocks)
    stop = (
        "max_tokens"
        if finish == "MAX_TOKENS"
        else "refusal"
        if finish in _FILTERS
        else "tool_use"
        if calls
        else "end_turn"
    )
    prompt, output, cached = _usage(response)
    return {
        "blocks": blocks,
        "citations": _citations(response),
        "stop_reason": stop,
        "usage": {
            "input_tokens": prompt - cached,
            "output_tokens": output,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
        },
    }


def blank_made_up_ids(
    got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]], kind: str | None, at: int
) -> list[tuple[Any, ...]]:
    """Where the recording gave a call no id, the gateway's made-up id is not compared."""
    out = list(got)
    for position, (item, want) in enumerate(zip(got, expected, strict=False)):
        same_kind = kind is None or (item[0] == kind == want[0])
        if same_kind and want[at] is None:
            out[position] = (*item[:at], None, *item[at + 1 :])
    return out
