"""A fake upstream that streams as a model does: one SSE event per write, a pause between.

The upstream nginx serves each answer in one write, so a streamed answer reaches the gateway
in one or two reads and the benchmark's stream figures are the cost per event of a batch. A
model's tokens come one event at a time, and then every event is a read of its own, a wake-up
of the relay and a write to the client. This server answers the paced scenarios' paths (the
upstream nginx proxies them here, unbuffered) with the scenario's answer, event by event.

Usage: ``python pacer.py SPEC.json PORT`` where the spec maps each path to
``{"file": answer, "content_type": ..., "pause_s": seconds}``; ``GET /healthz`` answers ``ok``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
from aiohttp import web


def events_of(answer: bytes) -> list[bytes]:
    """The answer's SSE events, each with its blank line: joined, they are the answer."""
    *events, rest = answer.split(b"\n\n")
    return [event + b"\n\n" for event in events] + ([rest] if rest else [])


def app(spec: dict[str, dict[str, object]]) -> web.Application:
    """Handlers for every path of the spec."""
    routes = web.RouteTableDef()

    @routes.get("/healthz")
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    for path, entry in spec.items():
        events = events_of(Path(str(entry["file"])).read_bytes())
        pause = float(str(entry["pause_s"]))
        content_type = str(entry["content_type"])

        async def stream(
            request: web.Request,
            events: list[bytes] = events,
            pause: float = pause,
            content_type: str = content_type,
        ) -> web.StreamResponse:
            await request.read()
            response = web.StreamResponse(headers={"Content-Type": content_type})
            await response.prepare(request)
            for event in events:
                await asyncio.sleep(pause)
                await response.write(event)
            await response.write_eof()
            return response

        routes.post(path)(stream)
    application = web.Application()
    application.add_routes(routes)
    return application


def main(argv: list[str]) -> int:
    """Serve until stopped."""
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    spec = orjson.loads(Path(argv[1]).read_bytes())
    try:
        import uvloop
    except ImportError:
        loop = None
    else:
        loop = uvloop.new_event_loop()
    web.run_app(app(spec), host="127.0.0.1", port=int(argv[2]), print=None, loop=loop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
