"""OpenAI Chat ``messages[]`` ⇄ canonical ``Message`` (requests only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from orcarouter.canonical import (
    Block,
    ContentShape,
    Message,
    OpaqueBlock,
    RedactedThinking,
    Refusal,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)
from orcarouter.translate.common import (
    JsonDict,
    Policy,
    as_string,
    extras_for,
    split_known,
    with_extras,
)
from orcarouter.translate.openai_chat.ordering import detail_entries, is_marker, restore_order
from orcarouter.translate.openai_chat.parts import (
    DEFAULT_REASONING_FIELDS,
    REASONING_DETAILS,
    REASONING_TEXT_KEYS,
    block_to_part,
    detail_to_block,
    is_reasoning_like,
    part_to_block,
    tool_call_from_block,
    tool_call_to_block,
)

_MESSAGE_KEYS: Final = frozenset({"role", "content", "name"})
_TOOL_KEYS: Final = frozenset({"role", "content", "tool_call_id"})
REFUSAL_FIELD_MARK: Final = "_refusal_field"
"""Marks a refusal that came from the message's ``refusal`` field, not from a content part."""
_ASSISTANT_KEYS: Final = _MESSAGE_KEYS | {
    "tool_calls",
    "refusal",
    *REASONING_TEXT_KEYS,
    REASONING_DETAILS,
}


def content_to_blocks(content: Any) -> tuple[tuple[Block, ...], ContentShape | None]:
    """A ``content`` value (string, parts, null) as blocks plus the shape it had."""
    if isinstance(content, str):
        return (Text(text=content),), "string"
    if isinstance(content, list):
        return tuple(part_to_block(p) for p in content if isinstance(p, Mapping)), "blocks"
    return (), "null"


def content_from_blocks(
    blocks: Sequence[Block], shape: ContentShape | None, policy: Policy, where: str
) -> Any:
    """Blocks as a ``content`` value in the requested shape (string only when all text)."""
    if shape == "null" and not blocks:
        return None
    plain = all(isinstance(b, Text) and not b.extra and b.cache_control is None for b in blocks)
    if shape == "string" and plain:
        return "".join(b.text for b in blocks if isinstance(b, Text))
    parts: list[JsonDict] = []
    for block in blocks:
        part = block_to_part(block)
        if part is None:
            policy.reject(where, f"{type(block).__name__} content has no OpenAI equivalent")
        else:
            parts.append(part)
    return parts


_NAME_PARAM: Final = "messages[].name"


def message_to_canonical(data: Mapping[str, Any]) -> Message:
    """One OpenAI message as a canonical message."""
    role = data.get("role")
    if role == "assistant":
        return _assistant_to_canonical(data)
    if role == "tool":
        content, shape = content_to_blocks(data.get("content"))
        result = ToolResult(
            tool_use_id=str(data.get("tool_call_id") or ""), content=content, content_shape=shape
        )
        leftover = split_known(data, _TOOL_KEYS)
        return Message(role="tool", content=(result,), extra=extras_for("openai", leftover))
    if role not in ("system", "developer", "user"):
        raise ValueError(f"unsupported OpenAI message role {role!r}")
    content, shape = content_to_blocks(data.get("content"))
    return Message(
        role=role,
        content=content,
        content_shape=shape if "content" in data else None,
        name=as_string(data.get("name"), _NAME_PARAM),
        extra=extras_for("openai", split_known(data, _MESSAGE_KEYS)),
    )


def _assistant_to_canonical(data: Mapping[str, Any]) -> Message:
    reasoning, fields = reasoning_blocks(data)
    content, shape = content_to_blocks(data.get("content"))
    blocks: list[Block] = [*reasoning, *content]
    if isinstance(data.get("refusal"), str):
        blocks.append(Refusal(text=data["refusal"], extra={"openai": {REFUSAL_FIELD_MARK: True}}))
    calls = data.get("tool_calls")
    if isinstance(calls, list):
        blocks.extend(tool_call_to_block(c) for c in calls if isinstance(c, Mapping))
    blocks = restore_order(blocks, data.get(REASONING_DETAILS))
    leftover = split_known(data, _ASSISTANT_KEYS)
    for key in ("refusal", "tool_calls", *REASONING_TEXT_KEYS, REASONING_DETAILS):
        if key in data and key not in fields and not _consumed(key, data[key]):
            leftover[key] = data[key]
    return Message(
        role="assistant",
        content=tuple(blocks),
        content_shape=shape if "content" in data else None,
        name=as_string(data.get("name"), _NAME_PARAM),
        reasoning_fields=fields,
        extra=extras_for("openai", leftover),
    )


def _consumed(key: str, value: Any) -> bool:
    if key == "refusal":
        return isinstance(value, str)
    if key == "tool_calls":
        return isinstance(value, list) and bool(value)
    return False


def reasoning_blocks(data: Mapping[str, Any]) -> tuple[list[Block], tuple[str, ...]]:
    """Reasoning from ``reasoning_details`` if given, else from the plain text fields."""
    fields = tuple(k for k in (*REASONING_TEXT_KEYS, REASONING_DETAILS) if data.get(k))
    details = data.get(REASONING_DETAILS)
    if isinstance(details, list) and details:
        entries = [d for d in details if isinstance(d, Mapping) and not is_marker(d)]
        return [detail_to_block(d) for d in entries], fields
    for key in REASONING_TEXT_KEYS:
        text = data.get(key)
        if isinstance(text, str) and text:
            return [Thinking(thinking=text)], fields
    return [], fields


@dataclass(slots=True)
class MessageRenderer:
    """Renders canonical messages as OpenAI messages, recording what could not be expressed."""

    policy: Policy
    reasoning_fields: tuple[str, ...] | None = None
    same_wire: bool = True
    """False when rendering a request parsed from another wire: plain text becomes a string."""

    def _shape(
        self, blocks: Sequence[Block], message_shape: ContentShape | None, default: ContentShape
    ) -> ContentShape:
        if not self.same_wire:
            # One text → a plain string (what every compatible server takes); several stay
            # parts rather than being glued without a separator.
            return "string" if len(blocks) == 1 else "blocks"
        return message_shape or default

    def render(self, messages: Sequence[Message]) -> list[JsonDict]:
        """All messages; a user turn's tool results become ``tool`` messages placed first."""
        out: list[JsonDict] = []
        for position, message in enumerate(messages):
            where = f"messages[{position}]"
            if message.role == "assistant":
                out.append(self._assistant(message, where))
            elif message.role in ("user", "tool"):
                out.extend(self._user_or_tool(message, where))
            else:
                out.append(self._plain(message, where))
        return out

    def _plain(self, message: Message, where: str) -> JsonDict:
        blocks = [
            b for b in message.content if not isinstance(b, OpaqueBlock) or b.wire == "openai"
        ]
        if len(blocks) != len(message.content):
            self.policy.drop(f"{where}.content")
        out: JsonDict = {"role": message.role}
        if message.content_shape is not None or blocks:
            shape = self._shape(blocks, message.content_shape, "blocks")
            out["content"] = content_from_blocks(blocks, shape, self.policy, where)
        if message.name is not None:
            out["name"] = message.name
        return with_extras(out, message.extra, "openai")

    def _user_or_tool(self, message: Message, where: str) -> list[JsonDict]:
        results = [b for b in message.content if isinstance(b, ToolResult)]
        rest = [b for b in message.content if not isinstance(b, ToolResult)]
        out = [self._tool_message(r, message, where) for r in results]
        if rest or not results:
            out.append(self._plain(Message(**_user_fields(message, tuple(rest))), where))
        return out

    def _tool_message(self, result: ToolResult, message: Message, where: str) -> JsonDict:
        if result.is_error:
            self.policy.drop(f"{where}.is_error")
        shape = self._shape(result.content, result.content_shape, "string")
        out: JsonDict = {
            "role": "tool",
            "tool_call_id": result.tool_use_id,
            "content": content_from_blocks(result.content, shape, self.policy, where) or "",
        }
        extras = message.extra if message.role == "tool" else result.extra
        return with_extras(out, extras, "openai")

    def _assistant(self, message: Message, where: str) -> JsonDict:
        calls = [b for b in message.content if isinstance(b, ToolUse)]
        as_parts = message.content_shape == "blocks"
        refusals = [b for b in message.content if isinstance(b, Refusal) and _is_field(b, as_parts)]
        body = [
            b
            for b in message.content
            if not (is_reasoning_like(b) or isinstance(b, ToolUse) or b in refusals)
        ]
        out: JsonDict = {"role": "assistant"}
        if (message.content_shape is not None and self.same_wire) or body or not calls:
            shape = self._shape(body, message.content_shape, "string")
            out["content"] = content_from_blocks(body, shape, self.policy, where)
        if message.name is not None:
            out["name"] = message.name
        if refusals:
            out["refusal"] = "".join(r.text for r in refusals)
        if calls:
            out["tool_calls"] = [tool_call_from_block(c) for c in calls]
        self._reasoning(out, message.content, message.reasoning_fields)
        return with_extras(out, message.extra, "openai")

    def _reasoning(self, out: JsonDict, content: Sequence[Block], hinted: tuple[str, ...]) -> None:
        blocks = [b for b in content if is_reasoning_like(b)]
        if not blocks:
            return
        default = (
            DEFAULT_REASONING_FIELDS if self.reasoning_fields is None else self.reasoning_fields
        )
        fields = hinted or default
        text = "".join(b.thinking for b in blocks if isinstance(b, Thinking))
        for key in REASONING_TEXT_KEYS:
            if key in fields and text:
                out[key] = text
        if REASONING_DETAILS in fields:
            out[REASONING_DETAILS] = detail_entries(content)
        elif any(isinstance(b, RedactedThinking) or _signed(b) for b in blocks):
            self.policy.drop("reasoning_details")


def _signed(block: Block) -> bool:
    return isinstance(block, Thinking) and bool(block.signature)


def _is_field(block: Refusal, as_parts: bool) -> bool:
    """Whether a refusal goes to the message's ``refusal`` field rather than a content part."""
    return bool(block.extra.get("openai", {}).get(REFUSAL_FIELD_MARK)) or not as_parts


def _user_fields(message: Message, content: tuple[Block, ...]) -> dict[str, Any]:
    role = "user" if message.role == "tool" else message.role
    return {
        "role": role,
        "content": content,
        "content_shape": message.content_shape,
        "name": message.name,
        "extra": message.extra if message.role == "user" else {},
    }
