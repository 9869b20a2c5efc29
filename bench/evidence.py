"""What the gateway left behind after a run: its ledger of usage records and its log."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Any


def ledger(database: Path) -> tuple[list[tuple[Any, ...]], str | None]:
    """The gateway's usage records grouped by model, stream, status and outcome."""
    if not database.exists():
        return [], f"no database at {database}"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT model_requested || ' -> ' || COALESCE(model_served, '-'), stream, "
                "status_code, outcome, COALESCE(error_type, ''), COUNT(*), "
                "SUM(total_tokens IS NULL OR cost_micros IS NULL) "
                "FROM usage_records GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 3, 4"
            ).fetchall()
    except sqlite3.Error as exc:
        return [], f"could not read usage records: {exc}"
    return rows, None


def ledger_problems(label: str, records: list[tuple[Any, ...]], error: str | None) -> list[str]:
    """What in a ``ledger`` is not a served request (``ok``) or one that wrk's stop cut off
    (``client_cancelled``, 499); ``label`` names the gateway."""
    problems = [f"{label}: {error}"] if error else []
    for record in records:
        status, outcome = record[2], record[3]
        if outcome not in ("ok", "client_cancelled") or (status >= 400 and status != 499):
            problems.append(f"{label}: {record[5]} records {record[0]} {status} {outcome}")
    return problems


def log_problems(path: Path) -> tuple[int, list[str]]:
    """Lines of the gateway log that report a warning, an error or a traceback."""
    pattern = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b")
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    bad = [line for line in lines if pattern.search(line)]
    return len(lines), bad
