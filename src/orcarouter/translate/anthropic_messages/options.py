"""Anthropic ``tools`` and ``tool_choice`` rendering (wire-formats.md §2.4, §4.1, §4.8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from orcarouter.canonical import FunctionTool, Tool, ToolChoice, WebSearchTool
from orcarouter.translate.common import JsonDict, Policy, with_extras

DEFAULT_WEB_SEARCH: Final = "web_search_20250305"
# OpenAI search_context_size → Anthropic max_uses (LiteLLM ANTHROPIC_WEB_SEARCH_TOOL_MAX_USES).
CONTEXT_SIZE_TO_MAX_USES: Final = {"low": 1, "medium": 5, "high": 10}
_CHOICE_TYPES: Final = {"auto": "auto", "required": "any", "none": "none", "tool": "tool"}


def render_tools(tools: Sequence[Tool], policy: Policy, *, foreign: bool) -> list[JsonDict]:
    """Canonical tools as Anthropic tools; tools only another wire knows are rejected."""
    out: list[JsonDict] = []
    for position, tool in enumerate(tools):
        if isinstance(tool, FunctionTool):
            out.append(_function_tool(tool, foreign=foreign))
        elif isinstance(tool, WebSearchTool):
            out.append(_web_search(tool))
        elif tool.wire == "anthropic":
            out.append(dict(tool.data))
        else:
            policy.reject(
                f"tools[{position}]", f"{tool.data.get('type')} tools have no Anthropic form"
            )
    return out


def _function_tool(tool: FunctionTool, *, foreign: bool) -> JsonDict:
    out: JsonDict = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    schema = dict(tool.parameters) if tool.parameters is not None else None
    if foreign:
        # Anthropic requires an object schema at the top level (input_schema.type = "object").
        schema = schema or {}
        schema.setdefault("type", "object")
        if schema.get("type") == "object":
            schema.setdefault("properties", {})
    out["input_schema"] = schema
    if tool.strict is not None:
        out["strict"] = tool.strict
    if tool.cache_control is not None:
        out["cache_control"] = dict(tool.cache_control)
    return with_extras(out, tool.extra, "anthropic")


def _web_search(tool: WebSearchTool) -> JsonDict:
    out: JsonDict = {"type": tool.version or DEFAULT_WEB_SEARCH, "name": tool.name}
    max_uses = tool.max_uses
    if max_uses is None and tool.context_size is not None:
        max_uses = CONTEXT_SIZE_TO_MAX_USES.get(tool.context_size)
    if max_uses is not None:
        out["max_uses"] = max_uses
    if tool.allowed_domains is not None:
        out["allowed_domains"] = list(tool.allowed_domains)
    if tool.blocked_domains is not None:
        out["blocked_domains"] = list(tool.blocked_domains)
    if tool.user_location is not None:
        out["user_location"] = {"type": "approximate", **tool.user_location}
    if tool.cache_control is not None:
        out["cache_control"] = dict(tool.cache_control)
    return with_extras(out, tool.extra, "anthropic")


def render_tool_choice(
    choice: ToolChoice | None,
    parallel: bool | None,
    *,
    has_tools: bool,
    policy: Policy | None = None,
) -> JsonDict | None:
    """``tool_choice`` with ``disable_parallel_tool_use`` (never on ``none``)."""
    if choice is None:
        if parallel is False and has_tools:
            return {"type": "auto", "disable_parallel_tool_use": True}
        return None
    if choice.allowed is not None and policy is not None:
        policy.drop("tool_choice.allowed_tools")
    out: JsonDict = {"type": _CHOICE_TYPES[choice.mode]}
    if choice.mode == "tool":
        out["name"] = choice.name
    if parallel is not None and choice.mode != "none":
        out["disable_parallel_tool_use"] = not parallel
    return with_extras(out, choice.extra, "anthropic")
