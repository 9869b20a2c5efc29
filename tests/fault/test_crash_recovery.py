"""Killing the gateway mid-load loses no usage: every request the upstream saw has exactly one
record after the restart's recovery (from the local usage journal), and none is left open."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import orjson

from orcarouter.metering.journal import SUFFIX, replay
from tests.conftest import ADMIN_KEY
from tests.support.fleet import Fleet
from tests.support.gateway import GatewayProcess
from tests.support.http import Answer, request


def _config(fleet: Fleet) -> dict[str, object]:
    return {
        "providers": [
            {
                "id": "slow",
                "protocol": "openai",
                "base_url": fleet.url("slow"),
                "models": ["m"],
                "timeouts": {"first_byte": 20, "idle": 20, "total": 30},
            }
        ],
        "usage": {"sweep_after": 1},
    }


def _chat(gateway: GatewayProcess) -> Answer | None:
    body = orjson.dumps({"model": "slow/m", "messages": [{"role": "user", "content": "hi"}]})
    headers = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
    try:
        return request(gateway.base_url + "/v1/chat/completions", body, headers)
    except OSError:  # the gateway died under this request
        return None


def _journaled(data_dir: Path) -> tuple[set[str], set[str]]:
    """The request ids the journal holds as opened, and as settled (every segment)."""
    opened: set[str] = set()
    settled: set[str] = set()
    for segment in (data_dir / "journal").glob(f"*{SUFFIX}"):
        found = replay(segment.read_bytes())
        opened.update(found.opens)
        settled.update(found.settled)
    return opened, settled


def test_a_killed_gateway_leaves_every_request_it_forwarded_settled_after_restart(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.reset()
    gateway = GatewayProcess(tmp_path, _config(fleet), env={"ORCAROUTER_ADMIN_KEY": ADMIN_KEY})
    gateway.start()
    try:
        finished = _chat(gateway)  # one request finished, and its record written, before
        assert finished is not None
        gateway.usage_record(finished.headers["x-orca-request-id"])
        fleet.set("slow", "slow")  # every answer now takes 0.7 s
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            pending = [pool.submit(_chat, gateway) for _ in range(20)]
            deadline = time.monotonic() + 10
            while fleet.hits["slow"] < 21 and time.monotonic() < deadline:
                time.sleep(0.01)
            gateway.kill()  # SIGKILL: no shutdown, no drain
            answers = [f.result() for f in pending]
        assert all(answer is None for answer in answers)  # nobody got an answer
        seen = fleet.hits["slow"]
        assert seen == 21
        # Each forwarded request was stored (in the journal) before it went upstream; only the
        # finished one is settled (and in the database).
        opened, settled = _journaled(tmp_path / "data")
        assert len(opened) == seen
        assert settled == {finished.headers["x-orca-request-id"]}
        assert len(gateway.query("SELECT outcome FROM usage_records")) == 1
        left = set((tmp_path / "data" / "journal").iterdir())

        fleet.set("slow", "ok")
        gateway.start()
        deadline = time.monotonic() + 10
        while True:
            outcomes = [r["outcome"] for r in gateway.query("SELECT outcome FROM usage_records")]
            if "open" not in outcomes or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(outcomes) == seen  # exactly one record each, none doubled
        assert outcomes.count("ok") == 1
        assert outcomes.count("interrupted") == seen - 1
        assert _chat(gateway) is not None  # and the gateway serves again
        assert left.isdisjoint((tmp_path / "data" / "journal").iterdir())  # recovered, removed
    finally:
        gateway.stop()
