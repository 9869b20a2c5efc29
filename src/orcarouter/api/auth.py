"""Key authentication for the data-plane routes: ``Authorization: Bearer`` or ``x-api-key``."""

from __future__ import annotations

from collections.abc import Mapping

from orcarouter.accounts.keys import KeyCache, Principal
from orcarouter.errors import AuthenticationFailed, ServiceUnavailable
from orcarouter.settings import KEY_PREFIX


def client_ip(scope: Mapping[str, object]) -> str | None:
    """The peer address of the connection (no proxy header is trusted)."""
    client = scope.get("client")
    if isinstance(client, (tuple, list)) and client:
        return str(client[0])
    return None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The key from ``Authorization: Bearer`` or, as the Anthropic SDK sends it, ``x-api-key``."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key") or None


async def authenticate(keys: KeyCache, headers: Mapping[str, str]) -> Principal:
    """The caller's principal; 401 for a missing or unknown key, 503 if keys cannot be checked."""
    token = bearer_token(headers)
    if token is None:
        raise AuthenticationFailed(
            "missing API key: send 'Authorization: Bearer sk-orca-…' or 'x-api-key'"
        )
    if not token.startswith(KEY_PREFIX):
        raise AuthenticationFailed("invalid API key")
    principal = await keys.lookup_or_refresh(token)
    if principal is not None:
        return principal
    if not keys.healthy:  # fail closed: an unknown key is never let through
        raise ServiceUnavailable("API keys cannot be verified right now; retry shortly")
    raise AuthenticationFailed("invalid API key")
