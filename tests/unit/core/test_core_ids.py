"""Ids of rows written on every request: unique, ordered by time, apart across processes."""

from __future__ import annotations

import os
import re
import time

from orcarouter.store.ids import ordered_id


def test_ordered_ids_are_unique_and_sort_by_creation() -> None:
    ids = [ordered_id("req_") for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)
    time.sleep(0.002)
    later = ordered_id("req_")
    assert later > max(ids)
    assert int(ids[0][4:17], 16) <= time.time_ns() // 1000  # microseconds since the epoch


def test_a_forked_process_draws_other_random_bits() -> None:
    """Workers forked from one parent must not repeat its ids (random reseeds after fork)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without running the parent's cleanup
        os.close(read)
        os.write(write, ",".join(ordered_id("x_")[15:] for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    mine = {ordered_id("x_")[15:] for _ in range(50)}
    with os.fdopen(read, "rb") as pipe:
        child = set(pipe.read().decode().split(","))
    os.waitpid(pid, 0)
    assert len(child) == 50
    assert not mine & child
