"""Anthropic Messages request body ⇄ canonical ``Request``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from orcarouter.canonical import (
    FunctionTool,
    OpaqueTool,
    Reasoning,
    Request,
    ResponseFormat,
    Sampling,
    Tool,
    ToolChoice,
    WebSearchTool,
)
from orcarouter.translate.anthropic_messages.messages import (
    MessageShaper,
    message_to_canonical,
    system_to_canonical,
)
from orcarouter.translate.anthropic_messages.options import render_tool_choice, render_tools
from orcarouter.translate.anthropic_messages.thinking import (
    AnthropicTarget,
    ThinkingPlan,
    plan_thinking,
)
from orcarouter.translate.common import (
    JsonDict,
    Policy,
    RequestTranslation,
    as_integer,
    as_number,
    as_str_tuple,
    as_strings,
    extras_for,
    optional_int,
    residual,
    split_known,
)

_KNOWN: Final = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "metadata",
    }
)
_CHOICE_MODES: Final = {"auto": "auto", "any": "required", "none": "none", "tool": "tool"}
JSON_OBJECT_INSTRUCTION: Final = (
    "Respond with exactly one valid JSON object and nothing else: no prose before or after it,"
    " no Markdown code fences."
)
"""Appended to ``system`` for ``response_format: json_object`` (see ``_json_object_system``)."""


def request_to_canonical(body: Mapping[str, Any]) -> Request:
    """Parse an Anthropic ``/v1/messages`` body (unknown keys kept as extras)."""
    leftover = split_known(body, _KNOWN)
    messages = [*system_to_canonical(body.get("system"))]
    messages.extend(message_to_canonical(m) for m in body.get("messages") or ())
    choice, parallel = _tool_choice_to_canonical(body.get("tool_choice"), leftover)
    output_config = body.get("output_config")
    output: Mapping[str, Any] = output_config if isinstance(output_config, Mapping) else {}
    reasoning = _reasoning_to_canonical(body.get("thinking"), output.get("effort"))
    response_format = _format_to_canonical(output.get("format"))
    rest = {k: v for k, v in output.items() if k not in ("effort", "format")}
    if response_format is None and "format" in output:
        rest["format"] = output["format"]
    if rest or (output_config is not None and not output):
        leftover["output_config"] = rest
    metadata = body.get("metadata")
    user = None
    if isinstance(metadata, Mapping):
        user = metadata.get("user_id") if isinstance(metadata.get("user_id"), str) else None
        others = {k: v for k, v in metadata.items() if k != "user_id" or user is None}
        if others or not metadata:
            leftover["metadata"] = others
    return Request(
        model=str(body.get("model", "")),
        messages=tuple(messages),
        tools=tuple(_tool_to_canonical(t) for t in body.get("tools") or ()),
        tool_choice=choice,
        parallel_tool_calls=parallel,
        sampling=Sampling(
            temperature=as_number(body.get("temperature"), "temperature"),
            top_p=as_number(body.get("top_p"), "top_p"),
            top_k=as_integer(body.get("top_k"), "top_k"),
            stop=as_strings(body.get("stop_sequences"), "stop_sequences"),
        ),
        reasoning=reasoning,
        response_format=response_format,
        max_output_tokens=as_integer(body.get("max_tokens"), "max_tokens"),
        stream=body.get("stream"),
        user=user,
        source="anthropic",
        extra=extras_for("anthropic", leftover),
    )


def _tool_to_canonical(spec: Mapping[str, Any]) -> Tool:
    kind = spec.get("type")
    if kind in (None, "custom") and "input_schema" in spec:
        tool = FunctionTool(
            name=str(spec.get("name", "")),
            description=spec.get("description"),
            parameters=spec.get("input_schema"),
            strict=spec.get("strict"),
            cache_control=spec.get("cache_control"),
        )
        rendered = render_tools((tool,), Policy(), foreign=False)[0]
        return replace(tool, extra=extras_for("anthropic", residual(spec, rendered)))
    if isinstance(kind, str) and kind.startswith("web_search_"):
        location = spec.get("user_location")
        search = WebSearchTool(
            version=kind,
            name=str(spec.get("name", "web_search")),
            max_uses=spec.get("max_uses"),
            allowed_domains=as_str_tuple(spec.get("allowed_domains")),
            blocked_domains=as_str_tuple(spec.get("blocked_domains")),
            user_location=(
                {k: v for k, v in location.items() if k != "type"}
                if isinstance(location, Mapping)
                else None
            ),
            cache_control=spec.get("cache_control"),
        )
        rendered = render_tools((search,), Policy(), foreign=False)[0]
        return replace(search, extra=extras_for("anthropic", residual(spec, rendered)))
    return OpaqueTool(wire="anthropic", data=dict(spec))


def _tool_choice_to_canonical(
    value: Any, leftover: dict[str, Any]
) -> tuple[ToolChoice | None, bool | None]:
    if not isinstance(value, Mapping) or value.get("type") not in _CHOICE_MODES:
        if value is not None:
            leftover["tool_choice"] = value
        return None, None
    disable = value.get("disable_parallel_tool_use")
    parallel = None if not isinstance(disable, bool) else not disable
    mode: Any = _CHOICE_MODES[value["type"]]
    choice = ToolChoice(mode=mode, name=value.get("name") if mode == "tool" else None)
    rendered = render_tool_choice(choice, parallel, has_tools=True) or {}
    return replace(choice, extra=extras_for("anthropic", residual(value, rendered))), parallel


def _reasoning_to_canonical(thinking: Any, effort: Any) -> Reasoning | None:
    if not isinstance(thinking, Mapping):
        return Reasoning(effort=effort) if isinstance(effort, str) else None
    mode = thinking.get("type")
    reasoning = Reasoning(
        effort=effort if isinstance(effort, str) else None,
        budget_tokens=optional_int(thinking.get("budget_tokens")),
        mode=mode if mode in ("enabled", "disabled", "adaptive") else None,
        display=thinking.get("display"),
    )
    rendered = ThinkingPlan.from_reasoning(reasoning).thinking or {}
    return replace(reasoning, extra=extras_for("anthropic", residual(thinking, rendered)))


def _format_to_canonical(value: Any) -> ResponseFormat | None:
    if not isinstance(value, Mapping) or value.get("type") != "json_schema":
        return None
    fmt = ResponseFormat(type="json_schema", schema=value.get("schema"))
    rendered = {"type": "json_schema", "schema": value.get("schema")}
    return replace(fmt, extra=extras_for("anthropic", residual(value, rendered)))


def request_from_canonical(
    request: Request,
    *,
    default_max_tokens: int,
    adaptive_thinking: bool = False,
    drop_params: bool = False,
) -> RequestTranslation:
    """Render a canonical request as an Anthropic Messages body.

    Anthropic requires ``max_tokens``; ``default_max_tokens`` is used when the request has none.
    """
    target = AnthropicTarget(
        default_max_tokens=default_max_tokens, adaptive_thinking=adaptive_thinking
    )
    policy = Policy(drop_params=drop_params)
    foreign = request.source != "anthropic"
    shaper = MessageShaper(policy=policy, foreign=foreign)
    shaper.render(request.messages)
    body: JsonDict = {"model": request.model, "messages": shaper.messages}
    system = shaper.system
    if request.response_format is not None and request.response_format.type == "json_object":
        system = _json_object_system(system)
        policy.adjusted.append("response_format")
    if system is not None:
        body["system"] = system
    plan = plan_thinking(request, target, policy)
    body["max_tokens"] = plan.max_tokens
    _render_sampling(body, request, plan, policy)
    tools = render_tools(request.tools, policy, foreign=foreign)
    if tools:
        body["tools"] = tools
    choice = render_tool_choice(
        plan.tool_choice, request.parallel_tool_calls, has_tools=bool(tools), policy=policy
    )
    if choice is not None:
        body["tool_choice"] = choice
    if plan.thinking is not None:
        body["thinking"] = plan.thinking
    _render_output_config(body, request, plan, policy)
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    if request.stream is not None:
        body["stream"] = request.stream
    _merge_extras(body, request, policy)
    return RequestTranslation(body=body, dropped=policy.dropped, adjusted=policy.adjusted)


def _render_sampling(body: JsonDict, request: Request, plan: ThinkingPlan, policy: Policy) -> None:
    sampling, foreign = request.sampling, request.source != "anthropic"
    if sampling.n is not None and sampling.n > 1:
        policy.reject("n", "Anthropic returns one message per request")
    if sampling.logprobs or sampling.top_logprobs is not None:
        policy.reject("logprobs", "Anthropic has no log probabilities")
    for key in ("presence_penalty", "frequency_penalty", "seed", "logit_bias"):
        if getattr(sampling, key) is not None:
            policy.drop(key)
    temperature, top_p, top_k = sampling.temperature, sampling.top_p, sampling.top_k
    if foreign and temperature is not None and temperature > 1:
        temperature = 1.0  # Anthropic accepts 0 to 1, OpenAI 0 to 2.
        policy.adjusted.append("temperature")
    for key, value in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k)):
        value = plan.sampling.get(key, value)
        if value is not None:
            body[key] = value
    if sampling.stop is not None:
        stops = [s for s in sampling.stop if s.strip()] if foreign else list(sampling.stop)
        if len(stops) != len(sampling.stop):
            policy.drop("stop")
        if stops or not foreign:
            body["stop_sequences"] = stops


def _render_output_config(
    body: JsonDict, request: Request, plan: ThinkingPlan, policy: Policy
) -> None:
    config: JsonDict = {}
    if plan.effort is not None:
        config["effort"] = plan.effort
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        spec: JsonDict = {"type": "json_schema", "schema": dict(fmt.schema or {})}
        extra = fmt.extra.get("anthropic")
        config["format"] = {**spec, **extra} if extra else spec
    if config:
        body["output_config"] = config


def _json_object_system(system: list[JsonDict] | str | None) -> list[JsonDict] | str:
    """``system`` with an instruction to answer with one JSON object (OpenAI JSON mode).

    Anthropic has no schema-less JSON mode, and its structured outputs
    (``output_config.format``) cannot stand in for one: a schema admitting any object needs
    ``additionalProperties`` other than ``false``, which Anthropic answers with a 400 ("Not
    supported: additionalProperties set to anything other than false",
    https://platform.claude.com/docs/en/build-with-claude/structured-outputs#json-schema-limitations;
    the SDK's ``transform_schema`` forces ``false`` on every object), and a recursive "any JSON
    value" schema is not supported either. So, like OpenAI's own JSON mode, which only works
    when the prompt asks for JSON, the model is told in the system prompt. The instruction goes
    last, after the client's blocks, so their ``cache_control`` prefixes stay the same.
    """
    instruction: JsonDict = {"type": "text", "text": JSON_OBJECT_INSTRUCTION}
    if system is None:
        return JSON_OBJECT_INSTRUCTION
    if isinstance(system, str):
        return [{"type": "text", "text": system}, instruction] if system else [instruction]
    return [*system, instruction]


def _merge_extras(body: JsonDict, request: Request, policy: Policy) -> None:
    own = request.extra.get("anthropic", {})
    for key, value in own.items():
        current = body.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            body[key] = {**current, **value}
        else:
            body[key] = value
    for wire, extra in request.extra.items():
        if wire == "anthropic":
            continue
        for key, value in sorted(extra.items()):
            if value is None:
                continue
            if key in ("modalities", "audio", "prediction"):
                policy.reject(key, "changes the response shape; Anthropic cannot do it")
            else:
                policy.drop(key)
