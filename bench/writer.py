"""CPU of the usage writer's database work, in-process, per record.

Writes priced usage records the way ``metering.writer.UsageWriter`` does after each tick: one
transaction with the records and their charges (``WalletRepository.write_usage``), on a fresh
SQLite file with the gateway's pragmas, through the same ``Transactions`` thread. The writer
stores a key's last-used time at most once a second (``KeyRepository.touch``), so ``--touch``
adds that transaction to every tick, as the writer did before. It reports process CPU (every
thread) per record over ``--records`` records after the table already holds ``--prefill`` of
them, since an index costs more as it grows.

Usage: ``.venv/bin/python bench/writer.py [--batch 10 100] [--records 6000] [--prefill 0]
[--touch]``.
It isolates the writer from the request path: ``bench.py`` measures the whole gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from orcarouter.accounts.bootstrap import bootstrap
from orcarouter.accounts.keys import issue_key
from orcarouter.api.inference import new_request_id
from orcarouter.canonical import Usage
from orcarouter.metering.usage import UsageRecord
from orcarouter.store.database import Transactions, create_engine_for, migrate
from orcarouter.store.ids import utcnow
from orcarouter.store.repositories import KeyRepository, WorkspaceRepository
from orcarouter.store.wallets import Charge, WalletRepository

WORKSPACE = "ws_default"


def _record(key_id: str) -> UsageRecord:
    """A served, priced chat request, as the benchmark's fake models leave them."""
    record = UsageRecord(new_request_id(), utcnow(), WORKSPACE, key_id, "openai.chat", False)
    record.model_requested, record.model_served = "orcarouter/auto", "fast/m"
    record.upstream_model, record.provider_id = "m", "fast"
    record.status_code, record.latency_ms, record.cost_micros = 200, 1, 7
    record.usage = Usage(input_tokens=12, output_tokens=9)
    record.route_reason = '{"router":"orcarouter/auto","strategy":"cheapest"}'
    return record


async def _measure(directory: Path, batch: int, records: int, prefill: int, touch: bool) -> float:
    url = f"sqlite:///{directory}/writer-{batch}.db"
    migrate(url)
    engine = create_engine_for(url)
    writes = Transactions(engine)
    keys, wallets = KeyRepository(engine, writes), WalletRepository(engine, writes)
    try:
        await bootstrap(WorkspaceRepository(engine), keys, None)
        key_id = (await issue_key(keys, "bench")).row.id
        await wallets.top_up(WORKSPACE, 10**15, "bench")

        async def tick(size: int) -> None:
            batch_records = [_record(key_id) for _ in range(size)]
            rows = [record.as_row() for record in batch_records]
            charges = [Charge(r.request_id, WORKSPACE, key_id, 7) for r in batch_records]
            await wallets.write_usage(rows, charges)
            if touch:
                await keys.touch({key_id: utcnow()})

        for _ in range(max(prefill // 500, 1)):
            await tick(500 if prefill else batch)
        started = time.process_time()
        for _ in range(records // batch):
            await tick(batch)
        return (time.process_time() - started) / (records // batch * batch)
    finally:
        await writes.close()
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--records", type=int, default=6000)
    parser.add_argument("--prefill", type=int, default=0, help="records written beforehand")
    parser.add_argument("--touch", action="store_true", help="touch the key every tick")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        for batch in args.batch:
            cpu = asyncio.run(
                _measure(Path(directory), batch, args.records, args.prefill, args.touch)
            )
            print(
                f"batches of {batch}: {cpu * 1e6:.1f} µs of CPU per record "
                f"({args.records} records after {args.prefill})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
