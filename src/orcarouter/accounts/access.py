"""The key's own checks on the inference path: pure, from the cached principal, no I/O.

The IP allow-list comes first (403 ``access_denied`` before anything else, as the hosted
product does), then the model allow-list (a switch that is on with an empty list allows no
model at all).
"""

from __future__ import annotations

import re

from orcarouter.accounts.keys import Principal
from orcarouter.accounts.limits import client_address
from orcarouter.errors import AccessDenied, GatewayError, ModelNotAllowed


def ip_allowed(principal: Principal, client_ip: str | None) -> bool:
    """Whether the key may be used from ``client_ip`` (an empty allow-list allows any)."""
    if not principal.allow_ips:
        return True
    address = client_address(client_ip)
    if address is None:
        return False
    return any(
        address.version == network.version and address in network for network in principal.allow_ips
    )


def model_allowed(principal: Principal, model_id: str) -> bool:
    """Whether the key may call ``model_id`` (``provider/model``)."""
    if not principal.model_limits_enabled:
        return True
    return principal.model_matcher.fullmatch(model_id) is not None


def router_access(principal: Principal, router_id: str) -> re.Pattern[str] | None:
    """What the key may reach through a router: its compiled model allow-list, or None for
    every model (no list, or a list naming the router itself: then the key may use whatever
    the router picks)."""
    return None if model_allowed(principal, router_id) else principal.model_matcher


def check_access(
    principal: Principal, client_ip: str | None, model_id: str | None
) -> GatewayError | None:
    """None when the key may make this call, else the error to answer with.

    Pass ``model_id=None`` to check only the address (before the body is read).
    """
    if not ip_allowed(principal, client_ip):
        return AccessDenied(f"this API key may not be used from {client_ip or 'this address'}")
    if model_id is not None and not model_allowed(principal, model_id):
        return ModelNotAllowed(f"this API key may not use the model '{model_id}'", param="model")
    return None


def model_access_error(principal: Principal, requested: str, resolved: str) -> GatewayError | None:
    """None when the key may use the model, named as asked or as resolved (``provider/model``)."""
    if model_allowed(principal, resolved) or model_allowed(principal, requested):
        return None
    return ModelNotAllowed(f"this API key may not use the model '{requested}'", param="model")
