"""The usage journal: each process appends its usage events to segment files of its own.

A request about to go upstream appends ``{"o": row}`` (its ``open`` row), its finished record
``{"s": row, "u": usage, "h": held}``, and a committed batch ``{"c": [request ids]}`` in the
segment its records were appended to. Appends are plain ``os.write`` calls (microseconds): once
it returns the kernel has the bytes, so a killed process loses nothing; a background ``fsync``
(``sync``) covers a crash of the machine. Lines are compact JSON (orjson), one per event.

Each process writes ``<pid>-<token>-<number>.journal`` files under one directory, and holds an
exclusive ``flock`` on each of them for as long as it may still write there: several workers
or replicas can share the directory, and a segment whose lock can be taken belongs to a process
that is gone. The writer rotates to a new segment past ``segment_bytes``, carrying forward the
open lines of the requests still in flight, and deletes an old segment once every record settled
in it is committed. Memory stays bounded: the open lines of in-flight requests, and a count of
uncommitted records per segment.

``claim_dead`` takes the segments stopped processes left and ``replay`` parses one (a torn last
line is skipped); the writer writes them (``UsageWriter.recover``) and then ``Claimed.remove``
deletes them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from orcarouter.canonical import Usage
from orcarouter.metering.usage import UsageRecord

log = logging.getLogger(__name__)

FsyncMode = Literal["interval", "never"]
SUFFIX: Final = ".journal"
SEGMENT_BYTES: Final = 8 << 20  # rotate past 8 MiB
_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE
_OPEN_FLAGS: Final = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC

Position = tuple[int, int]  # (segment number, byte offset) in this process's journal


@dataclass(slots=True, eq=False)
class Segment:
    """One of this process's segment files, open and locked until it is deleted."""

    number: int
    path: Path
    fd: int
    limit: int  # rotate once this size is reached
    size: int = 0
    uncommitted: int = 0  # records settled here whose commit is not yet known
    dirty: bool = False  # written since the last fsync
    torn: bool = False  # a failed write may have left half a line: start the next one afresh
    closed: bool = False


class UsageJournal:
    """This process's segments: appends on the event loop, fsync in a thread."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: FsyncMode = "interval",
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._segment_bytes = segment_bytes
        self._prefix = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._next = 0
        self._segments: dict[int, Segment] = {}
        self._opens: dict[str, bytes] = {}  # request id -> its open line, while in flight
        self._dir_dirty = False
        self.on_dirty: Callable[[], None] | None = None  # told when a segment turns dirty
        self.current = self._create()

    # --- appends (event loop) -----------------------------------------------------------------

    def open(self, record: UsageRecord) -> None:
        """Append a request's open row; raises OSError when the disk refuses."""
        row = record.as_row()
        row["outcome"] = "open"
        line = orjson.dumps({"o": row}, option=_NEWLINE)
        self._append(self.current, line)
        self._opens[record.request_id] = line
        if self.current.size >= self.current.limit:
            self._rotate()

    def settle(self, record: UsageRecord) -> Segment:
        """Append a finished record; returns the segment to name in ``committed`` later."""
        line = orjson.dumps(
            {"s": record.as_row(), "u": _usage_list(record.usage), "h": record.held},
            option=_NEWLINE,
            default=_plain,
        )
        segment = self.current
        self._append(segment, line)
        segment.uncommitted += 1
        self._opens.pop(record.request_id, None)
        if segment.size >= segment.limit:
            self._rotate()
        return segment

    def committed(self, done: Iterable[tuple[str, Segment]]) -> None:
        """These settled records are in the database: note it, delete segments fully done."""
        by_segment: dict[Segment, list[str]] = {}
        for request_id, segment in done:
            by_segment.setdefault(segment, []).append(request_id)
        for segment, ids in by_segment.items():
            segment.uncommitted -= len(ids)
            if segment.closed:
                continue
            if segment is not self.current and segment.uncommitted <= 0:
                self._delete(segment)
                continue
            try:
                self._append(segment, orjson.dumps({"c": ids}, option=_NEWLINE))
            except OSError:  # the records are stored; a replay would only write them again
                log.warning("usage journal: could not note a commit", exc_info=True)
        if self.current.size >= self.current.limit:
            self._rotate()

    def position(self) -> Position:
        """Where the next line goes."""
        return self.current.number, self.current.size

    @property
    def in_flight(self) -> int:
        """Requests opened and not settled yet."""
        return len(self._opens)

    def _append(self, segment: Segment, line: bytes) -> None:
        if segment.closed:  # its descriptor may be another file's by now
            raise OSError(errno.EBADF, "usage journal segment closed", str(segment.path))
        if segment.torn:
            line = b"\n" + line
        written = 0
        try:
            written = os.write(segment.fd, line)
            while written < len(line):  # a short write (disk nearly full): finish the line
                written += os.write(segment.fd, line[written:])
        except OSError:
            segment.torn = True
            segment.size += written
            raise
        segment.torn = False
        segment.size += written
        if not segment.dirty:  # the next fsync covers later writes too: say so once
            segment.dirty = True
            if self.on_dirty is not None:
                self.on_dirty()

    # --- segments -----------------------------------------------------------------------------

    def _create(self) -> Segment:
        """A new locked segment. It is made and locked under a hidden name, then renamed, so a
        recovering process never sees (and deletes) a segment not yet locked."""
        number = self._next
        self._next += 1
        path = self.directory / f"{self._prefix}-{number:06d}{SUFFIX}"
        hidden = self.directory / f".{path.name}.tmp"
        fd = os.open(hidden, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(hidden, path)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                hidden.unlink()
            raise
        segment = Segment(number, path, fd, self._segment_bytes)
        self._segments[number] = segment
        self._dir_dirty = True
        if self.on_dirty is not None:
            self.on_dirty()
        return segment

    def _rotate(self) -> None:
        old = self.current
        try:
            new = self._create()
            if self._opens:  # requests in flight: their open rows go on in the new segment
                self._append(new, b"".join(self._opens.values()))
                # However many they are: room for as much again, so copies stay amortized.
                new.limit = new.size + max(self._segment_bytes, new.size)
        except OSError:
            log.warning("usage journal: could not rotate; appending to %s", old.path, exc_info=True)
            old.limit = old.size + self._segment_bytes  # try again later, not at every line
            return
        self.current = new
        if old.uncommitted <= 0:
            self._delete(old)

    def _delete(self, segment: Segment) -> None:
        segment.closed = True
        self._segments.pop(segment.number, None)
        try:
            segment.path.unlink()
        except OSError:
            log.warning("usage journal: could not delete %s", segment.path, exc_info=True)
        os.close(segment.fd)  # the lock goes with the last descriptor

    def close(self) -> None:
        """Release the segments: delete the current one if it holds nothing still needed, keep
        the others (the next start recovers them)."""
        current = self.current
        for segment in list(self._segments.values()):
            if segment.closed:
                continue
            if segment is current and segment.uncommitted <= 0 and not self._opens:
                self._delete(segment)
                continue
            if self.fsync != "never":
                with contextlib.suppress(OSError):
                    os.fsync(segment.fd)
            segment.closed = True
            self._segments.pop(segment.number, None)
            os.close(segment.fd)

    # --- durability (fsync in a thread) -------------------------------------------------------

    def take_dirty(self) -> tuple[list[int], Path | None]:
        """The descriptors to fsync now, and the directory if segments were made (event loop)."""
        if self.fsync == "never":
            return [], None
        fds = []
        for segment in self._segments.values():
            if segment.dirty:
                segment.dirty = False
                fds.append(segment.fd)
        directory = self.directory if self._dir_dirty else None
        self._dir_dirty = False
        return fds, directory

    # --- reading back what did not fit in memory ----------------------------------------------

    def plan(self, start: Position, end: Position) -> list[tuple[Segment, int, int, int]]:
        """The byte ranges between two positions, each with a duplicated descriptor (closed
        by ``read_settled``) so a segment deleted meanwhile cannot be confused with another."""
        ranges = []
        for number in sorted(self._segments):
            if number < start[0] or number > end[0]:
                continue
            segment = self._segments[number]
            first = start[1] if number == start[0] else 0
            last = end[1] if number == end[0] else segment.size
            if last > first:
                ranges.append((segment, os.dup(segment.fd), first, last))
        return ranges

    @staticmethod
    def read_settled(
        ranges: Sequence[tuple[Segment, int, int, int]], end: Position, limit: int
    ) -> tuple[list[tuple[UsageRecord, Segment]], Position]:
        """Up to ``limit`` settled records in ``ranges`` (from ``plan``), and the position after
        the last one read (``end`` when all were). Runs in a thread: touches no shared state."""
        found: list[tuple[UsageRecord, Segment]] = []
        position = end
        try:
            for segment, fd, first, last in ranges:
                data = os.pread(fd, last - first, first)
                offset = first
                for line in data.splitlines(keepends=True):
                    offset += len(line)
                    event = _parse(line)
                    if event is None or "s" not in event:
                        continue
                    found.append((settled_record(event, keep_held=True), segment))
                    if len(found) >= limit:
                        return found, (segment.number, offset)
        finally:
            for _, fd, _, _ in ranges:
                os.close(fd)
        return found, position


def sync_all(fds: Sequence[int], directory: Path | None) -> None:
    """fsync the given descriptors (and directory); a descriptor closed meanwhile is skipped."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    if directory is not None:
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


# --- recovery ---------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Claimed:
    """A stopped process's segment, locked by this process until written and removed."""

    path: Path
    fd: int

    def read(self) -> bytes:
        """The whole file (in a thread)."""
        size = os.fstat(self.fd).st_size
        return os.pread(self.fd, size, 0)

    def note_committed(self, ids: Sequence[str]) -> None:
        """Progress: these records are written (a retry after a failure skips them)."""
        with contextlib.suppress(OSError):
            os.write(self.fd, b"\n" + orjson.dumps({"c": list(ids)}, option=_NEWLINE))

    def remove(self) -> None:
        """Everything in it is written: delete it."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError:  # read again later: writing it twice is harmless
            log.warning("usage journal: could not delete %s", self.path, exc_info=True)
        self.release()

    def release(self) -> None:
        """Close it (unlocking) without deleting: the next attempt, here or elsewhere, reads it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def claim_dead(directory: Path, known: Iterable[Path] = ()) -> list[Claimed]:
    """Lock the segments no live process holds; never touches one that is locked."""
    skip = set(known)
    claimed: list[Claimed] = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return claimed
    for name in names:
        path = directory / name
        if name.startswith(".") and name.endswith(SUFFIX + ".tmp"):
            _remove_stale_hidden(path)  # made by a process that died before using it
            continue
        if not name.endswith(SUFFIX) or path in skip:
            continue
        fd = _lock_if_dead(path)
        if fd is not None:
            claimed.append(Claimed(path, fd))
    return claimed


def _lock_if_dead(path: Path) -> int | None:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Another recovering process may have removed it between our open and our lock.
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            os.close(fd)
            return None
    except (BlockingIOError, FileNotFoundError):  # locked: its process is alive
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd


def _remove_stale_hidden(path: Path) -> None:
    fd = _lock_if_dead(path)
    if fd is not None:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


@dataclass(slots=True)
class Replay:
    """What one segment says: opens, settled records, committed ids."""

    opens: dict[str, dict[str, Any]] = field(default_factory=dict)
    settled: dict[str, dict[str, Any]] = field(default_factory=dict)
    committed: set[str] = field(default_factory=set)
    unreadable: int = 0  # lines that do not parse (a torn last line)

    def to_write(self) -> list[UsageRecord]:
        """Settled records not known committed, in journal order."""
        return [
            settled_record(event)
            for request_id, event in self.settled.items()
            if request_id not in self.committed
        ]

    def interrupted(self) -> list[dict[str, Any]]:
        """Rows of requests opened and never settled: the process stopped under them."""
        rows = []
        for request_id, row in self.opens.items():
            if request_id in self.settled:
                continue
            rows.append(
                {
                    **row,
                    "created_at": _time(row["created_at"]),
                    "outcome": "interrupted",
                    "error_type": "gateway_stopped",
                }
            )
        return rows


def replay(data: bytes) -> Replay:
    """Parse a segment; lines that do not parse (a torn last line) are counted and skipped."""
    result = Replay()
    for line in data.splitlines():
        if not line.strip():
            continue
        event = _parse(line)
        if event is None:
            result.unreadable += 1
            continue
        if "s" in event:
            result.settled[event["s"]["request_id"]] = event
        elif "o" in event:
            result.opens[event["o"]["request_id"]] = event["o"]
        elif "c" in event:
            result.committed.update(event["c"])
    return result


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


# --- records as lines and back ----------------------------------------------------------------


def settled_record(event: Mapping[str, Any], *, keep_held: bool = False) -> UsageRecord:
    """The record of a ``{"s": …}`` line. ``held`` (whether a reservation of this process
    counted the cost) only means something to the process that wrote it."""
    row = event["s"]
    held = event.get("h") if keep_held else None
    return UsageRecord(
        request_id=row["request_id"],
        created_at=_time(row["created_at"]),
        workspace_id=row.get("workspace_id"),
        key_id=row.get("key_id"),
        endpoint=row.get("endpoint", ""),
        stream=bool(row.get("stream")),
        model_requested=row.get("model_requested"),
        model_served=row.get("model_served"),
        upstream_model=row.get("upstream_model"),
        provider_id=row.get("provider_id"),
        status_code=row.get("status_code") or 0,
        outcome=row.get("outcome") or "ok",
        error_type=row.get("error_type"),
        usage=_usage_from(event.get("u")),
        latency_ms=row.get("latency_ms") or 0,
        ttft_ms=row.get("ttft_ms"),
        route_reason=row.get("route_reason"),
        cost_micros=row.get("cost_micros"),
        held=(bool(held[0]), bool(held[1])) if held else (False, False),
    )


def _usage_list(usage: Usage | None) -> list[Any] | None:
    """The canonical usage, whole (pricing needs more than the row's columns)."""
    if usage is None:
        return None
    return [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
        usage.server_tool_uses,
        usage.extra or None,
    ]


def _usage_from(value: Any) -> Usage | None:
    if not value:
        return None
    input_tokens, output_tokens, cache_read, cache_write, reasoning, tools, extra = value
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        server_tool_uses=tools,
        extra=extra or {},
    )


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _plain(value: Any) -> Any:
    """orjson's fallback for read-only mappings and sets in usage extras."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
