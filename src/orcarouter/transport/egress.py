"""The egress guard: fetch client-supplied URLs (remote images) without opening an SSRF hole.

A client may put any URL in a chat request. Before a byte leaves the gateway the host name is
resolved once, and the fetch is refused when any answer is not a public address (loopback,
RFC 1918, link-local and cloud metadata, CGNAT, unique-local, multicast, reserved, and IPv6
forms that embed such an IPv4). The connection then goes to a vetted address only: the
resolver below *is* the one aiohttp connects with, so a DNS answer that changes between the
check and the connect (rebinding) never reaches a socket. Host header, SNI and certificate
checks still use the original name. Redirects are followed by hand and vetted hop by hop;
body size, time and content type are capped. This session is separate from the upstream pool.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from orcarouter.errors import InvalidRequest

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_REDIRECTS = 3
READ_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NUMERIC_FLAGS = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV

# Declared types we accept; ``image/jpg`` is a common misspelling of ``image/jpeg``.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp"})

# Metadata and credential endpoints stay blocked even when private addresses are allowed;
# 168.63.129.16 (Azure WireServer) is a public address, so only this list catches it.
CLOUD_METADATA = frozenset(
    ipaddress.ip_address(ip)
    for ip in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack …
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS Pod Identity
        "168.63.129.16",  # Azure WireServer
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud Classic
        "169.254.42.42",  # Scaleway
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS Pod Identity over IPv6
        "fd20:ce::254",  # GCP IPv6-only instances
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix


class EgressError(InvalidRequest):
    """A client-supplied URL was refused or could not be fetched.

    The message names the host and the reason, never the response body.
    """

    code = "image_fetch_failed"


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """What client-supplied fetches may do (operator configuration).

    ``allow_private`` lets every host resolve to private addresses; ``internal_hosts`` allows
    it for the listed names only (exact names, or ``*.corp.example`` for subdomains). Cloud
    metadata addresses are refused either way.
    """

    allow_private: bool = False
    internal_hosts: frozenset[str] = frozenset()
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = DEFAULT_TIMEOUT
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    def may_be_private(self, host: str) -> bool:
        """True when ``host`` may resolve to a non-public address."""
        if self.allow_private:
            return True
        name = host.rstrip(".").lower()
        return any(
            name == entry or (entry.startswith("*.") and name.endswith(entry[1:]))
            for entry in (e.lower() for e in self.internal_hosts)
        )

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why ``host`` may not be reached at ``address``; ``None`` when it may."""
        verb = "is" if parse_ip(host) is not None else "resolves to"
        if is_cloud_metadata(address):
            return f"{host} {verb} a cloud metadata address"
        reason = non_public_reason(address)
        if reason is None or self.may_be_private(host):
            return None
        return f"{host} {verb} a {reason} address"


@dataclass(frozen=True, slots=True)
class FetchedImage:
    """An image's bytes and its media type, as sniffed from the bytes."""

    media_type: str
    data: bytes = field(repr=False)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 an IPv6 transition form routes to (mapped, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(address.packed[12:])
    return None


def is_cloud_metadata(address: IPAddress) -> bool:
    """True for a cloud metadata endpoint, also when wrapped in an IPv6 transition form."""
    if address in CLOUD_METADATA:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        return inner is not None and inner in CLOUD_METADATA
    return False


def non_public_reason(address: IPAddress) -> str | None:
    """Which kind of non-public address this is; ``None`` for a globally routable one."""
    site_local = False
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return non_public_reason(inner)
        site_local = address.is_site_local  # fec0::/10, deprecated but still routed locally
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("site-local", site_local),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-global", not address.is_global),  # CGNAT 100.64/10, Teredo, documentation …
    )
    return next((name for name, hit in checks if hit), None)


def parse_ip(text: str) -> IPAddress | None:
    """``text`` as an IP address (IPv6 may carry a ``%scope``), ``None`` for a host name."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class AddressLookup(Protocol):
    """``loop.getaddrinfo``'s shape; tests inject a fake one."""

    async def __call__(
        self,
        host: str,
        port: int,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Sequence[tuple[int, int, int, str, tuple[Any, ...]]]: ...


class _Refused(OSError):
    """Raised inside the resolver; aiohttp wraps it, ``EgressFetcher`` unwraps it."""


class VettingResolver(AbstractResolver):
    """Resolves once and returns only vetted addresses: the connector connects to these."""

    def __init__(self, policy: EgressPolicy, lookup: AddressLookup | None = None) -> None:
        self._policy = policy
        self._lookup = lookup

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Every address ``host`` resolves to, or ``_Refused`` when any one is not allowed."""
        lookup = self._lookup or asyncio.get_running_loop().getaddrinfo
        infos = await lookup(host, port, family=family, type=socket.SOCK_STREAM)
        results: list[ResolveResult] = []
        for info_family, _, proto, _, sockaddr in infos:
            text = str(sockaddr[0])
            address = parse_ip(text)
            if address is None:
                raise _Refused(f"{host} resolved to something that is not an IP address")
            reason = self._policy.refusal(host, address)
            if reason is not None:
                raise _Refused(reason)
            results.append(
                ResolveResult(
                    hostname=host,
                    host=text,
                    port=int(sockaddr[1]),
                    family=info_family,
                    proto=proto,
                    flags=_NUMERIC_FLAGS,
                )
            )
        if not results:
            raise _Refused(f"{host} has no address")
        return results

    async def close(self) -> None:
        """Nothing to release."""


def sniff_image(head: bytes) -> str | None:
    """The media type the magic bytes announce (PNG, JPEG, GIF, WebP), else ``None``."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


class EgressFetcher:
    """Fetches client-supplied image URLs through the guard; create inside the running loop.

    ``lookup`` replaces ``loop.getaddrinfo`` (tests); ``ssl_context`` replaces the system trust
    store (tests, or operators with a private CA).
    """

    def __init__(
        self,
        policy: EgressPolicy | None = None,
        *,
        lookup: AddressLookup | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy or EgressPolicy()
        self._resolver = VettingResolver(self.policy, lookup)
        connector = aiohttp.TCPConnector(
            resolver=self._resolver,
            use_dns_cache=False,  # every new connection is resolved and vetted again
            ssl=ssl_context if ssl_context is not None else True,
            limit=100,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,  # identity only: the size cap counts the bytes we keep
            trust_env=False,  # no proxy from the environment
            timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
            headers={
                "User-Agent": "OrcaRouter-image-fetch",
                "Accept": "image/png, image/jpeg, image/gif, image/webp",
                "Accept-Encoding": "identity",
            },
        )

    async def fetch_image(self, url: str) -> FetchedImage:
        """The image behind ``url``, or ``EgressError`` saying why not."""
        timeout = self.policy.timeout
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(url)
        except TimeoutError as exc:
            raise EgressError(f"fetching the image URL took longer than {timeout:g} s") from exc

    async def close(self) -> None:
        """Close the egress connections."""
        await self._session.close()
        await self._resolver.close()

    async def _follow(self, raw_url: str) -> FetchedImage:
        url = self._checked(raw_url, None)
        for _ in range(self.policy.max_redirects + 1):
            host = url.raw_host or ""
            try:
                async with self._session.get(url, allow_redirects=False) as response:
                    if response.status not in _REDIRECTS:
                        return await self._image(response, host)
                    location = response.headers.get("Location")
                    if not location:
                        raise EgressError(f"{host} answered a redirect without a Location")
                    url = self._checked(url.join(URL(location)), url)
            except TimeoutError:
                raise  # aiohttp's own timeout errors are ClientErrors too: report as timeouts
            except aiohttp.ClientError as exc:
                raise _client_error(exc, host) from exc
            except ValueError as exc:  # yarl refuses a malformed Location
                raise EgressError(f"{host} redirected to an invalid URL") from exc
        raise EgressError(f"the image URL redirected more than {self.policy.max_redirects} times")

    def _checked(self, raw: str | URL, previous: URL | None) -> URL:
        """Scheme, credentials and IP literals (aiohttp does not resolve those) are vetted."""
        try:
            url = raw if isinstance(raw, URL) else URL(raw)
        except (TypeError, ValueError) as exc:
            raise EgressError("the image URL is not a valid URL") from exc
        scheme = url.scheme.lower()
        if scheme not in ("http", "https") or not url.raw_host:
            raise EgressError("image URLs must be absolute http:// or https:// URLs")
        if previous is not None and previous.scheme == "https" and scheme == "http":
            raise EgressError(f"{previous.raw_host} redirected from https to plain http")
        if url.raw_user is not None or url.raw_password is not None:
            raise EgressError("image URLs must not carry credentials")
        host = url.raw_host
        address = parse_ip(host)
        if address is not None:
            reason = self.policy.refusal(host, address)
            if reason is not None:
                raise EgressError(f"image URL refused: {reason}")
        return url

    async def _image(self, response: aiohttp.ClientResponse, host: str) -> FetchedImage:
        if response.status != 200:
            raise EgressError(f"{host} answered the image URL with HTTP {response.status}")
        declared = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if declared not in IMAGE_TYPES:
            raise EgressError(
                f"{host} sent {declared or 'no content type'}, not a PNG, JPEG, GIF or WebP image"
            )
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise EgressError(f"{host} sent the image with content encoding {encoding!r}")
        cap = self.policy.max_bytes
        if response.content_length is not None and response.content_length > cap:
            raise EgressError(f"the image at {host} is larger than {cap} bytes")
        data = await _read_capped(response, cap, host)
        sniffed = sniff_image(data[:16])
        if sniffed is None:
            raise EgressError(f"the body from {host} is not a PNG, JPEG, GIF or WebP image")
        return FetchedImage(media_type=sniffed, data=data)


async def _read_capped(response: aiohttp.ClientResponse, cap: int, host: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > cap:
            raise EgressError(f"the image at {host} is larger than {cap} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _client_error(exc: aiohttp.ClientError, host: str) -> EgressError:
    """aiohttp's error as an ``EgressError``; the refusal from the resolver comes out intact."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, _Refused):
            return EgressError(f"image URL refused: {exc.os_error}")
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return EgressError(f"cannot resolve the image host {host}")
        if isinstance(exc, aiohttp.ClientSSLError):
            return EgressError(f"TLS verification failed for the image host {host}")
        return EgressError(f"cannot connect to the image host {host}")
    if isinstance(exc, aiohttp.InvalidURL):
        return EgressError("the image URL is not a valid URL")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return EgressError(f"{host} sent a malformed image body")
    if isinstance(exc, aiohttp.ClientResponseError):
        return EgressError(f"{host} sent a malformed HTTP response")
    return EgressError(f"fetching the image from {host} failed")
