"""Each worker's own listening socket (``serve --workers``): how the recipe pickles into one."""

from __future__ import annotations

import pickle
import socket
import sys

import pytest

from orcarouter.api.listeners import BALANCED, OwnListener

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT balancing")


def _in_worker(listener: OwnListener) -> socket.socket:
    """What a worker process receives: the listener through pickle, as uvicorn sends it."""
    received = pickle.loads(pickle.dumps(listener))  # noqa: S301 - our own bytes, just made
    assert isinstance(received, socket.socket)
    return received


def test_the_platform_balances() -> None:
    assert BALANCED


def test_a_listener_pickles_into_a_socket_of_its_own_on_the_same_port() -> None:
    listener = OwnListener("127.0.0.1", 0)  # the port is fixed here, in the parent
    host, port = listener.address
    assert host == "127.0.0.1" and port > 0
    with pytest.raises(ConnectionRefusedError):  # the parent's socket never listens
        socket.create_connection((host, port), timeout=2).close()
    first = _in_worker(listener)
    second = _in_worker(listener)
    try:
        assert first is not second
        assert first.getsockname() == second.getsockname() == (host, port)
        assert first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        first.listen()
        second.listen()
        with socket.create_connection((host, port), timeout=2):
            pass  # accepted by one of them
    finally:
        first.close()
        second.close()
        listener.close()


def test_a_taken_port_fails_in_the_parent() -> None:
    with socket.socket() as taken:  # bound without SO_REUSEPORT: nobody may join
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            OwnListener("127.0.0.1", taken.getsockname()[1])
