"""Remote image URLs in a canonical request, fetched and inlined as base64 data.

Anthropic Messages (``source.type: "url"``) and OpenAI (``image_url``) take http(s) image URLs
as they are; a target that needs the bytes inline (Gemini ``inlineData``) gets a copy of the
request in which every remote image is replaced by what ``fetch`` returned. This module only
walks and rewrites the request: the fetching, with its SSRF guard, is the caller's
``fetch`` (``orcarouter.transport.egress.EgressFetcher.fetch_image``).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Protocol, TypeAlias

from orcarouter.canonical import Base64Source, Block, Image, Message, Request, ToolResult, UrlSource

MAX_REMOTE_IMAGES = 20
FETCH_CONCURRENCY = 4
MAX_TOTAL_BYTES = 48 * 1024 * 1024
"""Fetched bytes per request; base64 makes 64 MiB of them in the upstream body."""


class RemoteImage(Protocol):
    """What ``fetch`` returns (``transport.egress.FetchedImage`` has this shape)."""

    @property
    def media_type(self) -> str:
        """The image's MIME type."""
        ...

    @property
    def data(self) -> bytes:
        """The image's bytes."""
        ...


ImageFetch: TypeAlias = Callable[[str], Awaitable[RemoteImage]]


class RemoteImageLimitExceeded(ValueError):
    """The request names more remote images, or more image bytes, than one request may."""


def is_remote_url(url: str) -> bool:
    """True for an ``http://`` or ``https://`` URL (any letter case)."""
    return url[:8].lower().startswith(("http://", "https://"))


def _remote_url(block: Block) -> str | None:
    if isinstance(block, Image) and isinstance(block.source, UrlSource):
        url = block.source.url
        return url if is_remote_url(url) else None
    return None


def _blocks(blocks: Sequence[Block]) -> Iterator[Block]:
    """Every block, tool results' nested content included."""
    for block in blocks:
        yield block
        if isinstance(block, ToolResult):
            yield from _blocks(block.content)


def _remote_urls(request: Request) -> Iterator[str]:
    for message in request.messages:
        for block in _blocks(message.content):
            url = _remote_url(block)
            if url is not None:
                yield url


def needs_inlining(request: Request) -> bool:
    """True when any image in the request is given by an http(s) URL."""
    return next(_remote_urls(request), None) is not None


def remote_image_urls(request: Request) -> list[str]:
    """The distinct remote image URLs, in the order they first appear."""
    return list(dict.fromkeys(_remote_urls(request)))


async def inline_remote_images(
    request: Request,
    fetch: ImageFetch,
    *,
    max_images: int = MAX_REMOTE_IMAGES,
    concurrency: int = FETCH_CONCURRENCY,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Request:
    """A copy of ``request`` whose remote images are inline base64 data.

    Each distinct URL is fetched once, at most ``concurrency`` at a time. More than
    ``max_images`` distinct URLs, or more than ``max_total_bytes`` fetched, raise
    ``RemoteImageLimitExceeded``; the first error of ``fetch`` is raised as it is and the
    other fetches are cancelled. Everything else (data URLs, ``gs://`` and Files API URIs,
    documents, block order, ``detail``, ``cache_control``, extras) is kept.
    """
    urls = remote_image_urls(request)
    if not urls:
        return request
    if len(urls) > max_images:
        raise RemoteImageLimitExceeded(
            f"a request may give at most {max_images} images by URL, this one gives {len(urls)}"
        )
    sources = await _fetch_all(urls, fetch, concurrency, max_total_bytes)
    return replace(request, messages=tuple(_inline_message(m, sources) for m in request.messages))


async def _fetch_all(
    urls: Sequence[str], fetch: ImageFetch, concurrency: int, max_total_bytes: int
) -> dict[str, Base64Source]:
    gate = asyncio.Semaphore(concurrency)
    total = 0

    async def one(url: str) -> Base64Source:
        nonlocal total
        async with gate:
            image = await fetch(url)
        total += len(image.data)
        if total > max_total_bytes:
            raise RemoteImageLimitExceeded(
                f"the images given by URL add up to more than {max_total_bytes} bytes"
            )
        return Base64Source(
            media_type=image.media_type, data=base64.b64encode(image.data).decode("ascii")
        )

    tasks = [asyncio.create_task(one(url)) for url in urls]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:  # the first failure in request order
        error = task.exception() if task in done else None
        if error is not None:
            raise error
    return {url: task.result() for url, task in zip(urls, tasks, strict=True)}


def _inline_message(message: Message, sources: dict[str, Base64Source]) -> Message:
    content = _inline_blocks(message.content, sources)
    return message if content is message.content else replace(message, content=content)


def _inline_blocks(
    blocks: tuple[Block, ...], sources: dict[str, Base64Source]
) -> tuple[Block, ...]:
    """``blocks`` with remote images inlined; the same tuple when nothing changed."""
    out = tuple(_inline_block(block, sources) for block in blocks)
    changed = any(new is not old for new, old in zip(out, blocks, strict=True))
    return out if changed else blocks


def _inline_block(block: Block, sources: dict[str, Base64Source]) -> Block:
    url = _remote_url(block)
    if url is not None and isinstance(block, Image):
        return replace(block, source=sources[url])
    if isinstance(block, ToolResult):
        content = _inline_blocks(block.content, sources)
        return block if content is block.content else replace(block, content=content)
    return block
