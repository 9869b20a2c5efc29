"""Which resolved addresses the egress guard lets through (pure checks, no network)."""

from __future__ import annotations

import ipaddress

import pytest

from orcarouter.transport.egress import (
    EgressPolicy,
    is_cloud_metadata,
    non_public_reason,
    sniff_image,
)
from tests.unit.transport.conftest import JPEG, PNG

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.0.1",
    "169.254.169.254",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "0.0.0.0",  # noqa: S104 (an address under test, not a bind)
    "0.1.2.3",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.0.1",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "198.51.100.1",
    "203.0.113.1",
    "::1",
    "::",
    "fe80::1",
    "fe80::1%1",
    "fec0::1",  # site-local
    "fc00::1",  # unique-local
    "fd12:3456:789a::1",
    "ff02::1",  # multicast
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:192.168.0.1",
    "::ffff:100.64.0.1",
    "::ffff:0.0.0.0",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2001::1",  # Teredo
    "2001:db8::1",  # documentation
    "100::1",  # discard
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "2002:808:808::1",
    "64:ff9b::808:808",
]

METADATA = [
    "169.254.169.254",
    "169.254.170.2",
    "168.63.129.16",
    "100.100.100.200",
    "fd00:ec2::254",
    "::ffff:169.254.169.254",
    "::ffff:168.63.129.16",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1",
]


@pytest.mark.parametrize("text", REFUSED)
def test_non_public_addresses_are_refused(text: str) -> None:
    address = ipaddress.ip_address(text)
    assert non_public_reason(address) is not None
    reason = EgressPolicy().refusal("images.example", address)
    assert reason is not None
    assert reason.startswith("images.example resolves to a ")


@pytest.mark.parametrize("text", ALLOWED)
def test_public_addresses_are_allowed(text: str) -> None:
    address = ipaddress.ip_address(text)
    assert non_public_reason(address) is None
    assert EgressPolicy().refusal("images.example", address) is None


@pytest.mark.parametrize("text", METADATA)
def test_metadata_addresses_are_refused_even_when_private_is_allowed(text: str) -> None:
    address = ipaddress.ip_address(text)
    assert is_cloud_metadata(address)
    reason = EgressPolicy(allow_private=True).refusal("169.254.169.254", address)
    assert reason == "169.254.169.254 is a cloud metadata address"


@pytest.mark.parametrize("text", ["127.0.0.1", "10.0.0.1", "::1", "fd12::1", "100.64.0.1"])
def test_allow_private_lets_private_addresses_through(text: str) -> None:
    assert EgressPolicy(allow_private=True).refusal("h", ipaddress.ip_address(text)) is None


def test_internal_hosts_allow_private_addresses_for_listed_names_only() -> None:
    policy = EgressPolicy(internal_hosts=frozenset({"images.corp", "*.cdn.corp"}))
    loopback = ipaddress.ip_address("10.0.0.7")
    assert policy.refusal("images.corp", loopback) is None
    assert policy.refusal("IMAGES.corp.", loopback) is None
    assert policy.refusal("a.cdn.corp", loopback) is None
    assert policy.refusal("cdn.corp", loopback) is not None
    assert policy.refusal("evil-cdn.corp", loopback) is not None
    assert policy.refusal("other.corp", loopback) is not None
    metadata = ipaddress.ip_address("169.254.169.254")
    assert policy.refusal("images.corp", metadata) is not None


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"GIF87a\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"<html>", None),
        (b"", None),
    ],
)
def test_sniff_image(head: bytes, expected: str | None) -> None:
    assert sniff_image(head) == expected
