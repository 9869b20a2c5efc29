"""The listening socket of each worker process under ``serve --workers N``.

uvicorn's supervisor hands every worker the same list of sockets. With one shared socket, all
workers accept from one queue and the kernel wakes the most recent waiter first, so a few
keep-alive clients (an SDK's connection pool, a load balancer's) can all land on one worker
while the others idle (https://github.com/Kludex/uvicorn/pull/2472 and the issues it links).
On Linux each worker binds a socket of its own instead, in a ``SO_REUSEPORT`` group: the
kernel then spreads new connections across the group by their addresses, as nginx's
``reuseport`` does. The parent binds first, without listening, to fix the port (``port: 0``
included) and to fail at once if it is taken; a bound socket that does not listen is given no
connections. Elsewhere the shared socket stays.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

BALANCED = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def _bind(family: int, address: tuple[Any, ...]) -> socket.socket:
    """A TCP socket bound to ``address`` in the address's ``SO_REUSEPORT`` group."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class OwnListener:
    """A worker's listening socket as a recipe: pickled into a worker process (as uvicorn does
    with the sockets it hands out), it becomes a socket bound there, in the parent's group."""

    def __init__(self, host: str, port: int) -> None:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = info[0]
        self._family = family
        self._reserved = _bind(family, address)  # fixes the port; never listens
        self.address: tuple[Any, ...] = self._reserved.getsockname()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_bind, (self._family, self.address))

    def close(self) -> None:
        """Give the port back (the workers' own sockets are theirs to close)."""
        self._reserved.close()
