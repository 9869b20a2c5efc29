"""Gemini ``systemInstruction`` + ``contents[]`` ⇄ canonical messages (requests only).

Shaping rules for requests from another wire (wire-formats.md §4.3, §5):

* Leading system/developer messages become ``systemInstruction``. Gemini has no place for a
  later one, so it stays where it was as a user turn wrapped in ``<system>…</system>``:
  hoisting it would rewrite the cached prefix (https://github.com/BerriAI/litellm/issues/36559)
  and dropping it would lose an instruction.
* Consecutive turns of one role merge; in a user turn function responses come first.
* Empty text parts are dropped (Vertex: "Unable to submit request because it has an empty text
  parameter"); a user turn of media only gets a blank text part
  (https://github.com/BerriAI/litellm/issues/5515); empty contents, e.g. a system-only request,
  get a "." user turn (https://github.com/BerriAI/litellm/issues/9733,
  https://github.com/BerriAI/litellm/issues/13769).
* With ``signatures_required`` (Gemini 3) the first function call of a model turn that has no
  Gemini signature gets the documented dummy (https://ai.google.dev/gemini-api/docs/thought-signatures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from orcarouter.canonical import Block, Message, Text, ToolResult
from orcarouter.translate.common import ABSENT, JsonDict, Policy, extras_for, with_extras
from orcarouter.translate.gemini.fields import DUMMY_SIGNATURE, get
from orcarouter.translate.gemini.parts import CallIds, PartWriter, part_to_blocks

LATE_SYSTEM_TEMPLATE: Final = "<system>\n{}\n</system>"
MEDIA_ONLY_TEXT: Final = " "
EMPTY_CONTENTS_TEXT: Final = "."
_MEDIA_KEYS: Final = frozenset({"inlineData", "fileData"})


def messages_to_canonical(body: Mapping[str, Any], ids: CallIds) -> list[Message]:
    """``systemInstruction`` (as a leading system message) and ``contents`` as messages."""
    messages: list[Message] = []
    system = get(body, "systemInstruction")
    if isinstance(system, Mapping):
        messages.append(_message(system, ids, system=True))
    for content in body.get("contents") or ():
        if isinstance(content, Mapping):
            messages.append(_message(content, ids, system=False))
    return messages


def _message(content: Mapping[str, Any], ids: CallIds, *, system: bool) -> Message:
    raw_parts = content.get("parts")
    parts = raw_parts if isinstance(raw_parts, list) else []
    blocks = [b for p in parts if isinstance(p, Mapping) for b in part_to_blocks(p, ids)]
    leftover: dict[str, Any] = {k: v for k, v in content.items() if k not in ("role", "parts")}
    if not isinstance(raw_parts, list):
        leftover["parts"] = raw_parts if "parts" in content else ABSENT
    role: Any = "system"
    if system:
        if "role" in content:
            leftover["role"] = content["role"]
    else:
        raw_role = content.get("role")
        role = "assistant" if raw_role == "model" else "user"
        if raw_role != ("model" if role == "assistant" else "user"):
            leftover["role"] = raw_role if "role" in content else ABSENT
    return Message(role=role, content=tuple(blocks), extra=extras_for("gemini", leftover))


def _is_empty_text(part: Mapping[str, Any]) -> bool:
    return part.get("text") == "" and len(part) == 1


def _is_media(part: Mapping[str, Any]) -> bool:
    return bool(_MEDIA_KEYS & set(part))


@dataclass(slots=True)
class ContentShaper:
    """Renders canonical messages as ``systemInstruction`` and ``contents``."""

    writer: PartWriter
    policy: Policy
    foreign: bool
    signatures_required: bool = False
    system: JsonDict | None = None
    contents: list[JsonDict] = field(default_factory=list)

    def render(self, messages: Sequence[Message]) -> None:
        """Fill ``system`` and ``contents``."""
        leading = 0
        while leading < len(messages) and messages[leading].role in ("system", "developer"):
            leading += 1
        self.system = self._system(messages[:leading])
        for position in range(leading, len(messages)):
            self._message(messages[position], f"messages[{position}]")
        if self.foreign:
            self._finish()

    def _system(self, messages: Sequence[Message]) -> JsonDict | None:
        if not messages:
            return None
        parts: list[JsonDict] = []
        for position, message in enumerate(messages):
            parts.extend(self._parts(message.content, f"messages[{position}]"))
        if self.foreign and not parts:
            return None
        return with_extras({"parts": parts}, messages[0].extra, "gemini")

    def _parts(self, blocks: Sequence[Block], where: str) -> list[JsonDict]:
        parts = self.writer.parts(blocks, where)
        return [p for p in parts if not _is_empty_text(p)] if self.foreign else parts

    def _message(self, message: Message, where: str) -> None:
        role = "model" if message.role == "assistant" else "user"
        if not self.foreign:
            parts = self._parts(message.content, where)
            content = {"role": role, "parts": parts}
            self.contents.append(with_extras(content, message.extra, "gemini"))
            return
        if message.role in ("system", "developer"):
            text = "\n".join(b.text for b in message.content if isinstance(b, Text))
            self.policy.adjusted.append(f"{where}.role")
            parts = [{"text": LATE_SYSTEM_TEMPLATE.format(text)}]
        else:
            blocks: list[Block] = [b for b in message.content if isinstance(b, ToolResult)]
            blocks += [b for b in message.content if not isinstance(b, ToolResult)]
            parts = self._parts(blocks, where)
        if not parts:
            self.policy.drop(where)
            return
        last = self.contents[-1] if self.contents else None
        if last is not None and last["role"] == role:
            merged = [*last["parts"], *parts]
            if role == "user":
                merged = _responses_first(merged)
            last["parts"] = merged
            return
        self.contents.append({"role": role, "parts": parts})

    def _finish(self) -> None:
        for content in self.contents:
            parts = content["parts"]
            if content["role"] == "user" and all(_is_media(p) for p in parts):
                parts.append({"text": MEDIA_ONLY_TEXT})
            if content["role"] == "model" and self.signatures_required:
                _dummy_signature(parts)
        if not self.contents:
            self.policy.adjusted.append("messages")
            self.contents.append({"role": "user", "parts": [{"text": EMPTY_CONTENTS_TEXT}]})


def _responses_first(parts: list[JsonDict]) -> list[JsonDict]:
    responses = [p for p in parts if "functionResponse" in p]
    return [*responses, *[p for p in parts if "functionResponse" not in p]]


def _dummy_signature(parts: list[JsonDict]) -> None:
    for part in parts:
        if "functionCall" in part:
            part.setdefault("thoughtSignature", DUMMY_SIGNATURE)
            return
