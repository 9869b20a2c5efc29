"""Anthropic ``system`` + ``messages[]`` ⇄ canonical messages (requests only).

Shaping rules for requests from another wire (wire-formats.md §2.3, §4.1): only the leading
run of system/developer messages is hoisted into ``system`` (hoisting later ones would rewrite
the cached prefix: https://github.com/BerriAI/litellm/issues/36559), later ones stay in place;
consecutive tool results go into ONE user message, before any text
(https://github.com/Portkey-AI/gateway/issues/980); thinking blocks lead the assistant turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from orcarouter.canonical import (
    Block,
    Message,
    OpaqueBlock,
    RedactedThinking,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)
from orcarouter.translate.anthropic_messages.blocks import (
    BlockRenderer,
    block_from_anthropic,
    keeps_thinking,
)
from orcarouter.translate.common import JsonDict, Policy, extras_for, split_known, with_extras

_MESSAGE_KEYS: Final = frozenset({"role", "content"})


def system_to_canonical(system: Any) -> list[Message]:
    """The top-level ``system`` as one leading system message (none when absent)."""
    if isinstance(system, str):
        return [Message(role="system", content=(Text(text=system),), content_shape="string")]
    if isinstance(system, list):
        blocks = tuple(block_from_anthropic(b) for b in system if isinstance(b, Mapping))
        return [Message(role="system", content=blocks, content_shape="blocks")]
    return []


def message_to_canonical(data: Mapping[str, Any]) -> Message:
    """One Anthropic message (user, assistant or mid-conversation system)."""
    role = data.get("role")
    if role not in ("user", "assistant", "system"):
        raise ValueError(f"unsupported Anthropic message role {role!r}")
    content = data.get("content")
    if isinstance(content, str):
        blocks: tuple[Block, ...] = (Text(text=content),)
        shape: Any = "string"
    else:
        items = content if isinstance(content, list) else []
        blocks = tuple(block_from_anthropic(b) for b in items if isinstance(b, Mapping))
        shape = "blocks"
    return Message(
        role=role,
        content=blocks,
        content_shape=shape,
        extra=extras_for("anthropic", split_known(data, _MESSAGE_KEYS)),
    )


@dataclass(slots=True)
class MessageShaper:
    """Renders canonical messages as Anthropic ``system`` and ``messages``."""

    policy: Policy
    foreign: bool
    system: list[JsonDict] | str | None = None
    messages: list[JsonDict] = field(default_factory=list)
    _results_turn: JsonDict | None = None

    def render(self, messages: Sequence[Message]) -> None:
        """Fill ``system`` and ``messages``."""
        renderer = BlockRenderer(policy=self.policy, for_request=True, foreign=self.foreign)
        leading = 0
        while leading < len(messages) and messages[leading].role in ("system", "developer"):
            leading += 1
        self.system = self._system(messages[:leading], renderer)
        for position in range(leading, len(messages)):
            self._message(messages[position], renderer, f"messages[{position}]")

    def _system(self, messages: Sequence[Message], renderer: BlockRenderer) -> Any:
        if not messages:
            return None
        only = messages[0]
        plain = all(
            isinstance(b, Text) and not b.extra and not b.cache_control for b in only.content
        )
        if len(messages) == 1 and only.content_shape == "string" and plain:
            return "".join(b.text for b in only.content if isinstance(b, Text))
        blocks: list[JsonDict] = []
        for position, message in enumerate(messages):
            for block in message.content:
                rendered = renderer.render(block, f"system[{position}]")
                if rendered is not None and (not self.foreign or _non_empty_text(rendered)):
                    blocks.append(rendered)
        return blocks

    def _message(self, message: Message, renderer: BlockRenderer, where: str) -> None:
        blocks = self._blocks(message, renderer, where)
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if self.foreign and self._results_turn is not None and message.role in ("user", "tool"):
            # Merge into the open tool-results turn: results first, then the rest.
            content = self._results_turn["content"]
            others = [b for b in blocks if b.get("type") != "tool_result"]
            content[:] = [
                *[b for b in content if b.get("type") == "tool_result"],
                *results,
                *[b for b in content if b.get("type") != "tool_result"],
                *others,
            ]
            if others:
                self._results_turn = None
            return
        self._results_turn = None
        if self.foreign and not blocks:
            self.policy.drop(where)
            return
        role = {"tool": "user", "developer": "system"}.get(message.role, message.role)
        out: JsonDict = {"role": role, "content": self._content(message, blocks)}
        self.messages.append(with_extras(out, message.extra, "anthropic"))
        if self.foreign and results:
            self._results_turn = out

    def _blocks(self, message: Message, renderer: BlockRenderer, where: str) -> list[JsonDict]:
        content: Sequence[Block] = message.content
        if self.foreign:
            content = _ordered(message)
        rendered = [renderer.render(b, f"{where}.content") for b in content]
        blocks = [b for b in rendered if b is not None]
        if self.foreign:
            blocks = [b for b in blocks if _non_empty_text(b)]
        return blocks

    def _content(self, message: Message, blocks: list[JsonDict]) -> Any:
        plain = all(set(b) == {"type", "text"} and b["type"] == "text" for b in blocks)
        if message.content_shape == "string" and plain and len(blocks) == 1:
            return blocks[0]["text"]
        return blocks


def _ordered(message: Message) -> list[Block]:
    """Tool results first in a user turn (foreign requests only); assistants keep their order.

    Thinking interleaved with server-tool groups must keep its place
    (https://github.com/BerriAI/litellm/issues/23047); OpenAI-parsed turns already lead with it.
    """
    if message.role == "assistant":
        return list(message.content)
    lead = [b for b in message.content if isinstance(b, ToolResult)]
    return [*lead, *[b for b in message.content if not isinstance(b, ToolResult)]]


def _non_empty_text(block: JsonDict) -> bool:
    return block.get("type") != "text" or bool(block.get("text"))


def last_tool_turn_lacks_thinking(messages: Sequence[Message]) -> bool:
    """True when the last assistant turn with a tool call does not start with reasoning.

    Anthropic then rejects thinking: "Expected `thinking` or `redacted_thinking`, but found
    `tool_use`" (https://platform.claude.com/docs/en/build-with-claude/extended-thinking).
    """
    for message in reversed(messages):
        if message.role != "assistant":
            continue
        if not any(isinstance(b, ToolUse) for b in message.content):
            continue
        kept = [b for b in message.content if not _dropped_on_replay(b)]
        return not kept or not isinstance(kept[0], Thinking | RedactedThinking)
    return False


def _dropped_on_replay(block: Block) -> bool:
    if isinstance(block, Thinking | RedactedThinking):
        return not keeps_thinking(block)
    return isinstance(block, OpaqueBlock) and block.wire != "anthropic"
