"""Small parameterised queries per aggregate. Nothing here builds SQL from strings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    CursorResult,
    Dialect,
    Select,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from orcarouter.store.database import Transactions
from orcarouter.store.ids import utcnow
from orcarouter.store.schema import OPEN_USAGE, api_keys, usage_records, workspaces

# How far before ``since`` a key refresh reads again. Times are taken on the writer's clock
# before its commit, so with several writers (replicas on PostgreSQL) a change can become
# visible after a later-stamped one was already read; re-reading a short window catches it.
CHANGES_LOOKBACK = timedelta(seconds=10)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time in UTC: SQLite hands back naive datetimes (every stored time is UTC),
    PostgreSQL aware ones in the session's time zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def version_query(table: Table) -> Select[int, Any]:
    """How many rows ``table`` holds and its newest ``updated_at``: moves whenever its set of
    rows changes (an insert, an update, a delete)."""
    return select(func.count(), func.max(table.c.updated_at))


async def read_version(
    writes: Transactions, query: Select[int, Any]
) -> tuple[int, datetime | None]:
    """Run a ``version_query`` where the background work runs (``Transactions``): polled every
    second by the in-memory tables, it must cost little."""
    found = await writes.run(lambda conn: conn.execute(query).one())
    return int(found[0] or 0), as_utc(found[1])


def dialect_insert(engine: AsyncEngine, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` in the engine's dialect, so ``ON CONFLICT`` clauses can follow."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def upsert(engine: AsyncEngine, table: Table, key: str) -> postgresql.Insert | sqlite.Insert:
    """``INSERT … ON CONFLICT (key) DO UPDATE`` every other column, in the engine's dialect."""
    statement = dialect_insert(engine, table)
    changes = {c.name: statement.excluded[c.name] for c in table.columns if c.name != key}
    return statement.on_conflict_do_update(index_elements=[key], set_=changes)


class Prepared:
    """A statement compiled once for the engine's dialect, then run as the driver's own SQL with
    plain parameters: no statement built, no cache key computed, no compiled-cache lookup per
    call. A one-row ``UPDATE … RETURNING`` on SQLite: 283 to 436 µs of CPU built for each call
    and run through SQLAlchemy, 56 to 61 built once, 49 to 55 as a ``Prepared``; ``sqlite3``
    alone, 8 to 9.

    Parameters go by their ``bindparam`` names (for an ``INSERT``, the column names), converted
    by their types' bind processors (a datetime becomes SQLite's text, for instance)."""

    def __init__(self, dialect: Dialect, statement: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        # Positional paramstyles (sqlite's qmark, asyncpg's $n) take tuples in this order;
        # named ones (psycopg's pyformat) take dicts.
        self._order = tuple(compiled.positiontup) if compiled.positiontup else None
        self._convert = tuple(
            (name, processor)
            for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))
        )

    def converted(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        """``row`` with each value as the driver takes it."""
        if not self._convert:
            return row
        out = dict(row)
        for name, processor in self._convert:
            if name in out:
                out[name] = processor(out[name])
        return out

    def parameters(self, row: Mapping[str, Any]) -> Any:
        """One row's parameters in the driver's form."""
        row = self.converted(row)
        order = self._order
        return dict(row) if order is None else tuple(row[name] for name in order)

    def execute(self, conn: Connection, row: Mapping[str, Any]) -> CursorResult[Any]:
        """Run it once with ``row``."""
        return conn.exec_driver_sql(self.sql, self.parameters(row))

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run it for each of ``rows`` (the driver's ``executemany``)."""
        if rows:
            conn.exec_driver_sql(self.sql, [self.parameters(row) for row in rows])


class BulkUpsert:
    """``upsert(table, key)`` (or, with ``ignore``, ``INSERT … ON CONFLICT (key) DO NOTHING``)
    compiled for the engine's dialect and run with plain parameter rows (``Prepared``).
    SQLAlchemy's generic per-row parameter handling cost more than SQLite's own insert on the
    usage writer's path: a 100-record batch went from 47 to 31 µs of CPU per record on SQLite
    (about 11 µs of it is SQLite's).

    On SQLite the rows go as multi-row statements, not as an ``executemany``: that releases
    and retakes the GIL around every row, and with the event loop busy on the other thread each
    retake waits; measured with a busy Python thread beside it, 11.8 ms per row with
    ``executemany``, 0.17 ms as multi-row statements. A batch is cut into statements of a power
    of two rows (at most ``PAGE``), so only a few shapes are ever compiled (a 100-row statement
    of this table takes tens of milliseconds to compile). PostgreSQL's drivers batch an
    ``executemany`` themselves.

    With ``ignore``, ``execute`` returns the keys of the rows it inserted (``RETURNING``)."""

    PAGE = 64  # rows per statement on SQLite (23 columns: far under its 32,766 parameters)

    def __init__(
        self, engine: AsyncEngine, table: Table, key: str, *, ignore: bool = False
    ) -> None:
        dialect = engine.dialect
        self._dialect = dialect
        self._table, self._key, self._ignore = table, key, ignore
        self._sqlite = dialect.name == "sqlite"
        if ignore:
            self._statement: Any = insert_ignoring_conflicts(engine, table, key).returning(
                table.c[key]
            )
        else:
            self._statement = upsert(engine, table, key)
        self._prepared = Prepared(dialect, self._statement)
        self.sql = self._prepared.sql
        self._pages: dict[int, tuple[str, tuple[tuple[int, str], ...]]] = {}

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """Write ``rows`` (dicts of column values) in ``conn``'s transaction; with ``ignore``,
        the keys of the rows inserted (otherwise an empty list)."""
        if self._ignore and not self._sqlite:  # RETURNING from a batch: SQLAlchemy's own
            return [row[0] for row in conn.execute(self._statement, list(rows))]
        if not self._sqlite:
            self._prepared.execute_many(conn, rows)
            return []
        converted = [self._prepared.converted(row) for row in rows]
        inserted: list[Any] = []
        start = 0
        while start < len(converted):
            count = min(self.PAGE, 1 << ((len(converted) - start).bit_length() - 1))
            page = converted[start : start + count]
            sql, slots = self._page(count)
            result = conn.exec_driver_sql(sql, tuple(page[i][name] for i, name in slots))
            if self._ignore:
                inserted.extend(row[0] for row in result)
            start += count
        return inserted

    def _page(self, count: int) -> tuple[str, tuple[tuple[int, str], ...]]:
        """The SQLite statement for ``count`` rows, and (row, column) for each parameter."""
        page = self._pages.get(count)
        if page is None:
            names = [column.name for column in self._table.columns]
            slots = {f"r{i}_{name}": (i, name) for i in range(count) for name in names}
            insert = sqlite.insert(self._table).values(
                [{name: bindparam(f"r{i}_{name}") for name in names} for i in range(count)]
            )
            statement: Any
            if self._ignore:
                statement = insert.on_conflict_do_nothing(index_elements=[self._key]).returning(
                    self._table.c[self._key]
                )
            else:
                changes = {name: insert.excluded[name] for name in names if name != self._key}
                statement = insert.on_conflict_do_update(index_elements=[self._key], set_=changes)
            compiled = statement.compile(dialect=self._dialect)
            assert compiled.positiontup is not None
            page = str(compiled), tuple(slots[name] for name in compiled.positiontup)
            self._pages[count] = page
        return page


def insert_ignoring_conflicts(
    engine: AsyncEngine, table: Table, *columns: str
) -> postgresql.Insert | sqlite.Insert:
    """``INSERT … ON CONFLICT (columns) DO NOTHING`` in the engine's dialect."""
    return dialect_insert(engine, table).on_conflict_do_nothing(index_elements=list(columns))


@dataclass(frozen=True, slots=True)
class KeyRow:
    """An API key as stored: never the secret, only its hash and display prefix."""

    id: str
    workspace_id: str
    name: str
    key_hash: str
    display_prefix: str
    role: str
    status: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    model_limits_enabled: bool = False
    model_limits: tuple[str, ...] = ()
    allow_ips: tuple[str, ...] = ()
    usd_cap_micros: int | None = None
    environment: str | None = None
    created_by: str | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    concurrency_limit: int | None = None
    # The workspace's limits, read with the key by ``changed_since`` (not api_keys columns).
    workspace_rpm_limit: int | None = None
    workspace_tpm_limit: int | None = None
    workspace_concurrency_limit: int | None = None


_WORKSPACE_LIMITS = (
    workspaces.c.rpm_limit.label("workspace_rpm_limit"),
    workspaces.c.tpm_limit.label("workspace_tpm_limit"),
    workspaces.c.concurrency_limit.label("workspace_concurrency_limit"),
)


def _json_strings(raw: str | None) -> tuple[str, ...]:
    values = orjson.loads(raw) if raw else []
    return tuple(str(v) for v in values) if isinstance(values, list) else ()


def key_row(row: Any) -> KeyRow:
    """A stored key row as a ``KeyRow``."""
    return KeyRow(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        key_hash=row.key_hash,
        display_prefix=row.display_prefix,
        role=row.role,
        status=row.status,
        created_at=as_utc(row.created_at) or utcnow(),
        updated_at=as_utc(row.updated_at) or utcnow(),
        expires_at=as_utc(row.expires_at),
        last_used_at=as_utc(row.last_used_at),
        model_limits_enabled=bool(row.model_limits_enabled),
        model_limits=_json_strings(row.model_limits),
        allow_ips=_json_strings(row.allow_ips),
        usd_cap_micros=row.usd_cap_micros,
        environment=row.environment,
        created_by=row.created_by,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        concurrency_limit=row.concurrency_limit,
        workspace_rpm_limit=getattr(row, "workspace_rpm_limit", None),
        workspace_tpm_limit=getattr(row, "workspace_tpm_limit", None),
        workspace_concurrency_limit=getattr(row, "workspace_concurrency_limit", None),
    )


class WorkspaceRepository:
    """Workspaces."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def ensure(self, workspace_id: str, name: str) -> bool:
        """Create the workspace unless it exists; True when it was created now.

        One statement, so replicas bootstrapping at the same time cannot both insert it.
        """
        statement = (
            insert_ignoring_conflicts(self._engine, workspaces, "id")
            .values(id=workspace_id, name=name, created_at=utcnow())
            .returning(workspaces.c.id)  # an INSERT's rowcount is not reliable on every driver
        )
        async with self._engine.begin() as conn:
            created = (await conn.execute(statement)).first()
        return created is not None


class KeyRepository:
    """API keys: hashes and metadata only. ``writes``: where ``touch`` (the usage writer's) and
    ``changed_since`` (the key cache's poll) run, shared with the other repositories' background
    work."""

    def __init__(self, engine: AsyncEngine, writes: Transactions | None = None) -> None:
        self._engine = engine
        self._writes = writes or Transactions(engine)
        self._touch = Prepared(
            engine.dialect,
            update(api_keys)
            .where(api_keys.c.id == bindparam("key_id"))
            .values(last_used_at=bindparam("when")),
        )

    @property
    def engine(self) -> AsyncEngine:
        """The database the keys live in."""
        return self._engine

    async def add(self, row: KeyRow) -> None:
        """Store a new key."""
        async with self._engine.begin() as conn:
            await conn.execute(insert(api_keys).values(**_as_values(row)))

    async def changed_since(self, since: datetime | None) -> list[KeyRow]:
        """Every key updated at or after ``since`` less ``CHANGES_LOOKBACK`` (all keys when
        ``since`` is None), with its workspace's rate limits. Re-reading a key is harmless;
        changing a workspace's limits touches its keys' ``updated_at`` so they are re-read."""
        query = (
            select(api_keys, *_WORKSPACE_LIMITS)
            .select_from(api_keys.outerjoin(workspaces, workspaces.c.id == api_keys.c.workspace_id))
            .order_by(api_keys.c.updated_at, api_keys.c.id)
        )
        if since is not None:
            query = query.where(api_keys.c.updated_at >= since - CHANGES_LOOKBACK)
        # Polled every second: where the background work runs (see ``Transactions``).
        return await self._writes.run(lambda conn: [key_row(r) for r in conn.execute(query)])

    async def list(self, workspace_id: str | None = None) -> list[KeyRow]:
        """Keys, oldest first, optionally of one workspace."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if workspace_id is not None:
            query = query.where(api_keys.c.workspace_id == workspace_id)
        async with self._engine.connect() as conn:
            return [key_row(r) for r in await conn.execute(query)]

    async def set_status(self, key_id: str, status: str) -> bool:
        """Change a key's status; False when no such key exists."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id)
                .values(status=status, updated_at=utcnow())
            )
            return bool(result.rowcount)

    async def revoke_role_except(self, role: str, keep_hash: str) -> None:
        """Revoke every active operator-made key of ``role`` but the one with ``keep_hash``.

        Keys made through the management API (``created_by`` set) are never touched.
        """
        async with self._engine.begin() as conn:
            await conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.role == role,
                    api_keys.c.created_by.is_(None),
                    api_keys.c.key_hash != keep_hash,
                    api_keys.c.status == "active",
                )
                .values(status="revoked", updated_at=utcnow())
            )

    async def find_by_hash(self, key_hash: str) -> KeyRow | None:
        """The key with this hash, if stored."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))
            ).first()
            return key_row(row) if row is not None else None

    async def count_active(self, role: str) -> int:
        """How many active operator-made keys (not from the management API) of ``role`` exist."""
        async with self._engine.connect() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(api_keys)
                .where(
                    api_keys.c.role == role,
                    api_keys.c.status == "active",
                    api_keys.c.created_by.is_(None),
                )
            )
            return int(count or 0)

    async def close(self) -> None:
        """Release what ``touch`` and ``changed_since`` hold (a SQLite connection and its
        thread); a later call opens them again."""
        await self._writes.close()

    async def touch(self, last_used: dict[str, datetime]) -> None:
        """Record when keys were last used (batched by the usage writer)."""
        if not last_used:
            return
        rows = [{"key_id": key_id, "when": when} for key_id, when in last_used.items()]
        await self._writes.run(lambda conn: self._touch.execute_many(conn, rows))


def _as_values(row: KeyRow) -> dict[str, Any]:
    values = {column.name: getattr(row, column.name) for column in api_keys.columns}
    values["model_limits"] = orjson.dumps(list(row.model_limits)).decode()
    values["allow_ips"] = orjson.dumps(list(row.allow_ips)).decode()
    return values


class UsageRepository:
    """Usage records; the request id makes every write idempotent."""

    def __init__(self, engine: AsyncEngine, writes: Transactions | None = None) -> None:
        self._engine = engine
        self._settle = BulkUpsert(engine, usage_records, "request_id")
        self._insert = BulkUpsert(engine, usage_records, "request_id", ignore=True)
        # Every write goes where the usage writer's batches go (``Transactions``): one at a
        # time, each transaction whole in one hand-off. Through the async engine a transaction
        # holds SQLite's write lock from its first write until the event loop gets round to
        # its commit, and under load the writer's batches wait that long.
        self._writes = writes or Transactions(engine)

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert records in one transaction; a record already stored is left as it is."""
        if not rows:
            return
        await self._writes.run(partial(self._insert.execute, rows=rows))

    async def settle_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write finished records in one transaction, replacing their open rows."""
        if not rows:
            return
        await self._writes.run(partial(self._settle.execute, rows=rows))

    async def close(self) -> None:
        """Release what ``settle_many`` holds (a SQLite connection and its thread)."""
        await self._writes.close()

    async def sweep_open(self, older_than: datetime) -> int:
        """Settle records left open (by a process that stopped) before ``older_than``.

        Through the partial index of open rows: a scan of the whole table would hold SQLite's
        write lock for as long as it takes (0.4 s at 1.4 M rows here, growing with the table)
        and the usage writer's batches wait behind it, every sweep."""
        statement = (
            update(usage_records)
            .where(OPEN_USAGE, usage_records.c.created_at < older_than)
            .values(outcome="interrupted", error_type="gateway_stopped")
        )
        return await self._writes.run(lambda conn: int(conn.execute(statement).rowcount or 0))

    async def get(self, request_id: str) -> dict[str, Any] | None:
        """One record as a dict, or None."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(usage_records).where(usage_records.c.request_id == request_id)
                )
            ).first()
            return _usage_row(row) if row is not None else None

    async def all(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(usage_records).order_by(usage_records.c.created_at))
            return [_usage_row(r) for r in rows]


def _usage_row(row: Any) -> dict[str, Any]:
    values = dict(row._mapping)
    values["created_at"] = as_utc(values["created_at"])
    return values
