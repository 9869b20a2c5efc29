"""A key's limits (model allow-list, IP/CIDR allow-list, USD cap, expiry, rate limits) and the
rules on them.

Model patterns are provider/model ids where ``*`` matches any run of characters; no other
wildcard exists, so one pattern lies within another exactly when the outer one matches the
inner one's text (see ``pattern_within``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_PATTERNS = 200
MAX_NETWORKS = 200
MAX_USD_CAP_MICROS = 10**15  # a billion dollars: a bound that keeps integers sane everywhere
MAX_RATE_LIMIT = 10**9  # per minute or concurrent: fits the 32-bit columns
RATE_LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "concurrency_limit")
_MODEL_PATTERN = re.compile(r"^[A-Za-z0-9._:/@+\-*]{1,200}$")


class LimitError(ValueError):
    """A limit is malformed."""


class GrantExceeded(LimitError):
    """A limit lies outside what the caller holds and so may grant."""


def validate_model_pattern(pattern: str) -> str:
    """The pattern itself, or ``LimitError`` if it holds characters a model id never has."""
    if not _MODEL_PATTERN.fullmatch(pattern):
        raise LimitError(
            f"model pattern {pattern!r} may hold only letters, digits, '._:/@+-' and '*'"
        )
    return pattern


def parse_network(value: str) -> IPNetwork:
    """An IPv4 or IPv6 address or CIDR as a network (a bare address is a /32 or /128)."""
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise LimitError(f"{value!r} is not an IP address or CIDR block") from None


def compile_patterns(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regex matching any of the patterns in full."""
    parts = [".*".join(re.escape(piece) for piece in p.split("*")) for p in patterns]
    if not parts:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile("|".join(f"(?:{part})" for part in parts))


def pattern_within(inner: str, outer: str) -> bool:
    """Whether every model ``inner`` matches is matched by ``outer``."""
    return compile_patterns([outer]).fullmatch(inner) is not None


def client_address(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The caller's address; an IPv4-mapped IPv6 address counts as the IPv4 one."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """What a key may do, as granted: a child key's limits must lie within its creator's."""

    role: str
    model_limits_enabled: bool = False
    model_limits: tuple[str, ...] = ()
    allow_ips: tuple[str, ...] = ()
    usd_cap_micros: int | None = None
    expires_at: datetime | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    concurrency_limit: int | None = None


def validate_rate_limit(name: str, value: int | None) -> int | None:
    """A rate limit as given, or ``LimitError`` outside 1..``MAX_RATE_LIMIT`` (None: none)."""
    if value is not None and not 1 <= value <= MAX_RATE_LIMIT:
        raise LimitError(f"{name} must be between 1 and {MAX_RATE_LIMIT}, or null for none")
    return value


def check_within(child: KeyLimits, parent: KeyLimits, at_most_role: bool) -> None:
    """Raise ``LimitError`` unless ``child`` grants nothing ``parent`` lacks.

    ``at_most_role`` is the role comparison, done by the caller's policy.
    """
    if not at_most_role:
        raise GrantExceeded(f"role '{child.role}' is above the caller's role '{parent.role}'")
    if parent.model_limits_enabled:
        if not child.model_limits_enabled:
            raise GrantExceeded("the new key must have a model allow-list within the caller's")
        for pattern in child.model_limits:
            if not any(pattern_within(pattern, own) for own in parent.model_limits):
                raise GrantExceeded(f"model pattern {pattern!r} is outside the caller's models")
    if parent.allow_ips:
        if not child.allow_ips:
            raise GrantExceeded("the new key must have an IP allow-list within the caller's")
        own = [parse_network(v) for v in parent.allow_ips]
        for value in child.allow_ips:
            if not _network_within(parse_network(value), own):
                raise GrantExceeded(f"IP range {value!r} is outside the caller's allow-list")
    if parent.usd_cap_micros is not None and (
        child.usd_cap_micros is None or child.usd_cap_micros > parent.usd_cap_micros
    ):
        raise GrantExceeded("the new key's USD cap must be set and at most the caller's")
    if parent.expires_at is not None and (
        child.expires_at is None or child.expires_at > parent.expires_at
    ):
        raise GrantExceeded("the new key must expire no later than the caller's key")
    for name in RATE_LIMIT_FIELDS:
        own, wanted = getattr(parent, name), getattr(child, name)
        if own is not None and (wanted is None or wanted > own):
            raise GrantExceeded(f"the new key's {name} must be set and at most the caller's")


def _network_within(network: IPNetwork, parents: list[IPNetwork]) -> bool:
    for parent in parents:
        if network.version == parent.version and network.subnet_of(parent):  # type: ignore[arg-type]
            return True
    return False
