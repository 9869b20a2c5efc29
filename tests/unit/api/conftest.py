"""The server's tests run on uvloop, the loop the gateway runs on (``cli._UVICORN``); the
fixtures they share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvloop

from orcarouter.api.server import ServerProtocol


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one each time the server's transport pauses its writes."""
    seen: list[int] = []
    pause_writing = ServerProtocol.pause_writing

    def recording_pause(self: ServerProtocol) -> None:
        seen.append(1)
        pause_writing(self)

    monkeypatch.setattr(ServerProtocol, "pause_writing", recording_pause)
    return seen
