"""OpenAI Chat Completions request body ⇄ canonical ``Request``."""

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
from orcarouter.translate.common import (
    JsonDict,
    MalformedRequest,
    Policy,
    RequestTranslation,
    as_bool,
    as_integer,
    as_number,
    as_string,
    as_strings,
    extras_for,
    is_mapping,
    residual,
    split_known,
    with_extras,
)
from orcarouter.translate.openai_chat.messages import MessageRenderer, message_to_canonical
from orcarouter.translate.reasoning import effort_for_budget

_SAMPLING_KEYS: Final = (
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
    "n",
    "logprobs",
    "top_logprobs",
)
_KNOWN: Final = frozenset(
    {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
        "response_format",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "user",
        "web_search_options",
        *_SAMPLING_KEYS,
    }
)
# ``max_tokens`` is known when ``max_completion_tokens`` is absent (else it is kept as sent).
_KNOWN_WITH_MAX_TOKENS: Final = _KNOWN | {"max_tokens"}
_SIMPLE_CHOICES: Final = {
    "auto": ToolChoice(mode="auto"),
    "none": ToolChoice(mode="none"),
    "required": ToolChoice(mode="required"),
    # Mistral's spelling of "required" (https://docs.mistral.ai/capabilities/function_calling).
    "any": ToolChoice(mode="required", extra={"openai": {"_spelling": "any"}}),
}
_SPELLING: Final = "_spelling"
"""Marks, in a simple tool choice's extras, the client's own word for the mode (identity)."""
# Anthropic search-context sizes: max_uses 1/5/10 (LiteLLM ANTHROPIC_WEB_SEARCH_TOOL_MAX_USES).
CONTEXT_SIZE_TO_MAX_USES: Final = {"low": 1, "medium": 5, "high": 10}


def request_to_canonical(body: Mapping[str, Any]) -> Request:
    """Parse an OpenAI ``/v1/chat/completions`` body (unknown keys kept as extras)."""
    known = _KNOWN
    max_tokens_field = None
    for key in ("max_completion_tokens", "max_tokens"):
        if key in body:
            max_tokens_field, max_output = key, as_integer(body[key], key)
            if key == "max_tokens":
                known = _KNOWN_WITH_MAX_TOKENS
            break
    else:
        max_output = None
    leftover = split_known(body, known)
    tool_choice = _tool_choice_to_canonical(body.get("tool_choice"))
    response_format = _response_format_to_canonical(body.get("response_format"))
    reasoning = _reasoning_to_canonical(body.get("reasoning_effort"))
    for key, parsed in (
        ("tool_choice", tool_choice),
        ("response_format", response_format),
        ("reasoning_effort", reasoning),
    ):
        if parsed is None and body.get(key) is not None:
            leftover[key] = body[key]
    tools, web_search = _tools_to_canonical(body)
    stream_options = body.get("stream_options")
    if is_mapping(stream_options):
        rest = residual(stream_options, _stream_options(stream_options.get("include_usage")))
        if rest:
            leftover["stream_options"] = rest
    return Request(
        model=str(body.get("model", "")),
        messages=tuple(message_to_canonical(m) for m in body.get("messages") or ()),
        tools=(*tools, *web_search),
        tool_choice=tool_choice,
        parallel_tool_calls=as_bool(body.get("parallel_tool_calls"), "parallel_tool_calls"),
        sampling=_sampling_to_canonical(body),
        reasoning=reasoning,
        response_format=response_format,
        max_output_tokens=max_output,
        max_tokens_field=max_tokens_field,
        stream=body.get("stream"),
        stream_usage=stream_options.get("include_usage") if is_mapping(stream_options) else None,
        user=as_string(body.get("user"), "user"),
        source="openai",
        extra=extras_for("openai", leftover),
    )


def _stream_options(include_usage: Any) -> JsonDict:
    return {} if include_usage is None else {"include_usage": include_usage}


_STOP_TYPES: Final = "a string or an array of strings"


def _sampling_to_canonical(body: Mapping[str, Any]) -> Sampling:
    stop = body.get("stop")
    logit_bias = body.get("logit_bias")
    if logit_bias is not None and not isinstance(logit_bias, Mapping):
        raise MalformedRequest(param="logit_bias", message="must be an object")
    return Sampling(
        temperature=as_number(body.get("temperature"), "temperature"),
        top_p=as_number(body.get("top_p"), "top_p"),
        top_k=as_integer(body.get("top_k"), "top_k"),
        stop=(stop,) if isinstance(stop, str) else as_strings(stop, "stop", _STOP_TYPES),
        stop_as_string=isinstance(stop, str),
        presence_penalty=as_number(body.get("presence_penalty"), "presence_penalty"),
        frequency_penalty=as_number(body.get("frequency_penalty"), "frequency_penalty"),
        seed=as_integer(body.get("seed"), "seed"),
        logit_bias=logit_bias,
        n=as_integer(body.get("n"), "n"),
        logprobs=as_bool(body.get("logprobs"), "logprobs"),
        top_logprobs=as_integer(body.get("top_logprobs"), "top_logprobs"),
    )


def _reasoning_to_canonical(effort: Any) -> Reasoning | None:
    return Reasoning(effort=effort) if isinstance(effort, str) else None


def _tools_to_canonical(body: Mapping[str, Any]) -> tuple[list[Tool], list[Tool]]:
    tools: list[Tool] = []
    for spec in body.get("tools") or ():
        function = spec.get("function") if isinstance(spec, Mapping) else None
        # Mistral and the Hugging Face router omit "type" on function tools.
        if spec.get("type", "function") == "function" and isinstance(function, Mapping):
            tool = FunctionTool(
                name=str(function.get("name", "")),
                description=function.get("description"),
                parameters=function.get("parameters"),
                strict=function.get("strict"),
            )
            extra = extras_for("openai", residual(spec, _function_tool(tool)))
            tools.append(replace(tool, extra=extra))
        else:
            tools.append(OpaqueTool(wire="openai", data=dict(spec)))
    options = body.get("web_search_options")
    if not is_mapping(options):
        return tools, []
    location = options.get("user_location")
    approximate = location.get("approximate") if isinstance(location, Mapping) else None
    search = WebSearchTool(
        context_size=options.get("search_context_size"),
        user_location=dict(approximate) if isinstance(approximate, Mapping) else None,
    )
    extra = extras_for("openai", residual(options, _web_search_options(search)))
    return tools, [replace(search, extra=extra)]


def _tool_choice_to_canonical(value: Any) -> ToolChoice | None:
    if isinstance(value, str):
        return _SIMPLE_CHOICES.get(value)
    if not is_mapping(value):
        return None
    choice = _structured_choice(value)
    rendered = _tool_choice(choice)
    extra = residual(value, rendered) if isinstance(rendered, Mapping) else dict(value)
    return replace(choice, extra=extras_for("openai", extra))


def _structured_choice(value: Mapping[str, Any]) -> ToolChoice:
    # A named choice without "type" (Mistral, Hugging Face router) is a function choice.
    kind = value.get("type", "function" if "function" in value else None)
    inner = value.get(kind) if isinstance(kind, str) else None
    inner = inner if isinstance(inner, Mapping) else {}
    if kind == "allowed_tools":
        names = tuple(
            str((t.get("function") or {}).get("name", ""))
            for t in inner.get("tools") or ()
            if isinstance(t, Mapping)
        )
        if inner.get("mode") == "required":
            return ToolChoice(mode="required", allowed=names)
        return ToolChoice(mode="auto", allowed=names)
    return ToolChoice(mode="tool", name=str(inner.get("name", "")))


def _response_format_to_canonical(value: Any) -> ResponseFormat | None:
    if not is_mapping(value) or value.get("type") not in (
        "text",
        "json_object",
        "json_schema",
    ):
        return None
    spec = value.get("json_schema") if isinstance(value.get("json_schema"), Mapping) else {}
    assert isinstance(spec, Mapping)
    fmt = ResponseFormat(
        type=value["type"],
        name=spec.get("name"),
        description=spec.get("description"),
        schema=spec.get("schema"),
        strict=spec.get("strict"),
    )
    return replace(fmt, extra=extras_for("openai", residual(value, _response_format(fmt))))


def request_from_canonical(
    request: Request,
    *,
    drop_params: bool = False,
    max_tokens_field: str = "max_completion_tokens",
    reasoning_fields: tuple[str, ...] | None = None,
) -> RequestTranslation:
    """Render a canonical request as an OpenAI Chat body.

    ``max_tokens_field`` and ``reasoning_fields`` are the target's dialect (provider profile
    data); a request parsed from OpenAI keeps its own choices.
    """
    policy = Policy(drop_params=drop_params)
    renderer = MessageRenderer(
        policy=policy,
        reasoning_fields=reasoning_fields,
        same_wire=request.source in ("openai", None),
    )
    body: JsonDict = {"model": request.model, "messages": renderer.render(request.messages)}
    if request.max_output_tokens is not None:
        body[request.max_tokens_field or max_tokens_field] = request.max_output_tokens
    _render_sampling(body, request, policy)
    _render_tools(body, request, policy)
    _render_reasoning(body, request, policy)
    if request.response_format is not None:
        body["response_format"] = _response_format(request.response_format)
    if request.user is not None:
        body["user"] = request.user
    if request.stream is not None:
        body["stream"] = request.stream
    if request.stream_usage is not None or (request.stream and request.source != "openai"):
        # Without include_usage an OpenAI stream carries no usage at all (§4.2).
        include = True if request.stream_usage is None else request.stream_usage
        body["stream_options"] = _stream_options(include)
    for wire, extra in request.extra.items():
        if wire != "openai":
            policy.dropped.extend(sorted(k for k, v in extra.items() if v is not None))
    with_extras(body, request.extra, "openai")
    return RequestTranslation(body=body, dropped=policy.dropped, adjusted=policy.adjusted)


def _render_sampling(body: JsonDict, request: Request, policy: Policy) -> None:
    sampling = request.sampling
    for key in _SAMPLING_KEYS:
        value = getattr(sampling, key)
        if value is None:
            continue
        if key == "top_k" and request.source != "openai":
            policy.drop("top_k")
        elif key == "stop":
            body["stop"] = value[0] if sampling.stop_as_string and len(value) == 1 else list(value)
        else:
            body[key] = dict(value) if isinstance(value, Mapping) else value


def _render_reasoning(body: JsonDict, request: Request, policy: Policy) -> None:
    reasoning = request.reasoning
    if reasoning is None:
        return
    if reasoning.mode == "disabled":
        policy.drop("thinking")
    elif reasoning.effort is not None:
        body["reasoning_effort"] = reasoning.effort
    elif reasoning.budget_tokens is not None:
        body["reasoning_effort"] = effort_for_budget(reasoning.budget_tokens)
    elif reasoning.mode == "adaptive":
        body["reasoning_effort"] = "medium"


def _render_tools(body: JsonDict, request: Request, policy: Policy) -> None:
    tools: list[JsonDict] = []
    for position, tool in enumerate(request.tools):
        if isinstance(tool, FunctionTool):
            tools.append(_function_tool(tool))
        elif isinstance(tool, WebSearchTool):
            body["web_search_options"] = _web_search_options(tool)
            if tool.allowed_domains or tool.blocked_domains:
                policy.drop("web_search.domains")
        elif tool.wire == "openai":
            tools.append(dict(tool.data))
        else:
            policy.reject(f"tools[{position}]", f"{tool.data.get('type')} has no OpenAI equivalent")
    if tools:
        body["tools"] = tools
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is not None and (tools or request.source == "openai"):
        body["parallel_tool_calls"] = request.parallel_tool_calls


def _function_tool(tool: FunctionTool) -> JsonDict:
    function: JsonDict = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    # Only the JSON schema goes into parameters; an Anthropic tool "type" must not leak
    # (https://github.com/BerriAI/litellm/issues/30557).
    function["parameters"] = (
        dict(tool.parameters) if tool.parameters is not None else {"type": "object"}
    )
    if tool.strict is not None:
        function["strict"] = tool.strict
    return with_extras({"type": "function", "function": function}, tool.extra, "openai")


def _web_search_options(tool: WebSearchTool) -> JsonDict:
    options: JsonDict = {}
    size = tool.context_size
    if size is None and tool.max_uses is not None:
        size = "low" if tool.max_uses <= 1 else "medium" if tool.max_uses <= 5 else "high"
    if size is not None:
        options["search_context_size"] = size
    if tool.user_location is not None:
        location = {k: v for k, v in tool.user_location.items() if k != "type"}
        options["user_location"] = {"type": "approximate", "approximate": location}
    return with_extras(options, tool.extra, "openai")


def _tool_choice(choice: ToolChoice) -> Any:
    if choice.allowed is not None:
        tools = [{"type": "function", "function": {"name": n}} for n in choice.allowed]
        mode = "required" if choice.mode == "required" else "auto"
        rendered: Any = {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": tools}}
    elif choice.mode == "tool":
        rendered = {"type": "function", "function": {"name": choice.name}}
    else:
        spelling = choice.extra.get("openai", {}).get(_SPELLING)
        return spelling if isinstance(spelling, str) else choice.mode
    return with_extras(rendered, choice.extra, "openai")


def _response_format(fmt: ResponseFormat) -> JsonDict:
    out: JsonDict = {"type": fmt.type}
    if fmt.type == "json_schema":
        spec: JsonDict = {"name": fmt.name or "structured_output"}
        if fmt.description is not None:
            spec["description"] = fmt.description
        if fmt.schema is not None:
            spec["schema"] = dict(fmt.schema)
        if fmt.strict is not None:
            spec["strict"] = fmt.strict
        out["json_schema"] = spec
    return with_extras(out, fmt.extra, "openai")
