"""Gemini ``Part`` objects ⇄ canonical blocks (shared by requests, responses and streams).

Thought signatures (https://ai.google.dev/gemini-api/docs/thought-signatures) are Part-level
siblings, camelCase ``thoughtSignature``, never nested in ``functionCall``
(https://github.com/mnfst/llm-gateway/pull/1517). A signed thought part is a signed
``Thinking``; a signature on any other part becomes a ``RedactedThinking`` (format
``google-gemini-v1``) placed just before that part's block, so wires that only carry reasoning
blocks keep it (OpenAI ``reasoning_details``, Anthropic ``redacted_thinking``), and rendering
puts it back on the part that follows it.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from orcarouter.canonical import (
    Audio,
    Base64Source,
    Block,
    Document,
    FileIdSource,
    Image,
    MediaSource,
    OpaqueBlock,
    PlainTextSource,
    RedactedThinking,
    Refusal,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
    UrlSource,
)
from orcarouter.translate.common import (
    JsonDict,
    Policy,
    dump_json,
    extras_for,
    residual,
    with_extras,
)
from orcarouter.translate.gemini.fields import (
    GEMINI_THINKING_FORMAT,
    get,
    standard_base64,
    unwrap_signature,
    wrap_signature,
)

FILES_API: Final = "https://generativelanguage.googleapis.com/"
_AUDIO_FORMATS: Final = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
}


@dataclass(slots=True)
class CallIds:
    """Ids of function calls: Gemini's own, or ``{prefix}{n}`` when the part has none.

    Pairs each ``functionResponse`` with its call (by id, else the first unanswered call of
    that name) and remembers call names: Gemini requires the name on a response, OpenAI tool
    messages do not carry it (https://github.com/Portkey-AI/gateway code review, §4.3).
    """

    prefix: str
    count: int = 0
    names: dict[str, str] = field(default_factory=dict)
    pending: list[tuple[str, str]] = field(default_factory=list)
    orphans: set[str] = field(default_factory=set)
    """Responses whose call is not in the conversation: their name must travel with them."""

    def call(self, given: Any, name: str) -> str:
        """The id of a ``functionCall`` part."""
        call_id = given if isinstance(given, str) and given else self._new()
        self.names[call_id] = name
        self.pending.append((call_id, name))
        return call_id

    def answer(self, given: Any, name: str) -> str:
        """The call id a ``functionResponse`` part answers."""
        if isinstance(given, str) and given:
            self.pending = [p for p in self.pending if p[0] != given]
            if given not in self.names:
                self.names[given] = name
                self.orphans.add(given)
            return given
        for position, (call_id, call_name) in enumerate(self.pending):
            if call_name == name:
                del self.pending[position]
                return call_id
        call_id = self._new()
        self.names[call_id] = name
        self.orphans.add(call_id)
        return call_id

    def _new(self) -> str:
        call_id, self.count = f"{self.prefix}{self.count}", self.count + 1
        return call_id


def gemini_signed(block: Thinking | RedactedThinking) -> bool:
    """Whether Gemini signed this block (only such signatures may go back to Gemini)."""
    return block.format == GEMINI_THINKING_FORMAT


def signature_for(block: Thinking | RedactedThinking, *, for_client: bool) -> str | None:
    """The ``thoughtSignature`` to write for a block, ``None`` when it must not be written.

    Gemini's own signatures go as they are. Another vendor's go only to a Gemini-dialect
    client, wrapped (``FOREIGN_SIGNATURE_PREFIX``), never to Gemini itself.
    """
    signature = block.data if isinstance(block, RedactedThinking) else block.signature
    if not signature:
        return None
    if gemini_signed(block):
        return signature
    return wrap_signature(signature, block.format) if for_client else None


def part_to_blocks(part: Mapping[str, Any], ids: CallIds) -> list[Block]:
    """One Part as canonical blocks; the last one carries the part's unknown fields."""
    signature = get(part, "thoughtSignature")
    block, consumed = _parse(part, ids, signature)
    if isinstance(block, OpaqueBlock):
        return [block]
    blocks: list[Block] = [block]
    if isinstance(signature, str) and not consumed:
        data, fmt = unwrap_signature(signature)
        blocks.insert(0, RedactedThinking(data=data, format=fmt))
    writer = PartWriter(policy=Policy(drop_params=True), names=ids.names, for_client=True)
    rendered = writer.parts(blocks)
    if len(rendered) != 1:
        return [OpaqueBlock(wire="gemini", data=dict(part))]
    extra = residual(part, rendered[0])
    if isinstance(block, ToolResult) and block.tool_use_id in ids.orphans:
        extra.setdefault("functionResponse", {})["name"] = ids.names[block.tool_use_id]
    if extra:
        blocks[-1] = replace(block, extra=extras_for("gemini", extra))
    return blocks


def _parse(part: Mapping[str, Any], ids: CallIds, signature: Any) -> tuple[Block, bool]:
    text = get(part, "text")
    if isinstance(text, str):
        if get(part, "thought") is True:
            if not isinstance(signature, str):
                return Thinking(thinking=text, format=GEMINI_THINKING_FORMAT), True
            signed, fmt = unwrap_signature(signature)
            return Thinking(thinking=text, signature=signed, format=fmt), True
        return Text(text=text), False
    call = get(part, "functionCall")
    if isinstance(call, Mapping):
        name = str(call.get("name", ""))
        args = call.get("args")
        tool_input = dict(args) if isinstance(args, Mapping) else {}
        return ToolUse(id=ids.call(call.get("id"), name), name=name, input=tool_input), False
    response = get(part, "functionResponse")
    if isinstance(response, Mapping):
        return _tool_result(response, ids), False
    media = media_block(part)
    if media is not None:
        return media, False
    return OpaqueBlock(wire="gemini", data=dict(part)), True


def _tool_result(data: Mapping[str, Any], ids: CallIds) -> ToolResult:
    name = str(data.get("name", ""))
    tool_id = ids.answer(data.get("id"), name)
    text, is_error = response_text(data.get("response"))
    media = [media_block(p) for p in get(data, "parts") or () if isinstance(p, Mapping)]
    content: tuple[Block, ...] = (Text(text=text), *(m for m in media if m is not None))
    return ToolResult(
        tool_use_id=tool_id,
        content=content,
        content_shape="string" if len(content) == 1 else "blocks",
        is_error=is_error,
    )


def response_text(response: Any) -> tuple[str, bool | None]:
    """A ``functionResponse.response`` as text: ``output``/``error`` unwrapped, else JSON.

    Google's convention: "Use "output" key to specify function output and "error" key to
    specify error details" (https://ai.google.dev/api/caching#FunctionResponse).
    """
    if isinstance(response, Mapping) and len(response) == 1:
        ((key, value),) = response.items()
        if key in ("output", "error") and isinstance(value, str):
            return value, True if key == "error" else None
    return dump_json(response if response is not None else {}), None


def response_object(text: str, is_error: bool | None) -> JsonDict:
    """Tool output text as a ``functionResponse.response`` object (a JSON object stays one)."""
    if not is_error and text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and dump_json(parsed) == text:
            return parsed
    return {"error" if is_error else "output": text}


def media_block(part: Mapping[str, Any]) -> Block | None:
    """An ``inlineData``/``fileData`` part as an image, audio or document block."""
    inline = get(part, "inlineData")
    if isinstance(inline, Mapping):
        mime = str(get(inline, "mimeType") or "application/octet-stream")
        data = standard_base64(str(inline.get("data", "")))
        if mime.startswith("audio/"):
            return Audio(data=data, format=_AUDIO_FORMATS.get(mime, mime.partition("/")[2]))
        return _by_mime(mime, Base64Source(media_type=mime, data=data))
    spec = get(part, "fileData")
    if not isinstance(spec, Mapping):
        return None
    uri = str(get(spec, "fileUri") or "")
    given = get(spec, "mimeType")
    mime = given if isinstance(given, str) else mimetypes.guess_type(uri)[0] or ""
    if uri.startswith(FILES_API):
        return _by_mime(mime, FileIdSource(file_id=uri))
    return _by_mime(mime, UrlSource(url=uri, media_type=given if isinstance(given, str) else None))


def _by_mime(mime: str, source: MediaSource) -> Block | None:
    kind = mime.partition("/")[0]
    if kind == "image":
        return Image(source=source)
    if kind in ("audio", "video"):
        return None  # no other wire takes audio by URL or video: kept as an opaque part
    if kind == "text" and isinstance(source, Base64Source):
        try:
            text = base64.b64decode(source.data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return Document(source=source)
        return Document(source=PlainTextSource(text=text, media_type=mime))
    return Document(source=source)


@dataclass(slots=True)
class PartWriter:
    """Renders canonical blocks as Gemini parts, re-attaching signatures to their parts.

    ``names`` maps tool-call ids to function names; ``response_media`` puts a tool result's
    images and documents inside ``functionResponse.parts`` (Gemini 3) rather than after it;
    ``for_client`` writes output for a Gemini-dialect client (see ``signature_for``).
    """

    policy: Policy
    names: Mapping[str, str] = field(default_factory=dict)
    response_media: bool = True
    for_client: bool = False

    def parts(self, blocks: Sequence[Block], where: str = "content") -> list[JsonDict]:
        """The parts for a run of blocks (one content's worth)."""
        out: list[JsonDict] = []
        pending: str | None = None
        for block in blocks:
            if isinstance(block, RedactedThinking):
                signature = signature_for(block, for_client=self.for_client)
                if signature is None:
                    self.policy.drop(f"{where}.redacted_thinking")
                    continue
                if pending is not None:
                    out.append({"text": "", "thoughtSignature": pending})
                pending = signature
                continue
            for part in self._render(block, where):
                if pending is not None and ("thoughtSignature" in part or "thought" in part):
                    out.append({"text": "", "thoughtSignature": pending})
                elif pending is not None:
                    part["thoughtSignature"] = pending
                pending = None
                out.append(part)
        if pending is not None:
            out.append({"text": "", "thoughtSignature": pending})
        return out

    def _render(self, block: Block, where: str) -> list[JsonDict]:
        if isinstance(block, OpaqueBlock):
            if block.wire == "gemini":
                return [dict(block.data)]
            self.policy.reject(where, f"a {block.wire}-only block has no Gemini form")
            return []
        if isinstance(block, ToolResult):
            return self._tool_result(block, where)
        part = self._part(block, where)
        return [] if part is None else [with_extras(part, block.extra, "gemini")]

    def _part(self, block: Block, where: str) -> JsonDict | None:
        if isinstance(block, Text | Refusal):
            return {"text": block.text}
        if isinstance(block, Thinking):
            part: JsonDict = {"text": block.thinking, "thought": True}
            signature = signature_for(block, for_client=self.for_client)
            if signature is not None:
                part["thoughtSignature"] = signature
            return part
        if isinstance(block, ToolUse):
            args = dict(block.input) if isinstance(block.input, Mapping) else {}
            return {"functionCall": {"name": block.name, "args": args, "id": block.id}}
        if isinstance(block, Audio):
            mime = "audio/mp3" if block.format == "mp3" else f"audio/{block.format}"
            return {"inlineData": {"mimeType": mime, "data": block.data}}
        if isinstance(block, Image | Document):
            media = media_part(block)
            if media is None:
                self.policy.reject(where, "a file uploaded to another vendor has no Gemini form")
            return media
        # Server tool blocks (Anthropic web search) cannot be replayed to Gemini; dropping them
        # keeps the conversation valid.
        self.policy.drop(f"{where}.{type(block).__name__}")
        return None

    def _tool_result(self, block: ToolResult, where: str) -> list[JsonDict]:
        own = block.extra.get("gemini", {}).get("functionResponse")
        name = self.names.get(block.tool_use_id) or (own or {}).get("name")
        if not isinstance(name, str):
            self.policy.reject(where, f"tool result {block.tool_use_id!r} answers no known call")
            return []
        text = "".join(b.text for b in block.content if isinstance(b, Text | Refusal))
        media = [p for b in block.content if isinstance(b, Image | Document) for p in _media(b)]
        spec: JsonDict = {
            "id": block.tool_use_id,
            "name": name,
            "response": response_object(text, block.is_error),
        }
        if media and self.response_media:
            spec["parts"] = media
        part = with_extras({"functionResponse": spec}, block.extra, "gemini")
        return [part] if self.response_media else [part, *media]


def _media(block: Image | Document) -> list[JsonDict]:
    part = media_part(block)
    return [] if part is None else [part]


def media_part(block: Image | Document) -> JsonDict | None:
    """An image or document as ``inlineData`` or ``fileData``; ``None`` for other vendors' files."""
    source = block.source
    if isinstance(source, Base64Source):
        return {"inlineData": {"mimeType": source.media_type, "data": source.data}}
    if isinstance(source, PlainTextSource):
        data = base64.b64encode(source.text.encode("utf-8")).decode("ascii")
        return {"inlineData": {"mimeType": source.media_type, "data": data}}
    if isinstance(source, UrlSource):
        fallback = "image/jpeg" if isinstance(block, Image) else "application/pdf"
        mime = source.media_type or mimetypes.guess_type(source.url)[0] or fallback
        return {"fileData": {"mimeType": mime, "fileUri": source.url}}
    if source.file_id.startswith(FILES_API):
        return {"fileData": {"fileUri": source.file_id}}
    return None
