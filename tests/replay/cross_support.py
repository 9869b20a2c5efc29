"""Meaning of requests and answers, for the cross-format replay suite.

``test_cross_format_recordings.py`` sends every recorded request through the gateway in the
OTHER client format and checks two things: the upstream receives a request with the same
meaning as the recorded one, and the client's SDK returns what the recorded answer carried.
"Same meaning" is decided here, on the raw JSON of each wire, by normalisers written
independently of the translators under test. Every normalisation is a numbered rule below;
nothing else is forgiven.

OpenAI request rules (``openai_request_meaning``), applied to the recorded request R and to
what the gateway sent upstream U alike:

* O1  A key whose value is ``null`` is absent; so is an empty ``tools`` list.
* O2  The ``developer`` role is the ``system`` role (Anthropic has one kind of system text).
* O3  ``content``: a string is one text part; ``null``, ``""`` and ``[]`` are no content;
      empty text parts carry nothing (Anthropic rejects empty text blocks, wire-formats §2.3).
      Text parts are NOT joined: parts "A", "B" differ from one text "AB". A message left with
      no content, tool calls or reasoning says nothing and is left out.
* O4  The leading run of system messages is one system prompt (its parts in order): Anthropic
      has one top-level ``system`` (§4.1); later system messages stay in place.
* O5  Tool-call ids are compared after mapping onto ``[A-Za-z0-9_-]``, the Anthropic id
      alphabet (§2.3), applied to calls and results alike.
* O6  Tool-call ``arguments`` are compared as parsed JSON; empty text is ``{}`` (Portkey #1104).
* O7  Assistant reasoning is compared as its text and signatures, from ``reasoning_details``
      when present, else ``reasoning_content`` or ``reasoning``: which field carries it is the
      target's dialect (providers/profiles.py). An empty signature is no signature.
* O8  Mistral's assistant ``prefix: false`` is its default; a tool call's ``index`` (Mistral)
      is its position, already given by the list.
* O9  A tool without ``type`` is a function tool (Mistral omits it); missing ``parameters``
      is ``{"type": "object", "properties": {}}`` and a top-level object schema without
      ``properties`` has ``{}`` (Anthropic requires an object ``input_schema``, §4.1).
* O10 Mistral's ``tool_choice: "any"`` is ``"required"``, and a named choice without ``type``
      (Mistral, Hugging Face router) is a function choice.
* O11 ``max_tokens`` and ``max_completion_tokens`` are one limit. A request without a limit is
      sent by an Anthropic client with the ``max_tokens`` that format requires
      (``CLIENT_MAX_TOKENS``): the upstream must receive exactly that.
* O12 ``n: 1`` is the default. ``stream: false`` is absent.
* O13 ``stream_options.include_usage`` is not compared: the gateway asks every translated
      stream for usage (issue 3), and strips the chunk for clients that did not ask.
* O14 An image's ``detail`` is not compared: Anthropic images have no resolution hint (§4.1).
* O15 ``response_format`` json_schema: ``name``, ``description`` and ``strict`` are not
      compared; Anthropic's ``output_config.format`` carries only the schema (§2.2).
* O16 ``reasoning_effort: "none"`` equals absent: Anthropic says "no thinking" by omitting
      ``thinking`` (or ``disabled``, the default), and the gateway sends nothing for it.
* O17 OpenAI-only parameters the Anthropic format has no field for and that only tune
      sampling, routing, caching or accounting (``OPENAI_ONLY_PARAMS``) are not compared;
      issue 3 has the gateway drop them when the client is OpenAI and the model Anthropic.
* O18 Vendor switches of OpenAI-compatible dialects (``VENDOR_SWITCHES``: Groq
      ``reasoning_format``/``search_settings``, OpenRouter ``reasoning``, z.ai ``thinking``/
      ``clear_thinking``, OpenAI ``moderation``) have no Anthropic field, so an Anthropic client
      cannot ask for them; they are not compared (the recorded answer is still checked in full).

Anthropic request rules (``anthropic_request_meaning``):

* A1  ``null`` is absent; ``stream: false`` is absent; a block's ``is_error: false`` is the
      default.
* A2  ``system`` and message ``content`` as a string are one text block; empty text blocks
      carry nothing; text blocks are not joined.
* A3  ``tool_result`` content as a string is one text block; ``is_error`` is not compared
      (an OpenAI ``tool`` message cannot carry it, §4.1/§4.2).
* A4  ``thinking``: ``disabled`` is absent. Enabled thinking is compared as "on" plus its
      effort: ``budget_tokens`` by the §4.7 reverse table (≥4096 high, ≥2048 medium,
      ≥1024 low), adaptive by ``output_config.effort`` or ``medium`` (§4.7). The OpenAI format
      says how much to think only as ``reasoning_effort``; ``display`` has no OpenAI field.
* A5  ``output_config.effort`` without ``thinking`` is compared as thinking at that effort: the
      OpenAI format's only effort knob is ``reasoning_effort``, which asks for reasoning.
* A6  A tool's top-level object ``input_schema`` without ``properties`` has ``{}`` (as O9).
* A7  Anthropic-only parameters (``ANTHROPIC_ONLY_PARAMS``: top-level ``cache_control``,
      ``top_k``, ``mcp_servers``, ``context_management``, ``container``,
      ``output_config.task_budget``) are not compared: Chat Completions has no field for them,
      so an OpenAI client cannot ask for them (the recorded answer is still checked in full).
* A8  A user turn's ``tool_result`` blocks come first (Anthropic requires it, §2.3).
* A9  A plain-text document (``source.type: text``) is compared as a text block with its text:
      Chat Completions has no text-document part, so it reaches OpenAI clients as text.

Answers are compared through ``anthropic_answer`` / ``openai_answer`` (what an SDK object
holds) against ``expected_anthropic_answer`` / ``expected_openai_answer`` (built from the
recorded provider answer with the §4.4 stop-reason and §4.5 usage tables).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from orcarouter.wire.sse import SSESplitter

JSON = dict[str, Any]

CLIENT_MAX_TOKENS = 4321
"""The ``max_tokens`` an Anthropic client sends for a recorded request that had no limit."""

OPENAI_ONLY_PARAMS = {
    "presence_penalty": "sampling-only (issue 3: dropped, named in X-Orca-Dropped-Params)",
    "frequency_penalty": "sampling-only (issue 3: dropped, named in X-Orca-Dropped-Params)",
    "seed": "sampling-only (issue 3: dropped, named in X-Orca-Dropped-Params)",
    "logit_bias": "sampling-only (issue 3: dropped, named in X-Orca-Dropped-Params)",
    "service_tier": "OpenAI scheduling tier",
    "store": "OpenAI stored completions",
    "prompt_cache_key": "OpenAI prompt-cache routing",
    "prompt_cache_options": "OpenAI prompt-cache routing",
    "prompt_cache_retention": "OpenAI prompt-cache retention",
    "safety_identifier": "OpenAI abuse monitoring",
    "metadata": "OpenAI dashboard metadata (not Anthropic's metadata)",
    "provider": "OpenRouter provider routing",
    "models": "OpenRouter fallback models",
    "transforms": "OpenRouter prompt transforms",
    "preset": "OpenRouter preset",
    "usage": "OpenRouter usage accounting",
}
VENDOR_SWITCHES = {
    "reasoning_format": "Groq reasoning_format",
    "search_settings": "Groq web search domain settings",
    "reasoning": "OpenRouter reasoning object",
    "thinking": "z.ai thinking object",
    "clear_thinking": "z.ai clear_thinking",
    "moderation": "OpenAI moderation policy",
}
ANTHROPIC_ONLY_PARAMS = {
    "cache_control": "automatic prompt caching (billing, not meaning)",
    "top_k": "not a Chat Completions parameter",
    "mcp_servers": "Anthropic MCP connector",
    "context_management": "Anthropic context editing",
    "container": "Anthropic code-execution container",
    "task_budget": "Anthropic task budget (output_config.task_budget)",
}
_ID_INVALID = re.compile(r"[^A-Za-z0-9_-]")


def _present(data: Mapping[str, Any]) -> JSON:
    """O1/A1: drop null-valued keys."""
    return {k: v for k, v in data.items() if v is not None}


def tool_id(value: Any) -> str:
    """O5: an id in Anthropic's alphabet."""
    return _ID_INVALID.sub("_", str(value or "")) or "toolu_empty"


def parsed_arguments(arguments: Any) -> Any:
    """O6: tool-call arguments as JSON (dict arguments, as Ollama sends them, kept)."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return {"<invalid json>": arguments}


def object_schema(schema: Any) -> Any:
    """O9/A6: the schema an Anthropic tool must have."""
    out = dict(schema) if isinstance(schema, Mapping) else {}
    out.setdefault("type", "object")
    if out["type"] == "object":
        out.setdefault("properties", {})
    return out


def _merge_texts(items: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Adjacent plain texts of an ANSWER are one text; empty texts carry nothing."""
    out: list[tuple[Any, ...]] = []
    for item in items:
        if item[0] == "text" and not item[1]:
            continue
        if item[0] == "text" and out and out[-1][0] == "text" and len(item) == len(out[-1]) == 2:
            out[-1] = ("text", out[-1][1] + item[1])
        else:
            out.append(item)
    return out


def _without_empty(items: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """O3/A2: empty texts carry nothing. (Request texts are NOT joined: "A", "B" is not "AB".)"""
    return [item for item in items if not (item[0] == "text" and not item[1])]


# ---- OpenAI requests ---------------------------------------------------------------------------


def _data_url(url: str) -> tuple[str, ...]:
    match = re.match(r"^data:([^;,]*)(?:;[^;,]*)*;base64,(.*)$", url, re.DOTALL)
    return ("base64", match.group(1), match.group(2)) if match else ("url", url)


def _openai_part(part: Mapping[str, Any]) -> tuple[Any, ...]:
    kind = part.get("type")
    cache = part.get("cache_control")
    if kind == "text":
        text = str(part.get("text") or "")
        return ("text", text) if cache is None else ("text", text, cache)
    if kind == "image_url":
        spec = part.get("image_url") or {}
        return ("image", _data_url(str(spec.get("url", ""))), cache)
    if kind == "file":
        spec = part.get("file") or {}
        source = (
            ("file_id", spec["file_id"])
            if "file_id" in spec
            else _data_url(str(spec.get("file_data", "")))
        )
        return ("document", source, spec.get("filename"), cache)
    return ("part", dict(part))


def _openai_content(content: Any) -> list[tuple[Any, ...]]:
    """O3: content as a list of part meanings."""
    if isinstance(content, str):
        return _without_empty([("text", content)])
    if isinstance(content, list):
        return _without_empty(_openai_part(p) for p in content if isinstance(p, Mapping))
    return []


def _detail(entry: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """One ``reasoning_details`` entry (OpenRouter types, and the gateway's ``orcarouter.*``
    entries that carry Anthropic's other assistant blocks, translate/openai_chat/parts.py)."""
    kind = entry.get("type")
    if kind == "reasoning.text":
        return ("thinking", entry.get("text") or "", entry.get("signature") or None)
    if kind == "reasoning.summary":
        return ("thinking", entry.get("summary") or "", None)
    if kind == "reasoning.encrypted":
        return ("redacted", entry.get("data"))
    if kind == "orcarouter.server_tool_use":
        return ("server_tool_use", entry.get("id"), entry.get("name"), entry.get("input"))
    if kind == "orcarouter.server_tool_result":
        content = entry.get("content")
        return ("server_tool_result", entry.get("kind"), entry.get("tool_use_id"), content)
    if kind == "orcarouter.opaque":
        return ("block", entry.get("data"))
    if kind in ("orcarouter.text_span", "orcarouter.tool_call"):
        return None  # order markers, not content
    return ("detail", dict(entry))


def _openai_reasoning(message: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """O7: reasoning text and signatures, whichever field carried them."""
    details = message.get("reasoning_details")
    if isinstance(details, list) and details:
        return [d for entry in details if (d := _detail(entry)) is not None]
    for key in ("reasoning_content", "reasoning"):
        text = message.get(key)
        if isinstance(text, str) and text:
            return [("thinking", text, None)]
    return []


def _openai_message(message: Mapping[str, Any]) -> JSON:
    data = _present(message)
    role = {"developer": "system"}.get(data.get("role", ""), data.get("role"))
    out: JSON = {"role": role, "content": _openai_content(data.get("content"))}
    if role == "tool":
        out["tool_call_id"] = tool_id(data.get("tool_call_id"))
    if role == "assistant":
        calls = data.get("tool_calls") or []
        out["tool_calls"] = [
            (
                tool_id(c.get("id")),
                (c.get("function") or {}).get("name"),
                parsed_arguments((c.get("function") or {}).get("arguments")),
            )
            for c in calls
        ]
        out["reasoning"] = _openai_reasoning(data)
        if data.get("refusal"):
            out["refusal"] = data["refusal"]
        if data.get("prefix"):  # O8
            out["prefix"] = True
    known = {
        "role",
        "content",
        "tool_call_id",
        "tool_calls",
        "refusal",
        "prefix",
        "reasoning_content",
        "reasoning",
        "reasoning_details",
    }
    rest = {k: v for k, v in data.items() if k not in known}
    if rest:
        out["unknown"] = rest
    return out


def _openai_tool(tool: Mapping[str, Any]) -> Any:
    kind = tool.get("type", "function")  # O9
    if kind != "function":
        return dict(tool)
    function = _present(tool.get("function") or {})
    return {
        "name": function.get("name"),
        "description": function.get("description"),
        "parameters": object_schema(function.get("parameters")),
        "strict": function.get("strict"),
    }


def _openai_tool_choice(body: Mapping[str, Any]) -> Any:
    choice = body.get("tool_choice")
    if choice == "any":  # O10, Mistral
        choice = "required"
    if isinstance(choice, Mapping) and choice.get("type", "function") == "function":
        return ("tool", (choice.get("function") or {}).get("name"))
    return choice


def _openai_response_format(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    if value.get("type") == "json_schema":  # O15
        return ("json_schema", (value.get("json_schema") or {}).get("schema"))
    return dict(value)


_OPENAI_TOP = {
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "n",
    "stream",
    "stream_options",
    "reasoning_effort",
    "response_format",
    "temperature",
    "top_p",
}


def openai_request_meaning(body: Mapping[str, Any], *, limit_if_absent: int | None = None) -> JSON:
    """What an OpenAI Chat request asks for (rules O1-O18)."""
    data = _present(body)
    limit = data.get("max_completion_tokens", data.get("max_tokens"))
    effort = data.get("reasoning_effort")
    messages = [_openai_message(m) for m in data.get("messages") or ()]
    out: JSON = {
        "model": data.get("model"),
        "messages": _leading_system_run([m for m in messages if _non_empty(m)]),
        "tools": [_openai_tool(t) for t in data.get("tools") or ()],
        "tool_choice": _openai_tool_choice(data),
        "parallel_tool_calls": data.get("parallel_tool_calls"),
        "max_tokens": limit if limit is not None else limit_if_absent,
        "stop": data.get("stop"),
        "temperature": data.get("temperature"),
        "top_p": data.get("top_p"),
        "reasoning_effort": None if effort == "none" else effort,  # O16
        "response_format": _openai_response_format(data.get("response_format")),
        "stream": bool(data.get("stream")),
        "n": None if data.get("n") == 1 else data.get("n"),  # O12
    }
    web_search = data.get("web_search_options")
    if web_search is not None:
        out["web_search_options"] = web_search
    rest = {
        k: v
        for k, v in data.items()
        if k not in _OPENAI_TOP
        and k not in OPENAI_ONLY_PARAMS
        and k not in VENDOR_SWITCHES
        and k != "web_search_options"
    }
    if rest:
        out["unknown"] = rest
    return out


def _leading_system_run(messages: list[JSON]) -> list[JSON]:
    """O4: the leading system messages as one."""
    count = 0
    while count < len(messages) and messages[count]["role"] == "system":
        count += 1
    if count < 2:
        return messages
    merged = {"role": "system", "content": [p for m in messages[:count] for p in m["content"]]}
    return [merged, *messages[count:]]


def assert_same(got: Any, expected: Any, context: str = "") -> None:
    """``got == expected``, failing with the first differing path."""
    difference = first_difference(got, expected)
    assert difference is None, f"{difference}\n{context}"


def first_difference(got: Any, expected: Any, path: str = "") -> str | None:
    """Where two meanings first differ (for assertion messages), ``None`` when equal."""
    if isinstance(got, dict) and isinstance(expected, dict):
        for key in sorted(set(got) | set(expected), key=str):
            found = first_difference(got.get(key), expected.get(key), f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(got, list | tuple) and isinstance(expected, list | tuple):
        for index, (a, b) in enumerate(zip(got, expected, strict=False)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found is not None:
                return found
        if len(got) != len(expected):
            counts = f"{len(got)} items, expected {len(expected)}"
            return f"{path}: {counts}: {got!r:.600} vs {expected!r:.600}"
        return None
    if got != expected:
        return f"{path}: got {got!r:.600}, expected {expected!r:.600}"
    return None


def _non_empty(message: Mapping[str, Any]) -> bool:
    """O3: a message with no content, calls or reasoning says nothing (Anthropic rejects it)."""
    return bool(
        message.get("content")
        or message.get("tool_calls")
        or message.get("reasoning")
        or message["role"] == "tool"
    )


# ---- Anthropic requests ------------------------------------------------------------------------


def _anthropic_source(source: Mapping[str, Any]) -> tuple[Any, ...]:
    if source.get("type") == "base64":
        return ("base64", source.get("media_type"), source.get("data"))
    if source.get("type") == "url":
        return ("url", source.get("url"))
    return tuple(sorted(source.items()))


def _anthropic_block(block: Mapping[str, Any]) -> tuple[Any, ...]:
    data = _present(block)
    if data.get("is_error") is False:  # A1
        del data["is_error"]
    kind = data.get("type")
    cache = data.get("cache_control")
    if kind == "text":
        citations = data.get("citations")
        if cache is None and not citations:
            return ("text", data.get("text", ""))
        return ("text", data.get("text", ""), cache, citations)
    if kind == "image":
        return ("image", _anthropic_source(data.get("source") or {}), cache)
    if kind == "document":
        raw_source = data.get("source") or {}
        if raw_source.get("type") == "text" and cache is None:  # A9
            return ("text", raw_source.get("data", ""))
        source = _anthropic_source(raw_source)
        return ("document", source, data.get("title"), cache)
    if kind == "tool_use":
        return ("tool_use", tool_id(data.get("id")), data.get("name"), data.get("input"), cache)
    if kind == "tool_result":
        content = data.get("content")
        blocks = (
            _without_empty([("text", content)])
            if isinstance(content, str)
            else _without_empty(_anthropic_block(b) for b in content or ())
        )
        return ("tool_result", tool_id(data.get("tool_use_id")), tuple(blocks), cache)  # A3
    if kind == "thinking":
        return ("thinking", data.get("thinking", ""), data.get("signature") or None)
    if kind == "redacted_thinking":
        return ("redacted", data.get("data"))
    return ("block", data)


def _anthropic_content(content: Any, role: str) -> list[tuple[Any, ...]]:
    if isinstance(content, str):
        blocks = _without_empty([("text", content)])
    else:
        blocks = _without_empty(
            _anthropic_block(b) for b in content or () if isinstance(b, Mapping)
        )
    if role == "user":  # A8
        results = [b for b in blocks if b[0] == "tool_result"]
        blocks = [*results, *[b for b in blocks if b[0] != "tool_result"]]
    return blocks


def effort_bucket(budget: int) -> str:
    """A4: the OpenAI effort an Anthropic budget falls in (wire-formats §4.7 reverse table)."""
    if budget >= 4096:
        return "high"
    if budget >= 2048:
        return "medium"
    return "low" if budget >= 1024 else "minimal"


def _anthropic_thinking(data: Mapping[str, Any]) -> tuple[Any, ...] | None:
    thinking = data.get("thinking") or {}
    effort = (data.get("output_config") or {}).get("effort")
    kind = thinking.get("type")
    if kind == "enabled":
        return ("on", effort or effort_bucket(int(thinking.get("budget_tokens") or 0)))
    if kind == "adaptive":
        return ("on", effort or "medium")
    return ("on", effort) if effort else None  # A5


def _anthropic_tool(tool: Mapping[str, Any]) -> Any:
    data = _present(tool)
    if data.get("type") not in (None, "custom"):
        return data
    return {
        "name": data.get("name"),
        "description": data.get("description"),
        "input_schema": object_schema(data.get("input_schema")),
        "strict": data.get("strict"),
        "cache_control": data.get("cache_control"),
    }


_ANTHROPIC_TOP = {
    "model",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "metadata",
}


def anthropic_request_meaning(body: Mapping[str, Any]) -> JSON:
    """What an Anthropic Messages request asks for (rules A1-A9)."""
    data = _present(body)
    choice = data.get("tool_choice")
    output = {
        k: v
        for k, v in (data.get("output_config") or {}).items()
        if k != "effort" and k not in ANTHROPIC_ONLY_PARAMS
    }
    out: JSON = {
        "model": data.get("model"),
        "system": _anthropic_content(data.get("system"), "system"),
        "messages": [
            {"role": m.get("role"), "content": _anthropic_content(m.get("content"), m["role"])}
            for m in data.get("messages") or ()
        ],
        "tools": [_anthropic_tool(t) for t in data.get("tools") or ()],
        "tool_choice": choice,
        "thinking": _anthropic_thinking(data),
        "output_config": output or None,
        "max_tokens": data.get("max_tokens"),
        "temperature": data.get("temperature"),
        "top_p": data.get("top_p"),
        "stop_sequences": data.get("stop_sequences"),
        "metadata": data.get("metadata"),
        "stream": bool(data.get("stream")),
    }
    rest = {
        k: v for k, v in data.items() if k not in _ANTHROPIC_TOP and k not in ANTHROPIC_ONLY_PARAMS
    }
    if rest:
        out["unknown"] = rest
    return out


# ---- recorded answers --------------------------------------------------------------------------


def sse_events(text: str) -> list[tuple[str, str]]:
    """(event name, data) of each event of a recorded SSE body."""
    splitter = SSESplitter()
    events = splitter.feed(text.encode())
    tail = splitter.close()
    if tail is not None:
        events.append(tail)
    return [(e.event, e.data) for e in events if e.data]


def _merge_detail(details: list[JSON], entry: Mapping[str, Any]) -> None:
    """Stream ``reasoning_details`` entries merge by ``index`` (strings concatenate)."""
    index = entry.get("index")
    for known in details:
        if index is not None and known.get("index") == index:
            for key, value in entry.items():
                if isinstance(value, str) and key not in ("type", "format", "index"):
                    known[key] = (known.get(key) or "") + value
                elif key not in known:
                    known[key] = value
            return
    details.append(dict(entry))


def _merge_tool_call(calls: list[JSON], call: Mapping[str, Any]) -> None:
    """Arguments concatenate per ``index``; a new id at a used index is a new call (Ollama)."""
    function = call.get("function") or {}
    index = call.get("index", len(calls))
    same = [c for c in calls if c["index"] == index]
    if not same or (call.get("id") and call.get("id") != same[-1]["id"]):
        calls.append({"index": index, "id": call.get("id"), "name": "", "arguments": ""})
        same = [calls[-1]]
    target = same[-1]
    target["name"] += function.get("name") or ""
    arguments = function.get("arguments")
    if isinstance(arguments, Mapping):
        arguments = json.dumps(arguments)
    target["arguments"] += arguments or ""


def accumulate_openai_stream(text: str) -> JSON:
    """A recorded chat-completion stream as the message it amounts to (choice 0).

    Returns ``{"message", "finish_reason", "usage", "error"}``; ``error`` is the message of an
    ``{"error": …}`` event, after which nothing more counts.
    """
    message: JSON = {"content": "", "reasoning": "", "refusal": ""}
    content_parts: list[JSON] = []
    details: list[JSON] = []
    calls: list[JSON] = []
    annotations: list[Any] = []
    finish: str | None = None
    usage: Any = None
    error: str | None = None
    for _, data in sse_events(text):
        if data.strip() == "[DONE]":
            break
        chunk = json.loads(data)
        if "error" in chunk:
            error = str(chunk["error"].get("message"))
            break
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str):
                message["content"] += content
            elif isinstance(content, list):
                content_parts.extend(content)
            for key in ("reasoning_content", "reasoning"):
                if isinstance(delta.get(key), str):
                    message["reasoning"] += delta[key]
            message["refusal"] += delta.get("refusal") or ""
            for entry in delta.get("reasoning_details") or ():
                _merge_detail(details, entry)
            for call in delta.get("tool_calls") or ():
                _merge_tool_call(calls, call)
            annotations.extend(delta.get("annotations") or ())
            finish = choice.get("finish_reason") or finish
    assembled: JSON = {
        "content": (
            [*content_parts, {"type": "text", "text": message["content"]}]
            if content_parts and message["content"]
            else content_parts or message["content"] or None
        ),
        "reasoning_content": message["reasoning"] or None,
        "refusal": message["refusal"] or None,
        "reasoning_details": details or None,
        "annotations": annotations or None,
        "tool_calls": [
            {"id": c["id"], "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls
        ]
        or None,
    }
    return {"message": assembled, "finish_reason": finish, "usage": usage, "error": error}


def openai_choice(response: Mapping[str, Any]) -> JSON:
    """The recorded non-stream completion in the shape ``accumulate_openai_stream`` returns."""
    choice = (response.get("choices") or [{}])[0]
    return {
        "message": choice.get("message") or {},
        "finish_reason": choice.get("finish_reason"),
        "usage": response.get("usage"),
        "error": None,
    }


# ---- what each client must see -----------------------------------------------------------------

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
"""wire-formats §2.9 / §4.10: the Anthropic ``error.type`` for an HTTP status."""

OPENAI_TO_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
"""wire-formats §4.4, OpenAI ``finish_reason`` → Anthropic ``stop_reason``."""

ANTHROPIC_TO_OPENAI_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "length",
    "refusal": "content_filter",
    "model_context_window_exceeded": "length",
}
"""wire-formats §4.4, Anthropic ``stop_reason`` → OpenAI ``finish_reason``."""


def _mistral_parts(parts: list[Any]) -> tuple[str, str]:
    """Mistral's structured content: (answer text, thinking text)."""
    text, thinking = "", ""
    for part in parts:
        if part.get("type") == "text":
            text += part.get("text") or ""
        elif part.get("type") == "thinking":
            thinking += "".join(p.get("text") or "" for p in part.get("thinking") or ())
    return text, thinking


def _shown_to_anthropic(message: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    details = message.get("reasoning_details")
    items = _openai_reasoning(message)
    if not (isinstance(details, list) and details):
        return items
    formats = [e.get("format") for e in details if _detail(e) is not None]
    out = []
    for item, fmt in zip(items, formats, strict=False):
        if fmt != "anthropic-claude-v1" and item[0] == "thinking" and item[2]:
            item = ("thinking", item[1], f"orcarouter:{fmt or ''}:{item[2]}")
        elif fmt != "anthropic-claude-v1" and item[0] == "redacted" and item[1]:
            item = ("redacted", f"orcarouter:{fmt or ''}:{item[1]}")
        out.append(item)
    return out


def expected_anthropic_answer(recorded: Mapping[str, Any]) -> JSON:
    """What an Anthropic client must get for a recorded OpenAI answer (choice 0)."""
    message = recorded["message"]
    content = message.get("content")
    text, mistral_thinking = (
        _mistral_parts(content) if isinstance(content, list) else (content or "", "")
    )
    blocks: list[tuple[Any, ...]] = _shown_to_anthropic(message)
    if not blocks and mistral_thinking:
        blocks.append(("thinking", mistral_thinking, None))
    blocks.append(("text", text))
    blocks.append(("text", message.get("refusal") or ""))
    calls = message.get("tool_calls") or []
    for call in calls:
        function = call.get("function") or {}
        arguments = parsed_arguments(function.get("arguments"))
        if not isinstance(arguments, dict) or "<invalid json>" in arguments:
            arguments = {}  # Anthropic input must be an object; unparseable text carries none
        blocks.append(("tool_use", call.get("id"), function.get("name"), arguments))
    finish = recorded.get("finish_reason")
    stop = OPENAI_TO_ANTHROPIC_STOP.get(finish or "stop", "end_turn")
    if stop == "end_turn" and calls:
        stop = "tool_use"  # "stop" after tool calls (Ollama, LiteLLM #35663)
    usage = recorded.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or 0
    written = details.get("cache_write_tokens") or 0
    return {
        "blocks": _merge_texts(blocks),
        "citations": [
            (a.get("url_citation") or {}).get("url") for a in message.get("annotations") or ()
        ],
        "stop_reason": stop,
        "usage": {
            "input_tokens": max((usage.get("prompt_tokens") or 0) - cached - written, 0),
            "output_tokens": usage.get("completion_tokens") or 0,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": written,
        },
    }


def anthropic_answer(message: Any) -> JSON:
    """What an Anthropic SDK ``Message`` carries, in ``expected_anthropic_answer``'s terms."""
    blocks: list[tuple[Any, ...]] = []
    citations: list[Any] = []
    for block in message.content:
        if block.type == "text":
            blocks.append(("text", block.text))
            citations.extend(getattr(c, "url", None) for c in block.citations or ())
        elif block.type == "thinking":
            blocks.append(("thinking", block.thinking, block.signature or None))
        elif block.type == "redacted_thinking":
            blocks.append(("redacted", block.data))
        elif block.type == "tool_use":
            blocks.append(("tool_use", block.id, block.name, block.input))
        else:
            blocks.append((block.type,))
    usage = message.usage
    return {
        "blocks": _merge_texts(blocks),
        "citations": citations,
        "stop_reason": message.stop_reason,
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens or 0,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens or 0,
        },
    }


def _reasoning_entry(block: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """An Anthropic answer block an OpenAI message carries in ``reasoning_details``."""
    kind = str(block.get("type"))
    if kind in ("text", "tool_use"):
        return None
    if kind == "thinking":
        return ("thinking", block.get("thinking") or "", block.get("signature") or None)
    if kind == "redacted_thinking":
        return ("redacted", block.get("data"))
    if kind == "server_tool_use":
        return ("server_tool_use", block.get("id"), block.get("name"), block.get("input"))
    if kind.endswith("_tool_result") and "tool_use_id" in block:
        return ("server_tool_result", kind, block.get("tool_use_id"), block.get("content"))
    return ("block", dict(block))


def expected_openai_answer(message: Mapping[str, Any]) -> JSON:
    """What an OpenAI client must get for a recorded Anthropic message."""
    blocks = [b for b in message.get("content") or () if isinstance(b, Mapping)]
    texts = [b.get("text") or "" for b in blocks if b.get("type") == "text"]
    reasoning = [e for b in blocks if (e := _reasoning_entry(b)) is not None]
    thinking_text = "".join(e[1] for e in reasoning if e[0] == "thinking")
    refusal = None
    usage = message.get("usage") or {}
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + written
    return {
        "content": "".join(texts) or None,
        "refusal": refusal,
        "tool_calls": [
            (b.get("id"), b.get("name"), b.get("input"))
            for b in blocks
            if b.get("type") == "tool_use"
        ],
        "reasoning_content": thinking_text or None,
        "reasoning": reasoning,
        "annotations": [
            c.get("url")
            for b in blocks
            if b.get("type") == "text"
            for c in b.get("citations") or ()
            if c.get("url")
        ],
        "finish_reason": ANTHROPIC_TO_OPENAI_STOP.get(message.get("stop_reason") or "", "stop"),
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": usage.get("output_tokens") or 0,
            "total_tokens": prompt + (usage.get("output_tokens") or 0),
            "cached_tokens": read,
        },
    }


def _sdk_extra(message: Any, key: str) -> Any:
    extra = getattr(message, "model_extra", None) or {}
    return extra.get(key)


def _as_dict(value: Any) -> Any:
    dump: Callable[..., Any] | None = getattr(value, "model_dump", None)
    return dump() if dump is not None else value


def openai_answer(completion: Any) -> JSON:
    """What an OpenAI SDK ``ChatCompletion`` carries, in ``expected_openai_answer``'s terms."""
    choice = completion.choices[0]
    message = choice.message
    details = [_as_dict(d) for d in _sdk_extra(message, "reasoning_details") or ()]
    reasoning = _openai_reasoning({"reasoning_details": details})
    usage = completion.usage
    cached = None
    if usage is not None and usage.prompt_tokens_details is not None:
        cached = usage.prompt_tokens_details.cached_tokens
    return {
        "content": message.content or None,
        "refusal": message.refusal,
        "tool_calls": [
            (c.id, c.function.name, parsed_arguments(c.function.arguments))
            for c in message.tool_calls or ()
        ],
        "reasoning_content": _sdk_extra(message, "reasoning_content") or None,
        "reasoning": reasoning,
        "annotations": [a.url_citation.url for a in message.annotations or ()],
        "finish_reason": choice.finish_reason,
        "usage": None
        if usage is None
        else {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "cached_tokens": cached or 0,
        },
    }
