"""Gemini ``generateContent`` request body ⇄ canonical ``Request``.

The model is part of the URL (``models/{model}:generateContent``), not the body, and so is
streaming (``:streamGenerateContent?alt=sse``): https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from orcarouter.canonical import Request, ToolUse
from orcarouter.translate.common import (
    JsonDict,
    Policy,
    RequestTranslation,
    extras_for,
    residual,
    with_extras,
)
from orcarouter.translate.gemini.config import (
    ThinkingStyle,
    generation_config,
    generation_to_canonical,
)
from orcarouter.translate.gemini.contents import ContentShaper, messages_to_canonical
from orcarouter.translate.gemini.fields import get, mapping
from orcarouter.translate.gemini.parts import CallIds, PartWriter
from orcarouter.translate.gemini.tools import (
    render_tool_config,
    render_tools,
    tool_choice_to_canonical,
    tools_to_canonical,
)

REQUEST_CALL_PREFIX: Final = "call_"
"""Ids given to history function calls that carry none: position-based, so stable per turn."""
_SHAPE_CHANGING: Final = ("modalities", "audio", "prediction")
_SAFETY_KEYS: Final = ("safetySettings", "safety_settings")
"""Client keys passed to Gemini as ``safetySettings`` (https://ai.google.dev/api/generate-content#SafetySetting)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GeminiTarget:
    """Dialect choices for the target model (provider profile data).

    ``thinking``: ``budget`` renders ``thinkingBudget`` (2.5 models), ``level`` renders
    ``thinkingLevel`` (Gemini 3). ``signatures_required``: the model validates thought
    signatures on function calls (Gemini 3), so foreign history gets the dummy.
    ``function_response_media``: images and documents may ride inside
    ``functionResponse.parts`` (Gemini 3); otherwise they follow the response as parts.
    ``json_schema``: send ``parametersJsonSchema``/``responseJsonSchema`` verbatim instead of
    the sanitised OpenAPI subset.
    """

    thinking: ThinkingStyle = "budget"
    signatures_required: bool = False
    function_response_media: bool = False
    json_schema: bool = False


def request_to_canonical(body: Mapping[str, Any], *, model: str = "") -> Request:
    """Parse a Gemini ``generateContent`` body; ``model`` comes from the URL."""
    ids = CallIds(prefix=REQUEST_CALL_PREFIX)
    generation = generation_to_canonical(mapping(get(body, "generationConfig")))
    request = Request(
        model=model,
        messages=tuple(messages_to_canonical(body, ids)),
        tools=tuple(tools_to_canonical(body.get("tools"))),
        tool_choice=tool_choice_to_canonical(get(body, "toolConfig")),
        sampling=generation.sampling,
        reasoning=generation.reasoning,
        response_format=generation.response_format,
        max_output_tokens=generation.max_output_tokens,
        source="gemini",
    )
    rendered = _render(request, GeminiTarget(), Policy(drop_params=True), as_sent=True)
    return replace(request, extra=extras_for("gemini", residual(body, rendered)))


def request_from_canonical(
    request: Request, *, target: GeminiTarget | None = None, drop_params: bool = False
) -> RequestTranslation:
    """Render a canonical request as a Gemini ``generateContent`` body.

    ``target`` defaults to a 2.5-style model (``thinkingBudget``). A request parsed from
    Gemini is rendered as it came, whatever the target, except that signatures another
    vendor made (wrapped, see ``FOREIGN_SIGNATURE_PREFIX``) are never sent to Gemini.
    """
    policy = Policy(drop_params=drop_params)
    body = _render(request, target or GeminiTarget(), policy, as_sent=False)
    return RequestTranslation(body=body, dropped=policy.dropped, adjusted=policy.adjusted)


def _render(request: Request, target: GeminiTarget, policy: Policy, *, as_sent: bool) -> JsonDict:
    """The body; ``as_sent`` keeps wrapped foreign signatures (to compare with the original)."""
    foreign = request.source != "gemini"
    names = {b.id: b.name for m in request.messages for b in m.content if isinstance(b, ToolUse)}
    writer = PartWriter(
        policy=policy,
        names=names,
        response_media=target.function_response_media or not foreign,
        for_client=as_sent,
    )
    shaper = ContentShaper(
        writer=writer,
        policy=policy,
        foreign=foreign,
        signatures_required=target.signatures_required,
    )
    shaper.render(request.messages)
    body: JsonDict = {"contents": shaper.contents}
    if shaper.system is not None:
        body["systemInstruction"] = shaper.system
    _render_tools(body, request, policy, target, foreign=foreign)
    config = generation_config(
        request,
        policy,
        style=target.thinking if foreign else None,
        json_schema=target.json_schema and foreign,
    )
    if config:
        body["generationConfig"] = config
    if foreign:
        _report_foreign(body, request, policy)
    return with_extras(body, request.extra, "gemini")


def _render_tools(
    body: JsonDict, request: Request, policy: Policy, target: GeminiTarget, *, foreign: bool
) -> None:
    tools = render_tools(request.tools, policy, json_schema=target.json_schema and foreign)
    if tools:
        body["tools"] = tools
    tool_config = render_tool_config(request.tool_choice, policy)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    if foreign and request.parallel_tool_calls is False and tools:
        policy.drop("parallel_tool_calls")  # Gemini cannot forbid parallel calls (§4.3)


def _report_foreign(body: JsonDict, request: Request, policy: Policy) -> None:
    if request.user is not None:
        policy.drop("user")
    for wire, extra in request.extra.items():
        if wire == "gemini":
            continue
        for key, value in sorted(extra.items()):
            if value is None:
                continue
            if key in _SAFETY_KEYS:
                body["safetySettings"] = value  # passed through, as LiteLLM's safety_settings
            elif key in _SHAPE_CHANGING and value != ["text"]:
                policy.reject(key, "changes the response shape; no Gemini mapping")
            else:
                policy.drop(key)
