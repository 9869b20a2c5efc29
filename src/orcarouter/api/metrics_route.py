"""``GET /metrics``: the Prometheus text exposition of the gateway's ``Metrics``.

The metrics are gateway-wide operational data (every workspace's traffic, whether the database
and Redis answer), so they belong to the operator: served to a key with the ``admin`` role in
the default workspace (the bootstrap ``ORCAROUTER_ADMIN_KEY`` is one), from the key's allowed
addresses. Prometheus sends it as a Bearer token (``authorization: {credentials_file: …}`` in
the scrape config). With ``public`` (``ORCAROUTER_METRICS_PUBLIC=1``) anyone may scrape, for a
gateway whose port only a private network reaches.

Errors are in the OpenAI envelope, like every other non-management route: 401 for a missing or
unknown key, 403 for a key that is not the operator's, 503 when an unknown key cannot be
checked because the database is down (known keys keep working from the cache).
"""

from __future__ import annotations

from orcarouter.accounts.access import check_access
from orcarouter.accounts.keys import DEFAULT_WORKSPACE, KeyCache
from orcarouter.accounts.roles import ADMIN
from orcarouter.api.asgi import Receive, Scope, Send, header_map, respond, respond_error
from orcarouter.api.auth import authenticate, client_ip
from orcarouter.errors import GatewayError
from orcarouter.observability.metrics import CONTENT_TYPE, Metrics

_NO_STORE = [(b"cache-control", b"no-store")]


class OperatorOnly(GatewayError):
    """A valid key that is not an admin key of the default workspace."""

    status = 403
    code = "operator_only"


class MetricsEndpoint:
    """Serves ``metrics.render()`` to the operator (or to anyone when ``public``)."""

    path = "/metrics"

    def __init__(self, metrics: Metrics, keys: KeyCache, *, public: bool = False) -> None:
        self._metrics = metrics
        self._keys = keys
        self._public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authorize, then render every metric."""
        if not self._public:
            try:
                await self._authorize(scope)
            except GatewayError as error:
                await respond_error(send, error, False, _NO_STORE)
                return
        body = self._metrics.render()
        await respond(send, 200, body, _NO_STORE, content_type=CONTENT_TYPE.encode("latin-1"))

    async def _authorize(self, scope: Scope) -> None:
        principal = await authenticate(self._keys, header_map(scope))
        denied = check_access(principal, client_ip(scope), None)
        if denied is not None:
            raise denied
        if principal.role != ADMIN or principal.workspace_id != DEFAULT_WORKSPACE:
            raise OperatorOnly("metrics are served to the gateway's admin keys only")
