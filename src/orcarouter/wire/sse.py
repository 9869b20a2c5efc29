"""Incremental Server-Sent Events framing.

Bytes arrive in arbitrary network reads; events end at a blank line. The splitter keeps only
the unfinished tail of the stream, so memory stays bounded by the largest single event.
Spec: https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# An event ends at a blank line; the spec allows \n, \r\n and \r line endings, mixed. A lone
# \r may still be the start of \r\n, so it ends an event only once the next byte is known.
_EVENT_END: Final = re.compile(
    rb"\r\n\r\n|\n\n|\r\r(?!\n)|\r\n\n|\n\r\n|\r\n\r(?=[^\n])|\n\r(?=[^\n])|\r\r\n"
)
# Only CR and LF end lines: str.splitlines would also split on U+2028 and friends inside JSON.
_LINE_END: Final = re.compile(r"\r\n|\r|\n")
# ``_CR in data`` looks for one byte, several times faster than ``b"\r" in data``
_CR: Final = ord("\r")


class SSEError(ValueError):
    """The stream broke the framing rules (an event larger than the limit)."""


@dataclass(slots=True)
class SSEEvent:
    """One parsed event: its name (or ``""``), its data lines joined with newlines, and its bytes.

    ``raw`` is the event exactly as the upstream sent it, terminator included, so a relay can
    forward it without re-encoding.
    """

    event: str
    data: str
    raw: bytes

    @property
    def is_comment(self) -> bool:
        """True for keep-alive comments (``: ...``) that carry no data and no name."""
        return not self.event and not self.data


class SSESplitter:
    """Feeds raw bytes, yields complete events as soon as their blank line has arrived."""

    __slots__ = ("_buffer", "_cr_ended", "_max_event_bytes")

    def __init__(self, max_event_bytes: int = 16 * 1024 * 1024) -> None:
        self._buffer = b""
        self._max_event_bytes = max_event_bytes
        self._cr_ended = False  # the last read ended exactly with an event ended by CR CR

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add ``chunk`` and return the events it completed (possibly none)."""
        return [parse_event(raw) for raw in self.split(chunk)]

    def split(self, chunk: bytes) -> list[bytes]:
        """``feed`` without the parsing: each completed event as the upstream sent it, its
        blank line included (for readers that look at the bytes first)."""
        if self._cr_ended:
            self._cr_ended = False
            if chunk.startswith(b"\n"):  # that CR CR was CR then CR LF: the LF is an empty event
                return [b"\n", *self.split(chunk[1:])]
        buffer = self._buffer + chunk if self._buffer else chunk
        if _CR not in buffer:  # LF endings only (every vendor's): split, no regex
            return self._split_lf(buffer)
        events: list[bytes] = []
        start = 0
        while True:
            match = _EVENT_END.search(buffer, start)
            if match is None:
                break
            end = match.end()
            if match.start() - start > self._max_event_bytes:
                raise SSEError(f"an SSE event exceeded {self._max_event_bytes} bytes")
            events.append(buffer[start:end])
            start = end
        self._buffer = buffer[start:]
        self._cr_ended = start == len(buffer) and buffer.endswith(b"\r")
        if len(self._buffer) > self._max_event_bytes:
            raise SSEError(f"an SSE event exceeded {self._max_event_bytes} bytes")
        return events

    def _split_lf(self, buffer: bytes) -> list[bytes]:
        """``split`` for a buffer without CR: events end exactly at each ``\\n\\n``."""
        *bodies, rest = buffer.split(b"\n\n")
        limit = self._max_event_bytes
        events = []
        for body in bodies:
            if len(body) > limit:
                raise SSEError(f"an SSE event exceeded {limit} bytes")
            events.append(body + b"\n\n")
        self._buffer = rest
        if len(rest) > limit:
            raise SSEError(f"an SSE event exceeded {limit} bytes")
        return events

    def close(self) -> SSEEvent | None:
        """End of stream: return a final event that lacked its blank line, if any."""
        rest, self._buffer = self._buffer, b""
        if not rest.strip():
            return None
        return parse_event(rest)


def json_data_line(raw: bytes, head: bytes = b"data: {") -> str | None:
    """The data of an event (``SSESplitter.split``) whose bytes are ``head`` (the fields a
    reader knows, up to ``data: {``) and then the rest of one line holding a JSON object, ended
    by LF LF or CR LF CR LF, decoded as ``parse_event`` decodes it; None for any other event."""
    if not raw.startswith(head):
        return None
    start = len(head) - 1  # the data begins with the brace
    if raw.endswith(b"}\n\n"):
        data = raw[start:-2].decode("utf-8", "replace")
    elif raw.endswith(b"}\r\n\r\n"):  # Gemini's line ends
        data = raw[start:-4].decode("utf-8", "replace")
    else:
        return None
    # Only ASCII bytes decode to CR or LF: in the text, they are the bytes'.
    return data if "\n" not in data and "\r" not in data else None


def parse_event(raw: bytes) -> SSEEvent:
    """Parse one event's bytes into its name and data (fields other than these are ignored)."""
    if raw.endswith(b"\n\n") and _CR not in raw:
        return _parse_lf(raw)
    return _parse_lines(_LINE_END.split(raw.decode("utf-8", errors="replace")), raw)


def _parse_lf(raw: bytes) -> SSEEvent:
    """``parse_event`` for an event without CR, ended by ``\\n\\n``, with the two shapes vendors
    send taken without a loop: one ``data:`` line, or an ``event:`` line then one ``data:``
    line."""
    stop = len(raw) - 2
    end = raw.find(b"\n", 0, stop)
    if end < 0:
        if raw.startswith(b"data: "):
            return SSEEvent("", raw[6:stop].decode("utf-8", "replace").rstrip(), raw)
    elif (
        raw.startswith(b"event: ")
        and raw.startswith(b"data: ", end + 1)
        and raw.find(b"\n", end + 1, stop) < 0
    ):
        name = raw[7:end].decode("utf-8", "replace").strip()
        return SSEEvent(name, raw[end + 7 : stop].decode("utf-8", "replace").rstrip(), raw)
    return _parse_lines(raw[:stop].decode("utf-8", errors="replace").split("\n"), raw)


def _parse_lines(lines: list[str], raw: bytes) -> SSEEvent:
    name = ""
    data: list[str] = []
    for line in lines:
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value.rstrip())
        elif field == "event":
            name = value.strip()
    return SSEEvent(name, "\n".join(data), raw)


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """Frame one event; ``data`` must be a single line (JSON is)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
