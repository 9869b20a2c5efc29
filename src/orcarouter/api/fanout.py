"""``n > 1`` for a provider that answers with one choice per request: ``n`` concurrent upstream
requests merged into one OpenAI answer, streams included.

Choice ``i`` is request ``i``'s message; usage is summed (every request paid for its prompt).
A whole answer waits for all ``n``; a stream forwards each request's chunks as they come, with
their choice index rewritten, one summed usage chunk (if the client asked) and one ``[DONE]``.
Any request failing before the first byte fails the whole call (and may fail over); a failure
after it ends the stream with one terminal error event, as for a single stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

import orjson

from orcarouter.api.asgi import Send, respond
from orcarouter.api.relay import (
    Exchange,
    end_with_error,
    failed_attempt,
    forward_events,
    is_retryable_status,
    read_failure,
    relay_error,
)
from orcarouter.canonical import (
    MessageDelta,
    MessageStart,
    MessageStop,
    Response,
    StreamError,
    StreamEvent,
    Usage,
    UsageReport,
)
from orcarouter.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamProtocolError
from orcarouter.metering.usage import UsageRecord
from orcarouter.providers.base import ProviderProtocol
from orcarouter.providers.exchange import Translated
from orcarouter.translate.openai_chat import OpenAIChunkEncoder
from orcarouter.translate.usage import usage_to_openai
from orcarouter.transport.client import UpstreamClient, UpstreamRequest, UpstreamResponse
from orcarouter.wire.sse import SSESplitter, encode_event

MAX_CHOICES: Final = 16  # requests one call may fan out into


def wanted_choices(payload: dict[str, Any]) -> int:
    """The client's ``n`` when it asks for several choices, else 1 (the upstream judges the
    rest, as it would without the gateway)."""
    n = payload.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def needs_fan_out(protocol: ProviderProtocol, n: int, stream: bool) -> bool:
    """Whether ``n`` choices take ``n`` requests to this protocol (400 past the cap)."""
    if n <= 1 or (protocol.streams_multiple_choices if stream else protocol.multiple_choices):
        return False
    if n > MAX_CHOICES:
        raise InvalidRequest(
            f"'n' may be at most {MAX_CHOICES} for models served over the {protocol.name} "
            "protocol (each choice is a separate upstream request)",
            param="n",
        )
    return True


def sum_usage(parts: Sequence[Usage | None]) -> Usage | None:
    """Usage of several requests added up (a counter stays None only if none reported it)."""
    known = [u for u in parts if u is not None]
    if not known:
        return None

    def total(name: str) -> int | None:
        values = [getattr(u, name) for u in known if getattr(u, name) is not None]
        return sum(values) if values else None

    tools: dict[str, int] = {}
    for usage in known:
        for name, count in (usage.server_tool_uses or {}).items():
            tools[name] = tools.get(name, 0) + count
    return Usage(
        input_tokens=sum(u.input_tokens for u in known),
        output_tokens=sum(u.output_tokens for u in known),
        cache_read_tokens=total("cache_read_tokens"),
        cache_write_tokens=total("cache_write_tokens"),
        reasoning_tokens=total("reasoning_tokens"),
        server_tool_uses=tools or None,
    )


def merge_responses(responses: Sequence[Response]) -> Response:
    """One response whose choice ``i`` is response ``i``'s (first) choice."""
    first = responses[0]
    choices = tuple(
        replace(choice, index=i)
        for i, response in enumerate(responses)
        for choice in response.choices[:1]
    )
    usage = sum_usage([r.usage for r in responses])
    return replace(first, choices=choices, usage=usage)


class FanOut:
    """One client call served by ``n`` identical upstream requests."""

    def __init__(
        self,
        client: UpstreamClient,
        protocol: ProviderProtocol,
        plan: Translated,
        request: UpstreamRequest,
        n: int,
        secrets: Sequence[str],
    ) -> None:
        self._client = client
        self._protocol = protocol
        self._plan = plan
        self._request = request
        self._n = n
        self._secrets = secrets

    async def serve(
        self,
        exchange: Exchange,
        record: UsageRecord,
        send: Send,
        *,
        stream: bool,
        include_usage: bool,
        catch: bool,
    ) -> None:
        """Send the ``n`` requests, then answer the client with all of them."""
        responses = await self._open(exchange, record, send, catch)
        if not responses:
            return
        try:
            if stream:
                await self._stream(responses, exchange, record, send, include_usage)
            else:
                await self._whole(responses, exchange, record, send)
        finally:
            for response in responses:
                response.release()  # pooled again when read whole, else closed

    async def _open(
        self, exchange: Exchange, record: UsageRecord, send: Send, catch: bool
    ) -> list[UpstreamResponse]:
        """All ``n`` responses' headers, or the first failure answered (or raised)."""
        sent = [asyncio.ensure_future(self._client.send(self._request)) for _ in range(self._n)]
        try:
            outcomes = await asyncio.gather(*sent, return_exceptions=True)
        except BaseException:
            for task in sent:
                task.cancel()
            for task in sent:
                if task.done() and not task.cancelled() and task.exception() is None:
                    task.result().close()
            raise
        opened = [o for o in outcomes if isinstance(o, UpstreamResponse)]
        problem = next((o for o in outcomes if isinstance(o, BaseException)), None)
        failed = next((r for r in opened if r.status >= 400), None)
        if problem is None and failed is None:
            return opened
        for response in opened:
            if response is not failed:
                response.close()
        if problem is not None:
            if failed is not None:
                failed.close()
            raise problem
        assert failed is not None
        try:
            if catch and is_retryable_status(failed.status):
                failure = await read_failure(failed, self._protocol, self._secrets)
                raise failed_attempt(failure, exchange.dialect)
            await relay_error(failed, self._protocol, exchange, record, send, self._secrets)
        finally:
            failed.close()
        return []

    async def _whole(
        self,
        responses: list[UpstreamResponse],
        exchange: Exchange,
        record: UsageRecord,
        send: Send,
    ) -> None:
        bodies = await asyncio.gather(*(r.read() for r in responses))
        merged = merge_responses([self._plan.read_canonical(raw) for raw in bodies])
        record.status_code = 200
        record.usage, record.upstream_model = merged.usage, merged.model or None
        exchange.committed = exchange.finished = True
        await respond(send, 200, self._plan.render(merged), exchange.headers)

    async def _stream(
        self,
        responses: list[UpstreamResponse],
        exchange: Exchange,
        record: UsageRecord,
        send: Send,
        include_usage: bool,
    ) -> None:
        merger = _ChunkMerger(self._n)
        queue: asyncio.Queue[tuple[int, list[StreamEvent] | BaseException | None]] = asyncio.Queue()
        pumps = [
            asyncio.ensure_future(self._pump(i, response, queue))
            for i, response in enumerate(responses)
        ]
        record.status_code = 200
        try:
            remaining = self._n
            while remaining:
                index, item = await queue.get()
                if item is None:
                    remaining -= 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                out = merger.feed(index, item)
                if out:
                    await forward_events(out, exchange, record, send)
                if merger.error is not None:
                    raise UpstreamError(
                        f"upstream stream {index} failed: {merger.error}", status=502
                    )
            if not merger.complete:
                raise UpstreamProtocolError("an upstream stream ended before it was complete")
            await forward_events([merger.finish(include_usage)], exchange, record, send)
            exchange.finished = True
            await send({"type": "http.response.body", "body": b""})
        except GatewayError as error:
            await end_with_error(error, exchange, record, send)
        finally:
            for pump in pumps:
                pump.cancel()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            record.usage = merger.usage()
            record.upstream_model = merger.model

    async def _pump(
        self,
        index: int,
        response: UpstreamResponse,
        queue: asyncio.Queue[tuple[int, list[StreamEvent] | BaseException | None]],
    ) -> None:
        decoder = self._plan.upstream_decoder()
        splitter = SSESplitter()
        try:
            async for chunk in response.iter_chunks():
                events = [e for sse in splitter.feed(chunk) for e in decoder.feed(sse)]
                if events:
                    queue.put_nowait((index, events))
            tail = splitter.close()
            events = (decoder.feed(tail) if tail is not None else []) + decoder.finish()
            if events:
                queue.put_nowait((index, events))
        except Exception as exc:  # surfaced by the merging loop
            queue.put_nowait((index, exc))
        queue.put_nowait((index, None))


class _ChunkMerger:
    """Each request's canonical events to OpenAI chunks of one stream, choice ``i`` each."""

    def __init__(self, n: int) -> None:
        self._encoders = [OpenAIChunkEncoder(include_usage=False) for _ in range(n)]
        self._usage: list[Usage | None] = [None] * n
        self._stopped = [False] * n
        self._id = ""
        self._created = int(time.time())
        self.model: str | None = None
        self.error: str | None = None

    @property
    def complete(self) -> bool:
        return all(self._stopped)

    def usage(self) -> Usage | None:
        return sum_usage(self._usage)

    def feed(self, index: int, events: list[StreamEvent]) -> list[bytes]:
        out: list[bytes] = []
        for event in events:
            if isinstance(event, MessageStart):
                self.model = self.model or event.model or None
                self._usage[index] = event.usage or self._usage[index]
            elif isinstance(event, (MessageDelta, UsageReport)):
                self._usage[index] = event.usage or self._usage[index]
            elif isinstance(event, MessageStop):
                self._stopped[index] = True
            elif isinstance(event, StreamError):
                self.error = event.message or event.type
                return out
            for chunk in self._encoders[index].feed(event):
                self._id = self._id or str(chunk.get("id") or "")
                chunk["id"] = self._id
                chunk["created"] = self._created
                for choice in chunk.get("choices") or ():
                    choice["index"] = index
                out.append(encode_event(orjson.dumps(chunk)))
        return out

    def finish(self, include_usage: bool) -> bytes:
        out = b""
        usage = self.usage()
        if include_usage and usage is not None:
            chunk = {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self.model or "",
                "choices": [],
                "usage": usage_to_openai(usage),
            }
            out += encode_event(orjson.dumps(chunk))
        return out + b"data: [DONE]\n\n"
