"""Small helpers for the Gemini REST wire: field spelling, signatures, base64.

The REST API is protobuf JSON: it accepts camelCase and snake_case field names alike (the
recordings hold both, e.g. ``parameters_json_schema``), so readers try both spellings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from orcarouter.canonical import GEMINI_THINKING_FORMAT
from orcarouter.translate import signatures
from orcarouter.translate.signatures import FOREIGN_SIGNATURE_PREFIX, wrap_signature

__all__ = [
    "DUMMY_SIGNATURE",
    "ERROR_STATUSES",
    "ERROR_TYPES",
    "FOREIGN_SIGNATURE_PREFIX",
    "GEMINI_THINKING_FORMAT",
    "get",
    "mapping",
    "snake",
    "standard_base64",
    "unwrap_signature",
    "wrap_signature",
]

DUMMY_SIGNATURE: Final = "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I="
"""base64 of ``skip_thought_signature_validator``: the documented stand-in for history that
has no Gemini signature (https://ai.google.dev/gemini-api/docs/thought-signatures)."""


def unwrap_signature(value: str) -> tuple[str, str | None]:
    """``(signature, format)`` of a ``thoughtSignature``: Gemini's own or a wrapped one.

    Another vendor's signature reaches a Gemini-dialect client wrapped (``wrap_signature``,
    translate/signatures.py), so it returns to its vendor intact and never reaches Gemini.
    """
    return signatures.unwrap_signature(value, GEMINI_THINKING_FORMAT)


def snake(camel: str) -> str:
    """``thoughtSignature`` → ``thought_signature``."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def get(data: Mapping[str, Any], camel: str) -> Any:
    """A field by its camelCase name, or its snake_case spelling when only that is present."""
    if camel in data:
        return data[camel]
    return data.get(snake(camel))


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def standard_base64(data: str) -> str:
    """Gemini accepts URL-safe, unpadded base64; other wires need the standard alphabet."""
    cleaned = data.replace("-", "+").replace("_", "/")
    return cleaned + "=" * (-len(cleaned) % 4)


ERROR_TYPES: Final = {
    "INVALID_ARGUMENT": "invalid_request_error",
    "FAILED_PRECONDITION": "invalid_request_error",
    "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "NOT_FOUND": "not_found_error",
    "RESOURCE_EXHAUSTED": "rate_limit_error",
    "DEADLINE_EXCEEDED": "timeout_error",
    "UNAVAILABLE": "overloaded_error",
    "INTERNAL": "api_error",
}
"""Gemini error ``status`` → Anthropic error type (the canonical ``StreamError.type``).

https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes
"""

ERROR_STATUSES: Final = {
    "invalid_request_error": (400, "INVALID_ARGUMENT"),
    "authentication_error": (401, "UNAUTHENTICATED"),
    "permission_error": (403, "PERMISSION_DENIED"),
    "not_found_error": (404, "NOT_FOUND"),
    "rate_limit_error": (429, "RESOURCE_EXHAUSTED"),
    "timeout_error": (504, "DEADLINE_EXCEEDED"),
    "overloaded_error": (503, "UNAVAILABLE"),
}
"""Anthropic error type → Gemini ``(code, status)``; anything else is ``(500, INTERNAL)``."""
