"""Inlining remote image URLs of a canonical request, with a fake fetch and a real one."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from orcarouter.canonical import (
    Base64Source,
    Block,
    Document,
    Image,
    Message,
    Request,
    Text,
    ToolResult,
    ToolUse,
    UrlSource,
)
from orcarouter.translate.remote_images import (
    RemoteImageLimitExceeded,
    inline_remote_images,
    needs_inlining,
    remote_image_urls,
)
from orcarouter.transport.egress import EgressError
from tests.unit.transport.conftest import PNG, FetcherFactory, ImageServer

INLINE = Base64Source(media_type="image/png", data="iVBORw0KGgo=")


@dataclass(frozen=True)
class Fetched:
    media_type: str
    data: bytes


@dataclass
class FakeFetch:
    """Returns ``b"<url>"`` as a PNG; tracks calls, concurrency, failures and cancellations."""

    delay: float = 0.0
    fail: frozenset[str] = frozenset()
    slow: frozenset[str] = frozenset()
    calls: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    most_in_flight: int = 0
    cancelled: list[str] = field(default_factory=list)

    async def __call__(self, url: str) -> Fetched:
        self.calls[url] += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(10 if url in self.slow else self.delay)
            if url in self.fail:
                raise EgressError(f"refused {url}")
            return Fetched("image/png", url.encode())
        except asyncio.CancelledError:
            self.cancelled.append(url)
            raise
        finally:
            self.in_flight -= 1


def url_image(
    url: str, *, detail: str | None = None, cache_control: Mapping[str, Any] | None = None
) -> Image:
    return Image(source=UrlSource(url=url), detail=detail, cache_control=cache_control)


def inline_of(url: str) -> Base64Source:
    return Base64Source(media_type="image/png", data=base64.b64encode(url.encode()).decode())


def request_of(*contents: tuple[Block, ...]) -> Request:
    return Request(model="m", messages=tuple(Message(role="user", content=c) for c in contents))


def test_needs_inlining_only_for_http_urls() -> None:
    assert not needs_inlining(request_of((Text(text="hi"),)))
    assert not needs_inlining(request_of((Image(source=INLINE),)))
    assert not needs_inlining(request_of((url_image("data:image/png;base64,AAAA"),)))
    assert not needs_inlining(request_of((url_image("gs://bucket/cat.png"),)))
    doc = Document(source=UrlSource(url="https://example.com/a.pdf"))
    assert not needs_inlining(request_of((doc,)))
    assert needs_inlining(request_of((Text(text="x"), url_image("https://example.com/a.png"))))
    assert needs_inlining(request_of((url_image("HTTP://EXAMPLE.COM/A.PNG"),)))
    nested = ToolResult(tool_use_id="t1", content=(url_image("http://example.com/n.png"),))
    assert needs_inlining(request_of((nested,)))


async def test_remote_images_are_inlined_in_place_and_the_rest_is_kept() -> None:
    plain = Message(role="system", content=(Text(text="be brief"),))
    untouched = (url_image("data:image/png;base64,AAAA"), url_image("gs://b/c.png"))
    first = url_image("https://a.example/1.png", detail="high", cache_control={"type": "x"})
    doc = Document(source=UrlSource(url="https://a.example/d.pdf"))
    user = Message(
        role="user",
        content=(Text(text="look"), first, Image(source=INLINE), *untouched, doc),
        name="alice",
    )
    call = ToolUse(id="t1", name="snap", input={})
    result = ToolResult(
        tool_use_id="t1", content=(Text(text="ok"), url_image("http://b.example/2.png"))
    )
    request = Request(
        model="m",
        messages=(
            plain,
            user,
            Message(role="assistant", content=(call,)),
            Message(role="tool", content=(result,)),
        ),
    )
    fetch = FakeFetch()
    out = await inline_remote_images(request, fetch)

    assert out.messages[0] is plain
    assert out.messages[2] is request.messages[2]
    blocks = out.messages[1].content
    assert blocks[0] == Text(text="look")
    assert blocks[1] == Image(
        source=inline_of("https://a.example/1.png"), detail="high", cache_control={"type": "x"}
    )
    assert blocks[2] == Image(source=INLINE)
    assert blocks[3:5] == untouched
    assert blocks[5] is doc
    assert out.messages[1].name == "alice"
    tool_result = out.messages[3].content[0]
    assert isinstance(tool_result, ToolResult)
    assert tool_result.content[1] == Image(source=inline_of("http://b.example/2.png"))
    assert not needs_inlining(out)
    assert needs_inlining(request)  # the original is unchanged


async def test_equal_urls_are_fetched_once_and_order_is_preserved() -> None:
    urls = [f"https://img.example/{i}.png" for i in range(5)]
    request = request_of(
        tuple(url_image(u) for u in urls),
        (url_image(urls[3]), url_image(urls[0]), Text(text="again")),
    )
    assert remote_image_urls(request) == urls
    fetch = FakeFetch(delay=0.01)
    out = await inline_remote_images(request, fetch)
    assert fetch.calls == Counter(dict.fromkeys(urls, 1))
    sources = [b.source for m in out.messages for b in m.content if isinstance(b, Image)]
    assert sources == [inline_of(u) for u in [*urls, urls[3], urls[0]]]


async def test_fetches_run_concurrently_but_bounded() -> None:
    request = request_of(tuple(url_image(f"https://img.example/{i}.png") for i in range(10)))
    fetch = FakeFetch(delay=0.05)
    await inline_remote_images(request, fetch, concurrency=4)
    assert fetch.most_in_flight == 4
    fetch = FakeFetch(delay=0.05)
    await inline_remote_images(request, fetch, concurrency=1)
    assert fetch.most_in_flight == 1


async def test_too_many_images_is_an_error_before_any_fetch() -> None:
    request = request_of(tuple(url_image(f"https://img.example/{i}.png") for i in range(21)))
    fetch = FakeFetch()
    with pytest.raises(RemoteImageLimitExceeded, match="at most 20 images by URL"):
        await inline_remote_images(request, fetch)
    assert not fetch.calls
    # Repeats of one URL count once.
    same = request_of(tuple(url_image("https://img.example/x.png") for _ in range(30)))
    await inline_remote_images(same, FakeFetch())


async def test_the_total_size_is_capped() -> None:
    request = request_of(tuple(url_image(f"https://img.example/{i}.png") for i in range(3)))
    with pytest.raises(RemoteImageLimitExceeded, match="more than 50 bytes"):
        await inline_remote_images(request, FakeFetch(), max_total_bytes=50)


async def test_a_fetch_error_propagates_and_cancels_the_others() -> None:
    urls = [f"https://img.example/{i}.png" for i in range(4)]
    request = request_of(tuple(url_image(u) for u in urls))
    fetch = FakeFetch(fail=frozenset({urls[1]}), slow=frozenset({urls[2], urls[3]}))
    with pytest.raises(EgressError, match=f"refused {urls[1]}"):
        await asyncio.wait_for(inline_remote_images(request, fetch), timeout=2)
    assert sorted(fetch.cancelled) == urls[2:]
    assert fetch.in_flight == 0


async def test_cancelling_the_caller_cancels_the_fetches() -> None:
    urls = [f"https://img.example/{i}.png" for i in range(3)]
    fetch = FakeFetch(slow=frozenset(urls))
    task = asyncio.create_task(inline_remote_images(request_of(tuple(map(url_image, urls))), fetch))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(fetch.cancelled) == urls
    assert fetch.in_flight == 0


async def test_a_request_without_remote_images_is_returned_as_is() -> None:
    request = request_of((Text(text="hi"), Image(source=INLINE)))
    fetch = FakeFetch()
    assert await inline_remote_images(request, fetch) is request
    assert not fetch.calls


async def test_inlining_through_the_egress_fetcher(
    server: ImageServer, make_fetcher: FetcherFactory
) -> None:
    url = f"http://images.example:{server.port}/img.png"
    request = request_of((Text(text="what is this?"), url_image(url), url_image(url)))
    out = await inline_remote_images(request, make_fetcher().fetch_image)
    expected = Image(
        source=Base64Source(media_type="image/png", data=base64.b64encode(PNG).decode())
    )
    assert out.messages[0].content[1:] == (expected, expected)
    assert server.hits["/img.png"] == 1
    bad = request_of((url_image(f"http://images.example:{server.port}/page.html"),))
    with pytest.raises(EgressError, match="not a PNG"):
        await inline_remote_images(bad, make_fetcher().fetch_image)
