"""One pooled aiohttp session for all upstream traffic, with four timeouts per target.

aiohttp's client costs a tenth of httpx's per request on this path (DESIGN.md §4). Foreign
exceptions stop here: callers see only the gateway's ``Upstream*`` errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp

from orcarouter.errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from orcarouter.settings import TimeoutsConfig

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What to send: the URL and headers come from operator config, the body is prepared."""

    url: str
    headers: Mapping[str, str]
    body: bytes
    timeouts: TimeoutsConfig


class UpstreamResponse:
    """A response whose headers have arrived; read the body whole or as a stream."""

    __slots__ = ("_response", "_timeouts", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, timeouts: TimeoutsConfig) -> None:
        self._response = response
        self._timeouts = timeouts
        self.status = response.status
        self.headers = response.headers

    @property
    def is_event_stream(self) -> bool:
        """True when the upstream answered with Server-Sent Events."""
        return self.headers.get("content-type", "").startswith("text/event-stream")

    @property
    def at_end(self) -> bool:
        """True once the whole body has arrived (what is left to read is buffered already)."""
        return self._response.content.at_eof()

    async def read(self, limit: int = MAX_RESPONSE_BYTES) -> bytes:
        """The whole (decoded) body, refusing bodies over ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.iter_chunks():
            size += len(chunk)
            if size > limit:
                raise UpstreamProtocolError(f"upstream response exceeded {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; a gap longer than the idle timeout raises."""
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream sent nothing for {self._timeouts.idle:g} s") from exc
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamProtocolError(f"upstream body was malformed: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnreachable(f"upstream connection failed mid-response: {exc}") from exc

    def close(self) -> None:
        """Drop the connection (used when the client went away or the body is not wanted)."""
        self._response.close()

    def release(self) -> None:
        """Return a fully read connection to the pool."""
        self._response.release()


class UpstreamClient:
    """The pooled outbound client; create inside the running event loop."""

    def __init__(self, *, limit: int = 1000, keepalive: float = 30.0) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=limit, keepalive_timeout=keepalive, ttl_dns_cache=300
            ),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """POST the request and wait for the response headers (the first-byte timeout)."""
        timeouts = request.timeouts
        client_timeout = aiohttp.ClientTimeout(
            total=timeouts.total, sock_connect=timeouts.connect, sock_read=timeouts.idle
        )
        try:
            async with asyncio.timeout(timeouts.first_byte):
                response = await self._session.post(
                    request.url,
                    data=request.body,
                    headers=dict(request.headers),
                    timeout=client_timeout,
                    allow_redirects=False,
                )
        except TimeoutError as exc:
            raise UpstreamTimeout("upstream did not answer in time") from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnreachable(f"cannot connect to upstream: {exc.os_error}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnreachable(f"upstream connection failed: {exc}") from exc
        return UpstreamResponse(response, timeouts)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._session.close()
