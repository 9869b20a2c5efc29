"""Gemini ``tools`` and ``toolConfig`` ⇄ canonical tools and tool choice.

Function declarations: https://ai.google.dev/api/caching#FunctionDeclaration (``parameters`` is
the OpenAPI subset, sanitised here; ``parametersJsonSchema`` is full JSON Schema).
``allowedFunctionNames`` is only valid with mode ``ANY``:
https://ai.google.dev/api/caching#FunctionCallingConfig
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from orcarouter.canonical import FunctionTool, OpaqueTool, Tool, ToolChoice, WebSearchTool
from orcarouter.canonical.conversation import ToolChoiceMode
from orcarouter.translate.common import JsonDict, Policy, extras_for, residual, with_extras
from orcarouter.translate.gemini.fields import get, mapping
from orcarouter.translate.gemini.schema import sanitize_schema, schema_to_json

_MODES: Final[dict[str, ToolChoiceMode]] = {
    "AUTO": "auto",
    "NONE": "none",
    "ANY": "required",
    "VALIDATED": "auto",
}


def tools_to_canonical(tools: Any) -> list[Tool]:
    """Gemini ``tools[]``: function declarations, ``googleSearch``, the rest kept whole."""
    out: list[Tool] = []
    for spec in tools if isinstance(tools, list) else ():
        if not isinstance(spec, Mapping):
            continue
        declarations = get(spec, "functionDeclarations")
        if len(spec) == 1 and isinstance(declarations, list):
            out.extend(_function(d) for d in declarations if isinstance(d, Mapping))
        elif len(spec) == 1 and isinstance(get(spec, "googleSearch"), Mapping):
            search = WebSearchTool()
            extra = residual(spec, render_tools((search,), Policy())[0])
            out.append(replace(search, extra=extras_for("gemini", extra)))
        else:
            out.append(OpaqueTool(wire="gemini", data=dict(spec)))
    return out


def _function(declaration: Mapping[str, Any]) -> FunctionTool:
    json_schema = get(declaration, "parametersJsonSchema")
    schema = get(declaration, "parameters")
    parameters = (
        json_schema
        if isinstance(json_schema, Mapping)
        else schema_to_json(schema)
        if isinstance(schema, Mapping)
        else None
    )
    tool = FunctionTool(
        name=str(declaration.get("name", "")),
        description=declaration.get("description"),
        parameters=parameters,
    )
    rendered = function_declaration(tool, json_schema=False)
    return replace(tool, extra=extras_for("gemini", residual(declaration, rendered)))


def function_declaration(tool: FunctionTool, *, json_schema: bool) -> JsonDict:
    """A function tool as a ``functionDeclarations[]`` entry."""
    out: JsonDict = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    if tool.parameters is not None:
        if json_schema:
            out["parametersJsonSchema"] = dict(tool.parameters)
        else:
            out["parameters"] = sanitize_schema(tool.parameters)
    return with_extras(out, tool.extra, "gemini")


def render_tools(
    tools: Sequence[Tool], policy: Policy, *, json_schema: bool = False
) -> list[JsonDict]:
    """Canonical tools as Gemini ``tools``; consecutive function tools share one entry."""
    out: list[JsonDict] = []
    declarations: list[JsonDict] | None = None
    for position, tool in enumerate(tools):
        if isinstance(tool, FunctionTool):
            if declarations is None:
                declarations = []
                out.append({"functionDeclarations": declarations})
            declarations.append(function_declaration(tool, json_schema=json_schema))
            continue
        declarations = None
        if isinstance(tool, WebSearchTool):
            out.append(_google_search(tool, policy))
        elif tool.wire == "gemini":
            out.append(dict(tool.data))
        else:
            kind = tool.data.get("type")
            policy.reject(f"tools[{position}]", f"{kind} tools have no Gemini equivalent")
    return out


def _google_search(tool: WebSearchTool, policy: Policy) -> JsonDict:
    options = (tool.max_uses, tool.allowed_domains, tool.blocked_domains, tool.user_location)
    if "gemini" not in tool.extra and any(o is not None for o in options):
        policy.drop("web_search.options")  # googleSearch takes no limits or locations (§4.8)
    return with_extras({"googleSearch": {}}, tool.extra, "gemini")


def tool_choice_to_canonical(tool_config: Any) -> ToolChoice | None:
    """``toolConfig.functionCallingConfig`` as a tool choice (``VALIDATED`` reads as auto).

    https://ai.google.dev/api/caching#Mode
    """
    calling = mapping(get(mapping(tool_config), "functionCallingConfig"))
    mode = _MODES.get(str(calling.get("mode")))
    if mode is None:
        return None
    names = get(calling, "allowedFunctionNames")
    allowed = tuple(str(n) for n in names) if isinstance(names, list) else None
    if mode == "required" and allowed is not None and len(allowed) == 1:
        return ToolChoice(mode="tool", name=allowed[0])
    return ToolChoice(mode=mode, allowed=allowed)


def render_tool_config(choice: ToolChoice | None, policy: Policy) -> JsonDict | None:
    """``toolConfig`` for a tool choice."""
    if choice is None:
        return None
    calling: JsonDict = {"mode": {"auto": "AUTO", "none": "NONE"}.get(choice.mode, "ANY")}
    if choice.mode == "tool":
        calling["allowedFunctionNames"] = [choice.name]
    elif choice.allowed is not None and choice.mode != "none":
        # VALIDATED = "function calls or text, calls limited to allowedFunctionNames".
        calling["mode"] = "ANY" if choice.mode == "required" else "VALIDATED"
        calling["allowedFunctionNames"] = list(choice.allowed)
    elif choice.allowed is not None:
        policy.drop("tool_choice.allowed_tools")
    return {"functionCallingConfig": calling}
