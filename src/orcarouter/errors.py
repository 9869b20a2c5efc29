"""The gateway's one error hierarchy; each error renders itself in the client's dialect.

Foreign exceptions (aiohttp, SQLAlchemy, JSON decoding) are caught at the boundary where they
happen and re-raised as one of these, so handlers deal with nothing else::

    GatewayError                      status, OpenAI type/code, Anthropic type
    ├── InvalidRequest                400  invalid_request_error
    │   ├── InvalidJSON               400  the body is not UTF-8 JSON
    │   └── ProtocolMismatch          400  the model speaks another protocol
    ├── AuthenticationFailed          401  authentication_error
    ├── AccessDenied                  403  access_denied: the key's IP allow-list refuses the caller
    ├── ModelNotAllowed               403  model_not_allowed: outside the key's model allow-list
    ├── ModelNotFound                 404  not_found_error
    ├── RouteNotFound                 404  no such path
    ├── MethodNotAllowed              405  the path takes another method
    ├── PayloadTooLarge               413  request_too_large
    ├── ServiceUnavailable            503  the gateway cannot serve right now
    │   └── CredentialUnavailable     503  the workspace's own provider key cannot be read
    ├── UpstreamError                 the provider answered with an error (status kept)
    ├── UpstreamUnreachable           502  connection refused, reset, DNS
    ├── UpstreamTimeout               504  a connect, first-byte, idle or total timeout
    └── UpstreamProtocolError         502  the provider sent something unparseable
"""

from __future__ import annotations

import orjson

# Anthropic's error types by HTTP status: https://docs.claude.com/en/api/errors
_ANTHROPIC_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_type_for(status: int) -> str:
    """The Anthropic ``error.type`` for an HTTP status (``api_error`` for other 5xx)."""
    return _ANTHROPIC_TYPE_BY_STATUS.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )


def openai_type_for(status: int) -> str:
    """The OpenAI ``error.type`` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


class GatewayError(Exception):
    """Base of every error the gateway answers with."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @property
    def openai_type(self) -> str:
        """The ``error.type`` of the OpenAI envelope."""
        return openai_type_for(self.status)

    @property
    def anthropic_type(self) -> str:
        """The ``error.type`` of the Anthropic envelope."""
        return anthropic_type_for(self.status)

    def openai_body(self) -> bytes:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.openai_type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )

    def anthropic_body(self) -> bytes:
        """``{"type": "error", "error": {"type", "message"}}``."""
        return orjson.dumps(
            {"type": "error", "error": {"type": self.anthropic_type, "message": self.message}}
        )


class InvalidRequest(GatewayError):
    """The request is malformed or asks for something invalid."""

    status = 400
    code = "invalid_request"


class InvalidJSON(InvalidRequest):
    """The body is not valid UTF-8 JSON."""

    code = "invalid_json"


class ProtocolMismatch(InvalidRequest):
    """The resolved model is served over a protocol this endpoint cannot reach."""

    code = "unsupported_protocol"


class NoCandidate(InvalidRequest):
    """No model behind a router can serve this request; the message says what was missing."""

    code = "no_candidate"


class AuthenticationFailed(GatewayError):
    """Missing, unknown, revoked or expired API key."""

    status = 401
    code = "invalid_api_key"


class AccessDenied(GatewayError):
    """The key may not be used from the caller's address (checked before anything else)."""

    status = 403
    code = "access_denied"


class ModelNotAllowed(GatewayError):
    """The key's model allow-list does not include the requested model."""

    status = 403
    code = "model_not_allowed"


class ModelNotFound(GatewayError):
    """No enabled provider serves the requested model."""

    status = 404
    code = "model_not_found"


class RouteNotFound(GatewayError):
    """No endpoint at this path."""

    status = 404
    code = "route_not_found"


class MethodNotAllowed(GatewayError):
    """The path exists but takes another HTTP method."""

    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    """The request body is over the configured limit."""

    status = 413
    code = "request_too_large"


class ServiceUnavailable(GatewayError):
    """The gateway cannot serve the request right now (e.g. shutting down)."""

    status = 503
    code = "service_unavailable"


class CredentialUnavailable(ServiceUnavailable):
    """The workspace stored its own key for the provider (BYOK) and this gateway cannot decrypt
    it: the request fails rather than go out under the operator's key."""

    code = "credential_unavailable"


class UpstreamError(GatewayError):
    """The provider answered with an error status; the status is kept for the client."""

    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or UpstreamError.code
        self.retry_after = retry_after


class UpstreamUnreachable(GatewayError):
    """The provider could not be reached (refused, reset, DNS)."""

    status = 502
    code = "upstream_unreachable"


class UpstreamTimeout(GatewayError):
    """The provider did not answer in time."""

    status = 504
    code = "upstream_timeout"


class UpstreamProtocolError(GatewayError):
    """The provider sent something the gateway cannot parse."""

    status = 502
    code = "upstream_protocol_error"


class FallbackExhausted(GatewayError):
    """Every candidate of a fallback chain or router failed before answering."""

    status = 502
    code = "fallback_exhausted"


class RateLimited(GatewayError):
    """429: the key's or its workspace's rate limit refuses the request for now; the answer
    carries ``Retry-After`` (``accounts/rate_limits.py``)."""

    status = 429
    code = "rate_limit_exceeded"


class InsufficientQuota(GatewayError):
    """The workspace's balance or the key's USD cap cannot cover the request (402)."""

    status = 402
    code = "insufficient_user_quota"
