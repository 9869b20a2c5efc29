"""The egress fetcher against real servers on 127.0.0.1, with a fake DNS in front."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from orcarouter.errors import InvalidRequest
from orcarouter.transport.egress import EgressError, EgressFetcher, EgressPolicy
from tests.unit.transport.conftest import (
    CAP,
    DNS,
    PNG,
    SECRET,
    AddrInfo,
    ConnectSpy,
    FakeLookup,
    FetcherFactory,
    ImageServer,
)

STRICT = EgressPolicy(max_bytes=CAP, timeout=2.0)
# Tests reach 127.0.0.1 through one trusted name while every other name stays guarded.
TRUSTING_IMAGES = EgressPolicy(
    internal_hosts=frozenset({"images.example"}), max_bytes=CAP, timeout=2.0
)


async def test_a_vetted_host_returns_the_png(
    server: ImageServer, make_fetcher: FetcherFactory, connects: ConnectSpy
) -> None:
    lookup = FakeLookup(DNS)
    fetcher = make_fetcher(lookup=lookup)
    image = await fetcher.fetch_image(f"http://images.example:{server.port}/img.png")
    assert image.media_type == "image/png"
    assert image.data == PNG
    # Resolved once, connected to the vetted address, original Host header sent.
    assert lookup.calls == ["images.example"]
    assert connects.addresses == [("127.0.0.1", server.port)]
    assert server.hosts == [f"images.example:{server.port}"]


@dataclass
class RebindingLookup(FakeLookup):
    """Answers a vetted address first and the metadata address on every later question."""

    async def __call__(
        self,
        host: str,
        port: int,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        answer = "127.0.0.1" if not self.calls else "169.254.169.254"
        self.calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]


async def test_dns_rebinding_cannot_swap_the_address_after_the_check(
    server: ImageServer, make_fetcher: FetcherFactory, connects: ConnectSpy
) -> None:
    lookup = RebindingLookup({})
    image = await make_fetcher(lookup=lookup).fetch_image(
        f"http://rebind.example:{server.port}/img.png"
    )
    assert image.data == PNG
    assert lookup.calls == ["rebind.example"]  # one answer, both vetted and connected to
    assert connects.addresses == [("127.0.0.1", server.port)]


async def test_the_media_type_comes_from_the_bytes(
    server: ImageServer, make_fetcher: FetcherFactory
) -> None:
    image = await make_fetcher().fetch_image(f"http://images.example:{server.port}/mislabelled.png")
    assert image.media_type == "image/jpeg"


async def test_an_internal_host_may_resolve_to_a_private_address(
    server: ImageServer, make_fetcher: FetcherFactory
) -> None:
    fetcher = make_fetcher(TRUSTING_IMAGES)
    image = await fetcher.fetch_image(f"http://images.example:{server.port}/img.png")
    assert image.data == PNG


@pytest.mark.parametrize(
    "name",
    [
        "images.example",  # 127.0.0.1
        "ten.example",  # 10.1.2.3
        "meta.example",  # 169.254.169.254
        "v6loop.example",  # ::1
        "mapped.example",  # ::ffff:127.0.0.1
        "mapped-meta.example",
        "cgnat.example",
        "ula.example",
        "mixed.example",  # one public and one loopback answer
    ],
)
async def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(
    name: str, server: ImageServer, make_fetcher: FetcherFactory, connects: ConnectSpy
) -> None:
    fetcher = make_fetcher(STRICT)
    with pytest.raises(EgressError, match=f"refused: {name} resolves to a ") as caught:
        await fetcher.fetch_image(f"http://{name}:{server.port}/img.png")
    assert isinstance(caught.value, InvalidRequest)
    assert caught.value.status == 400
    assert connects.addresses == []
    assert server.hits.total() == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/img.png",
        "http://[::1]:{port}/img.png",
        "http://[::ffff:127.0.0.1]:{port}/img.png",
        "http://10.0.0.1:{port}/img.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://0.0.0.0:{port}/img.png",
    ],
)
async def test_an_ip_literal_is_vetted_too(
    url: str, server: ImageServer, make_fetcher: FetcherFactory, connects: ConnectSpy
) -> None:
    with pytest.raises(EgressError, match=r"refused: .* is a "):
        await make_fetcher(STRICT).fetch_image(url.format(port=server.port))
    assert connects.addresses == []
    assert server.hits.total() == 0


@pytest.mark.parametrize(
    "url", ["http://meta.example/", "http://169.254.169.254/", "http://mapped-meta.example/"]
)
async def test_metadata_stays_refused_when_private_is_allowed(
    url: str, make_fetcher: FetcherFactory, connects: ConnectSpy
) -> None:
    with pytest.raises(EgressError, match="cloud metadata"):
        await make_fetcher().fetch_image(url)
    assert connects.addresses == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://images.example/img.png", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("/img.png", "http:// or https://"),
        ("data:image/png;base64,AAAA", "http:// or https://"),
        ("http://user:pw@images.example/img.png", "credentials"),
        ("http://127.1/", "not a valid URL"),
        ("http://2130706433/", "not a valid URL"),
        ("http://unknown.example/img.png", "cannot resolve the image host unknown.example"),
    ],
)
async def test_bad_urls_are_refused(
    url: str, message: str, make_fetcher: FetcherFactory, connects: ConnectSpy
) -> None:
    with pytest.raises(EgressError, match=message):
        await make_fetcher(STRICT).fetch_image(url)
    assert connects.addresses == []


async def test_redirects_are_followed_up_to_three_times(
    server: ImageServer, make_fetcher: FetcherFactory
) -> None:
    fetcher = make_fetcher(TRUSTING_IMAGES)
    image = await fetcher.fetch_image(f"http://images.example:{server.port}/hop/3")
    assert image.data == PNG
    with pytest.raises(EgressError, match="redirected more than 3 times"):
        await fetcher.fetch_image(f"http://images.example:{server.port}/hop/4")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("http://evil.example:{port}/img.png", "evil.example resolves to a loopback"),
        ("http://ten.example:{port}/img.png", "ten.example resolves to a private"),
        ("http://127.0.0.1:{port}/img.png", "127.0.0.1 is a loopback"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[::ffff:127.0.0.1]:{port}/img.png", "loopback"),
        ("gopher://images.example:{port}/", "http:// or https://"),
    ],
)
async def test_a_redirect_to_a_private_address_is_refused(
    target: str,
    message: str,
    server: ImageServer,
    make_fetcher: FetcherFactory,
    connects: ConnectSpy,
) -> None:
    location = quote(target.format(port=server.port), safe="")
    with pytest.raises(EgressError, match=message):
        await make_fetcher(TRUSTING_IMAGES).fetch_image(
            f"http://images.example:{server.port}/to?location={location}"
        )
    assert server.hits["/img.png"] == 0
    assert connects.addresses == [("127.0.0.1", server.port)]  # the first hop only


async def test_a_relative_redirect_is_followed(
    server: ImageServer, make_fetcher: FetcherFactory
) -> None:
    url = f"http://images.example:{server.port}/to?location=%2Fimg.png"
    image = await make_fetcher(TRUSTING_IMAGES).fetch_image(url)
    assert image.data == PNG


async def test_a_redirect_without_location_is_refused(
    server: ImageServer, make_fetcher: FetcherFactory
) -> None:
    with pytest.raises(EgressError, match="without a Location"):
        await make_fetcher().fetch_image(f"http://images.example:{server.port}/nowhere")


async def test_a_declared_oversize_body_is_refused_before_reading(
    server: ImageServer, make_fetcher: FetcherFactory
) -> None:
    with pytest.raises(EgressError, match=f"larger than {CAP} bytes"):
        await make_fetcher().fetch_image(f"http://images.example:{server.port}/big.png")


async def test_an_undeclared_oversize_body_is_cut_at_the_cap(
    server: ImageServer, make_fetcher: FetcherFactory
) -> None:
    started = time.monotonic()
    with pytest.raises(EgressError, match=f"larger than {CAP} bytes"):
        await make_fetcher().fetch_image(f"http://images.example:{server.port}/endless.png")
    assert time.monotonic() - started < 1.5  # the 1 GiB stream was not read to its end


async def test_a_body_of_exactly_the_cap_is_accepted(
    server: ImageServer, make_fetcher: FetcherFactory
) -> None:
    image = await make_fetcher().fetch_image(f"http://images.example:{server.port}/exact.png")
    assert len(image.data) == CAP


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/page.html", "sent text/html, not a PNG, JPEG, GIF or WebP image"),
        ("/drawing.svg", "sent image/svg\\+xml, not a PNG"),
        ("/fake.png", "body from images.example is not a PNG, JPEG, GIF or WebP image"),
        ("/gzipped.png", "content encoding 'gzip'"),
        ("/missing.png", "answered the image URL with HTTP 404"),
    ],
)
async def test_non_images_are_refused_without_echoing_the_body(
    path: str, message: str, server: ImageServer, make_fetcher: FetcherFactory
) -> None:
    with pytest.raises(EgressError, match=message) as caught:
        await make_fetcher().fetch_image(f"http://images.example:{server.port}{path}")
    assert SECRET not in caught.value.message
    assert SECRET not in caught.value.openai_body().decode()


@pytest.mark.parametrize("path", ["/slow.png", "/drip.png"])
async def test_a_slow_server_hits_the_total_timeout(
    path: str, server: ImageServer, make_fetcher: FetcherFactory
) -> None:
    fetcher = make_fetcher(EgressPolicy(allow_private=True, timeout=0.3))
    started = time.monotonic()
    with pytest.raises(EgressError, match=r"longer than 0\.3 s"):
        await fetcher.fetch_image(f"http://images.example:{server.port}{path}")
    assert time.monotonic() - started < 1.5


async def test_a_refused_port_is_reported_as_unreachable(make_fetcher: FetcherFactory) -> None:
    with pytest.raises(EgressError, match=r"cannot connect to the image host images\.example"):
        await make_fetcher().fetch_image("http://images.example:9/img.png")


async def test_tls_is_verified_against_the_original_host_name(
    tls_server: ImageServer, make_fetcher: FetcherFactory, client_tls: ssl.SSLContext
) -> None:
    fetcher = make_fetcher(ssl_context=client_tls)
    image = await fetcher.fetch_image(f"https://images.example:{tls_server.port}/img.png")
    assert image.data == PNG
    # Same pinned address, another name: the certificate does not match it.
    with pytest.raises(EgressError, match="TLS verification failed for the image host other"):
        await fetcher.fetch_image(f"https://other.example:{tls_server.port}/img.png")
    assert tls_server.hits["/img.png"] == 1


async def test_a_redirect_from_https_to_http_is_refused(
    tls_server: ImageServer,
    server: ImageServer,
    make_fetcher: FetcherFactory,
    client_tls: ssl.SSLContext,
) -> None:
    location = quote(f"http://images.example:{server.port}/img.png", safe="")
    with pytest.raises(EgressError, match="from https to plain http"):
        await make_fetcher(ssl_context=client_tls).fetch_image(
            f"https://images.example:{tls_server.port}/to?location={location}"
        )
    assert server.hits.total() == 0


async def test_close_is_idempotent() -> None:
    fetcher = EgressFetcher(STRICT, lookup=FakeLookup(DNS))
    await fetcher.close()
    await fetcher.close()
