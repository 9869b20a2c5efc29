"""Process and CPU accounting from ``/proc``: the benchmark's measuring instruments."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` from 'state' (field 3) on."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """Every live process below ``root``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def cpu_seconds(pid: int) -> tuple[float, int]:
    """utime+stime of ``pid`` (all threads), its reaped children and its live descendants."""
    fields = stat_fields(pid)
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    below = descendants(pid)
    for child in below:
        with contextlib.suppress(OSError, ValueError, IndexError):
            child_fields = stat_fields(child)
            ticks += int(child_fields[11]) + int(child_fields[12])
    return ticks / CLK_TCK, len(below)


def run_seconds(pid: int) -> float:
    """Time on a CPU so far of every live thread of ``pid``, to the nanosecond
    (``/proc/<pid>/task/*/schedstat``), where ``stat`` counts clock ticks (10 ms here): for
    samples too short for ticks, like the idle one. A thread that has exited is not counted."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float, int, int]]:
    """Per thread of ``pid``: its name, its utime+stime so far, and its voluntary and
    involuntary context switches so far (each a wake-up or a preemption)."""
    out: dict[int, tuple[str, float, int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = (task / "stat").read_text()
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2 :].split()
            switches = dict(
                line.split(":", 1)
                for line in (task / "status").read_text().splitlines()
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
            )
            out[int(task.name)] = (
                name,
                (int(fields[11]) + int(fields[12])) / CLK_TCK,
                int(switches.get("voluntary_ctxt_switches", 0)),
                int(switches.get("nonvoluntary_ctxt_switches", 0)),
            )
    return out


def core_busy_seconds() -> dict[int, float]:
    """Per CPU: seconds spent in user, nice and system mode (interrupt time left out, as it is
    for processes)."""
    busy: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system = (int(v) for v in values[:3])
            busy[int(name[3:])] = (user + nice + system) / CLK_TCK
    return busy


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def cmdline(pid: int) -> bytes:
    """The command line of ``pid`` (empty once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
