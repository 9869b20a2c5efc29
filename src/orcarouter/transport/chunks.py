"""A response body as an async iterator of its chunks.

Kept apart from ``client`` because it is an async generator, which mypyc cannot compile yet
(``scripts/build_native.py``); the client it reads from is compiled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orcarouter.transport.client import UpstreamResponse


async def body_chunks(response: UpstreamResponse) -> AsyncIterator[bytes]:
    """``response``'s body bytes as they arrive (what is buffered comes as one piece)."""
    try:
        while (chunk := await response.next_chunk()) is not None:
            yield chunk
    except BaseException:  # abandoned (or failed): the connection is done for
        response.close()
        raise
