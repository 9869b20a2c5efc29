"""OpenAI Chat content parts, tool calls and reasoning fields ⇄ canonical blocks.

Reasoning travels in two non-standard assistant fields, both read and written:
``reasoning_content`` (DeepSeek; ``reasoning`` on vLLM/OpenRouter) and ``reasoning_details``
(OpenRouter's typed list, which carries signatures and redacted blocks:
https://openrouter.ai/docs/use-cases/reasoning-tokens). Vendor-run tool blocks and blocks only
another wire understands ride in ``reasoning_details`` as ``orcarouter.*`` entries so a client
that replays the message gives them back in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from orcarouter.canonical import (
    Audio,
    Base64Source,
    Block,
    Document,
    FileIdSource,
    Image,
    OpaqueBlock,
    PlainTextSource,
    RedactedThinking,
    Refusal,
    ServerToolResult,
    ServerToolUse,
    Text,
    Thinking,
    ToolUse,
    UrlSource,
)
from orcarouter.translate.common import (
    JsonDict,
    data_url,
    dump_json,
    extras_for,
    parse_arguments,
    parse_data_url,
    residual,
    with_extras,
)

REASONING_TEXT_KEYS: Final = ("reasoning_content", "reasoning")
REASONING_DETAILS: Final = "reasoning_details"
DEFAULT_REASONING_FIELDS: Final = ("reasoning_content", "reasoning_details")


def _keep(block_extra_source: Mapping[str, Any], rendered: JsonDict) -> Any:
    return extras_for("openai", residual(block_extra_source, rendered))


def part_to_block(part: Mapping[str, Any]) -> Block:
    """One user/system/assistant/tool content part as a canonical block."""
    block = _part_to_block(part)
    if isinstance(block, OpaqueBlock):
        return block
    rendered = block_to_part(block)
    if rendered is None:
        return OpaqueBlock(wire="openai", data=dict(part))
    extra = _keep(part, rendered)
    return _with_extra(block, extra) if extra else block


def _with_extra(block: Block, extra: Any) -> Block:
    if isinstance(block, OpaqueBlock):
        return block
    return replace(block, extra=extra)


def _part_to_block(part: Mapping[str, Any]) -> Block:
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        return Text(text=part["text"], cache_control=part.get("cache_control"))
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return Refusal(text=part["refusal"])
    if kind == "image_url" and isinstance(part.get("image_url"), Mapping):
        spec = part["image_url"]
        return Image(
            source=_source_from_url(str(spec.get("url", ""))),
            detail=spec.get("detail"),
            cache_control=part.get("cache_control"),
        )
    if kind == "input_audio" and isinstance(part.get("input_audio"), Mapping):
        spec = part["input_audio"]
        return Audio(data=str(spec.get("data", "")), format=str(spec.get("format", "")))
    if kind == "file" and isinstance(part.get("file"), Mapping):
        return _file_to_document(part["file"], part.get("cache_control"))
    return OpaqueBlock(wire="openai", data=dict(part))


def _source_from_url(url: str) -> Base64Source | UrlSource:
    parsed = parse_data_url(url)
    if parsed is None:
        return UrlSource(url=url)
    return Base64Source(media_type=parsed[0], data=parsed[1])


def _file_to_document(spec: Mapping[str, Any], cache_control: Any) -> Block:
    filename = spec.get("filename")
    if isinstance(spec.get("file_id"), str):
        return Document(
            source=FileIdSource(file_id=spec["file_id"]),
            filename=filename,
            cache_control=cache_control,
        )
    raw = str(spec.get("file_data", ""))
    parsed = parse_data_url(raw)
    source: Base64Source | UrlSource
    if parsed:
        source = Base64Source(media_type=parsed[0], data=parsed[1])
    elif _is_http_url(raw):
        # OpenRouter takes a document URL in file_data (it fetches the file itself).
        source = UrlSource(url=raw)
    else:
        source = Base64Source(media_type="application/pdf", data=raw)
    return Document(source=source, filename=filename, cache_control=cache_control)


def _is_http_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def block_to_part(block: Block) -> JsonDict | None:
    """A canonical block as an OpenAI content part, ``None`` when OpenAI has no such part."""
    part = _block_to_part(block)
    if part is None or isinstance(block, OpaqueBlock):
        return part
    cache_control = getattr(block, "cache_control", None)
    if cache_control is not None:
        part["cache_control"] = dict(cache_control)
    return with_extras(part, block.extra, "openai")


def _block_to_part(block: Block) -> JsonDict | None:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, Refusal):
        return {"type": "refusal", "refusal": block.text}
    if isinstance(block, Image):
        spec = _image_url(block)
        return None if spec is None else {"type": "image_url", "image_url": spec}
    if isinstance(block, Audio):
        return {"type": "input_audio", "input_audio": {"data": block.data, "format": block.format}}
    if isinstance(block, Document):
        return _document_part(block)
    if isinstance(block, OpaqueBlock) and block.wire == "openai":
        return dict(block.data)
    return None


def _image_url(block: Image) -> JsonDict | None:
    source = block.source
    if isinstance(source, Base64Source):
        spec: JsonDict = {"url": data_url(source.media_type, source.data)}
    elif isinstance(source, UrlSource):
        spec = {"url": source.url}
    else:
        return None  # another vendor's file id or inline text has no image_url form
    if block.detail is not None:
        spec["detail"] = block.detail
    return spec


def _document_part(block: Document) -> JsonDict | None:
    source = block.source
    if isinstance(source, FileIdSource):
        spec: JsonDict = {"file_id": source.file_id}
    elif isinstance(source, Base64Source):
        spec = {"file_data": data_url(source.media_type, source.data)}
    elif isinstance(source, UrlSource) and _is_http_url(source.url):
        spec = {"file_data": source.url}  # a URL in file_data, as OpenRouter accepts it
    elif isinstance(source, PlainTextSource):
        return {"type": "text", "text": source.text}
    else:
        return None  # OpenAI has no part for other URLs (gs://, Files API URIs)
    filename = block.filename or block.title
    if filename is not None:
        spec["filename"] = filename
    return {"type": "file", "file": spec}


def answer_part_blocks(parts: Sequence[Any]) -> list[Block]:
    """Structured assistant ``content`` of an answer (Mistral magistral) as blocks.

    ``{"type": "text", "text": …}`` parts are text and ``{"type": "thinking", "thinking":
    [{"type": "text", "text": …}]}`` parts are reasoning
    (https://docs.mistral.ai/capabilities/reasoning); other parts as in requests.
    """
    blocks: list[Block] = []
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        thinking = mistral_thinking_text(part)
        if thinking is not None:
            blocks.append(Thinking(thinking=thinking))
        else:
            blocks.append(part_to_block(part))
    return blocks


def mistral_thinking_text(part: Mapping[str, Any]) -> str | None:
    """The reasoning text of a Mistral ``thinking`` content part; ``None`` for other parts."""
    inner = part.get("thinking")
    if part.get("type") != "thinking":
        return None
    if isinstance(inner, str):
        return inner
    if not isinstance(inner, list):
        return None
    return "".join(
        str(chunk.get("text") or "")
        for chunk in inner
        if isinstance(chunk, Mapping) and chunk.get("type", "text") == "text"
    )


def tool_call_to_block(call: Mapping[str, Any]) -> ToolUse:
    """An assistant ``tool_calls[]`` entry as ``ToolUse`` (dict arguments tolerated: Ollama)."""
    raw_function = call.get("function")
    function: Mapping[str, Any] = raw_function if isinstance(raw_function, Mapping) else {}
    arguments = function.get("arguments")
    block = ToolUse(
        id=str(call.get("id") or ""),
        name=str(function.get("name") or ""),
        input=parse_arguments(arguments),
        arguments=arguments if isinstance(arguments, str) else None,
    )
    extra = _keep(call, tool_call_from_block(block))
    return ToolUse(
        id=block.id, name=block.name, input=block.input, arguments=block.arguments, extra=extra
    )


def tool_call_from_block(block: ToolUse) -> JsonDict:
    """``ToolUse`` as an OpenAI ``tool_calls[]`` entry (exact argument text when known)."""
    arguments = block.arguments if block.arguments is not None else dump_json(block.input)
    call: JsonDict = {
        "id": block.id,
        "type": "function",
        "function": {"name": block.name, "arguments": arguments},
    }
    return with_extras(call, block.extra, "openai")


def detail_to_block(entry: Mapping[str, Any]) -> Block:
    """One ``reasoning_details`` entry as a canonical block."""
    block = _detail_to_block(entry)
    if isinstance(block, OpaqueBlock):
        return block
    extra = _keep(entry, block_to_detail(block, entry.get("index", 0)) or {})
    return _with_extra(block, extra) if extra else block


def _detail_to_block(entry: Mapping[str, Any]) -> Block:
    kind, fmt = entry.get("type"), entry.get("format")
    if kind == "reasoning.text":
        return Thinking(
            thinking=str(entry.get("text") or ""), signature=entry.get("signature"), format=fmt
        )
    if kind == "reasoning.summary":
        return Thinking(thinking=str(entry.get("summary") or ""), format=fmt)
    if kind == "reasoning.encrypted":
        return RedactedThinking(data=str(entry.get("data") or ""), format=fmt)
    if kind == "orcarouter.server_tool_use":
        return ServerToolUse(
            id=str(entry.get("id")), name=str(entry.get("name")), input=entry.get("input")
        )
    if kind == "orcarouter.server_tool_result":
        return ServerToolResult(
            kind=str(entry.get("kind")),
            tool_use_id=str(entry.get("tool_use_id")),
            content=entry.get("content"),
        )
    if kind == "orcarouter.opaque" and entry.get("wire") in ("anthropic", "gemini"):
        return OpaqueBlock(wire=entry["wire"], data=dict(entry.get("data") or {}))
    return OpaqueBlock(wire="openai", data={REASONING_DETAILS: dict(entry)})


def block_to_detail(block: Block, index: int) -> JsonDict | None:
    """A reasoning-like block as a ``reasoning_details`` entry; ``None`` for other blocks."""
    entry = _block_to_detail(block)
    if entry is None:
        return None
    entry["index"] = index
    extra = getattr(block, "extra", {})
    return with_extras(entry, extra, "openai")


def _block_to_detail(block: Block) -> JsonDict | None:
    if isinstance(block, Thinking):
        entry: JsonDict = {"type": "reasoning.text", "text": block.thinking}
        if block.signature is not None:
            entry["signature"] = block.signature
        if block.format is not None:
            entry["format"] = block.format
        return entry
    if isinstance(block, RedactedThinking):
        entry = {"type": "reasoning.encrypted", "data": block.data}
        if block.format is not None:
            entry["format"] = block.format
        return entry
    if isinstance(block, ServerToolUse):
        return {
            "type": "orcarouter.server_tool_use",
            "id": block.id,
            "name": block.name,
            "input": block.input,
        }
    if isinstance(block, ServerToolResult):
        return {
            "type": "orcarouter.server_tool_result",
            "kind": block.kind,
            "tool_use_id": block.tool_use_id,
            "content": block.content,
        }
    if isinstance(block, OpaqueBlock):
        if block.wire == "openai":
            inner = block.data.get(REASONING_DETAILS)
            return dict(inner) if isinstance(inner, Mapping) else None
        return {"type": "orcarouter.opaque", "wire": block.wire, "data": dict(block.data)}
    return None


def is_reasoning_like(block: Block) -> bool:
    """Blocks an OpenAI assistant message carries in its reasoning fields."""
    if isinstance(block, OpaqueBlock):
        return block.wire != "openai" or REASONING_DETAILS in block.data
    return isinstance(block, Thinking | RedactedThinking | ServerToolUse | ServerToolResult)
