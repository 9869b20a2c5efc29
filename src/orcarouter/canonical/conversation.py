"""The provider-neutral request: messages, tools, tool choice, sampling, reasoning, limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from orcarouter.canonical.content import Block, ContentShape, Extras, WireName, no_extras

Role: TypeAlias = Literal["system", "developer", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One turn. System and developer messages stay where the client put them.

    ``content_shape`` records how the source wire wrote the content (string, list, null or,
    when ``None``, absent) so the same wire can re-emit it faithfully.
    ``reasoning_fields`` records which OpenAI-dialect keys carried reasoning on this message
    (``reasoning_content``, ``reasoning``, ``reasoning_details``); empty = emitter's default.
    """

    role: Role
    content: tuple[Block, ...] = ()
    content_shape: ContentShape | None = "blocks"
    name: str | None = None
    reasoning_fields: tuple[str, ...] = ()
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionTool:
    """A client-side tool described by a JSON schema."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    strict: bool | None = None
    cache_control: Mapping[str, Any] | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSearchTool:
    """The vendor's web search (Anthropic ``web_search_*`` tool, OpenAI ``web_search_options``).

    ``context_size`` is OpenAI's ``search_context_size``; ``max_uses`` and the domain lists are
    Anthropic's. ``version`` is the Anthropic tool type (``web_search_20250305``).
    """

    version: str | None = None
    name: str = "web_search"
    max_uses: int | None = None
    allowed_domains: tuple[str, ...] | None = None
    blocked_domains: tuple[str, ...] | None = None
    user_location: Mapping[str, Any] | None = None
    context_size: str | None = None
    cache_control: Mapping[str, Any] | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpaqueTool:
    """A tool only one wire understands (code execution, memory, OpenAI ``custom`` …)."""

    wire: WireName
    data: Mapping[str, Any]


Tool: TypeAlias = FunctionTool | WebSearchTool | OpaqueTool

ToolChoiceMode: TypeAlias = Literal["auto", "none", "required", "tool"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolChoice:
    """Whether and which tool the model must call; ``name`` is set for mode ``tool``.

    ``allowed`` restricts the callable tools (OpenAI ``allowed_tools``).
    """

    mode: ToolChoiceMode
    name: str | None = None
    allowed: tuple[str, ...] | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sampling:
    """Sampling and decoding parameters; ``None`` means the client did not set it."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] | None = None
    stop_as_string: bool = False
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    logit_bias: Mapping[str, Any] | None = None
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


ReasoningMode: TypeAlias = Literal["enabled", "disabled", "adaptive"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reasoning:
    """How much the model should think.

    ``effort`` is OpenAI's ``reasoning_effort`` or Anthropic's ``output_config.effort``;
    ``budget_tokens`` is Anthropic's explicit budget; ``mode`` is Anthropic's ``thinking.type``
    (``None`` when the client only gave an effort). ``display`` is Anthropic's
    ``thinking.display``.
    """

    effort: str | None = None
    budget_tokens: int | None = None
    mode: ReasoningMode | None = None
    display: str | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFormat:
    """Requested output shape: ``text``, ``json_object`` or ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema: Mapping[str, Any] | None = None
    strict: bool | None = None
    extra: Extras = field(default_factory=no_extras)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A provider-neutral generation request.

    ``max_output_tokens`` counts every output token including reasoning (OpenAI
    ``max_completion_tokens``, Anthropic ``max_tokens``, Gemini ``maxOutputTokens``).
    ``source`` is the wire the request was parsed from (``None`` when built by hand); emitters
    are faithful to hints only when they render into the same wire.
    """

    model: str
    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    sampling: Sampling = field(default_factory=Sampling)
    reasoning: Reasoning | None = None
    response_format: ResponseFormat | None = None
    max_output_tokens: int | None = None
    max_tokens_field: str | None = None
    stream: bool | None = None
    stream_usage: bool | None = None
    user: str | None = None
    source: WireName | None = None
    extra: Extras = field(default_factory=no_extras)

    def to(self, model: str, stream: bool | None) -> Request:
        """This request for ``model``, streamed or not: ``dataclasses.replace``, which is
        interpreted (a ``getattr`` per field), written out for the compiled request path."""
        return Request(
            model=model,
            messages=self.messages,
            tools=self.tools,
            tool_choice=self.tool_choice,
            parallel_tool_calls=self.parallel_tool_calls,
            sampling=self.sampling,
            reasoning=self.reasoning,
            response_format=self.response_format,
            max_output_tokens=self.max_output_tokens,
            max_tokens_field=self.max_tokens_field,
            stream=stream,
            stream_usage=self.stream_usage,
            user=self.user,
            source=self.source,
            extra=self.extra,
        )
