"""Active health probes: every ``interval`` seconds, each ejected target gets one tiny request.

A probe is a one-token chat request in the target's own protocol. Any answer below 500 other
than 429 means the upstream is serving again (a 400 about the probe's parameters still proves
it is up), and the target is readmitted before its back-off runs out. Probes are off unless
``health.probe_interval`` is set: they cost a request each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from orcarouter.errors import GatewayError
from orcarouter.providers.base import ProviderProtocol
from orcarouter.providers.exchange import ExchangePlan, Passthrough, Translated
from orcarouter.routing.resolve import Target
from orcarouter.settings import TimeoutsConfig
from orcarouter.translate.codecs import TargetOptions, WireCodec
from orcarouter.transport.client import UpstreamClient, UpstreamRequest

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 10.0


class ProbedBook(Protocol):
    """What the prober needs of the health book."""

    def ejected(self) -> list[str]: ...
    def readmit(self, model_id: str) -> None: ...


def probe_plan(
    target: Target, protocol: ProviderProtocol, codecs: Mapping[str, WireCodec]
) -> ExchangePlan:
    """The smallest chat request, in the target's protocol."""
    payload = {
        "model": target.upstream_model,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 1,
    }
    if protocol.name == "openai":
        return Passthrough(protocol, payload, target.upstream_model, stream=False)
    return Translated(
        codecs["openai"],
        codecs[protocol.name],
        payload,
        model=target.upstream_model,
        stream=False,
        options=TargetOptions(drop_params=True),
    )


class HealthProber:
    """Probes ejected targets on an interval and readmits those that answer."""

    def __init__(
        self,
        book: ProbedBook,
        resolve: Callable[[str], Target],
        protocols: Mapping[str, ProviderProtocol],
        codecs: Mapping[str, WireCodec],
        client: UpstreamClient,
        interval: float,
    ) -> None:
        self._book = book
        self._resolve = resolve
        self._protocols = protocols
        self._codecs = codecs
        self._client = client
        self._interval = interval

    async def run(self) -> None:
        """Probe forever (cancel to stop)."""
        while True:
            await asyncio.sleep(self._interval)
            await self.probe_ejected()

    async def probe_ejected(self) -> list[str]:
        """Probe every ejected target once, concurrently; return those readmitted."""
        ejected = self._book.ejected()
        results = await asyncio.gather(*(self.probe(model_id) for model_id in ejected))
        readmitted = [model_id for model_id, up in zip(ejected, results, strict=True) if up]
        for model_id in readmitted:
            self._book.readmit(model_id)
            log.info("probe: %s answers again; readmitted", model_id)
        return readmitted

    async def probe(self, model_id: str) -> bool:
        """Whether the target answers a tiny request with anything but a server error or 429."""
        try:
            target = self._resolve(model_id)
            protocol = self._protocols[target.provider.protocol]
            plan = probe_plan(target, protocol, self._codecs)
            provider = target.provider
            timeouts = TimeoutsConfig(
                connect=min(provider.timeouts_for(target.upstream_model).connect, PROBE_TIMEOUT),
                first_byte=PROBE_TIMEOUT,
                idle=PROBE_TIMEOUT,
                total=PROBE_TIMEOUT,
            )
            request = UpstreamRequest(
                url=protocol.url(provider, False, target.upstream_model),
                headers=protocol.headers(provider, {}),
                body=plan.body,
                timeouts=timeouts,
            )
            response = await self._client.send(request)
        except (GatewayError, KeyError):
            return False
        response.close()
        return response.status < 500 and response.status != 429
