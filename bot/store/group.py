"""Group commit for the inbox: many deliveries per transaction, each answer awaited on its commit.

`GroupCommitter.record` gives the same `inbox.Recorded` as `inbox.record`, and returns only once the
transaction holding the delivery (and the run it starts) has committed; if the store is down it raises
and nothing of its batch is stored. At most `max_queued` deliveries wait; past that `record` raises
StoreUnavailable at once. One writer task per process writes everything queued at that
moment in one transaction: while a batch commits, the next one gathers, so the batch grows with the load
and a quiet server commits each delivery alone at once (no timer, no added wait).

A batch is a few statements whatever its size: the stored deliveries with the batch's keys and the runs
with its origins (one SELECT), the decisions (`plan`, pure: duplicate, joined, ignored or a new
run, exactly as `inbox.record` decides them one by one, in arrival order), then one multi-row INSERT per
table. On SQLite the transaction is `BEGIN IMMEDIATE`, so the reads and the writes see the same database
and another process cannot slip a row in between, and it runs whole in a thread of its own
(`bot/store/sqlite_writer.py`: one hand-off from the event loop and one back per batch, where aiosqlite
took one per statement); its connection has no busy timeout and the thread polls for the lock every
half millisecond instead (SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25… ms, a tail of tens
of milliseconds whenever the worker holds the lock). The statements are `_steps`, run by `write` on an
async connection (PostgreSQL) or by `write_sync` on the thread's synchronous one (SQLite). On
PostgreSQL another `baton serve` can insert the same key between the reads and the writes: the batch then
fails with an IntegrityError, rolls back, and its deliveries are recorded one by one by `inbox.record`,
which resolves such conflicts. Any other failure that is not the store being down does the same, so one
bad delivery fails alone; one that can never be stored as sent is stored as ignored (`_record_alone`).
A writer cancelled or failing outside a transaction answers its batch and the queue before it stops (on
SQLite the thread then rolls the batch back, unless it had already reached its COMMIT: then the batch is
stored and a sender's retry is a duplicate of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Connection,
    Executable,
    Result,
    bindparam,
    insert,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.errors import StoreUnavailable
from bot.store import inbox
from bot.store.engine import sessionmaker, sqlite_writer_engine, utcnow
from bot.store.inbox import DUPLICATE, ENQUEUED, IGNORED, JOINED, REPLIED, Incoming, Recorded
from bot.store.sqlite_writer import SqliteWriter
from bot.store.tables import Activity, Delivery, Run
from handlers.actions import Action, Enqueue, Ignore

log = logging.getLogger("baton.inbox")
MAX_BATCH = 256
MAX_QUEUED_BATCHES = 4  # deliveries waiting beyond MAX_QUEUED_BATCHES × max_batch are refused (503) at once
LOCK_POLL_S = 0.001
LOCK_WAIT_S = 10.0  # as long as the store's busy timeout elsewhere; then the batch fails (503)
CHECKPOINT_EVERY_S = 1.0
Key = tuple[str, str]  # (source, dedup_key)


@dataclass(frozen=True)
class Planned:
    """What one delivery of a batch becomes; `existing` / `same_as` mark a duplicate."""

    outcome: str
    run_id: str | None = None
    reason: str | None = None
    existing: int | None = None  # the id of the stored delivery with the same key
    same_as: int | None = None  # the position of an earlier delivery of this batch with the same key

    @property
    def stored_here(self) -> bool:
        return self.existing is None and self.same_as is None


def plan(
    items: Sequence[tuple[Incoming, Action]],
    stored: Mapping[Key, tuple[int, str | None]],
    origins: Mapping[str, str],
    new_id: Callable[[], str] = inbox.new_run_id,
) -> list[Planned]:
    """Decide every delivery in order, as `inbox.record` would one after another (pure).

    `stored`: the stored deliveries with these keys (their id and run id); `origins`: the stored runs
    with these origins (origin → run id).
    """
    first: dict[Key, int] = {}
    runs = dict(origins)
    out: list[Planned] = []
    for n, (incoming, action) in enumerate(items):
        key = (incoming.source, incoming.dedup_key)
        if key in stored:
            delivery_id, run_id = stored[key]
            out.append(Planned(DUPLICATE, run_id, existing=delivery_id))
        elif key in first:
            out.append(Planned(DUPLICATE, out[first[key]].run_id, same_as=first[key]))
        elif isinstance(action, Ignore):
            out.append(Planned(IGNORED, reason=action.reason))
        elif action.origin in runs:
            run_id = runs[action.origin]
            out.append(Planned(JOINED, run_id, reason=f"same origin as run {run_id}"))
        else:
            runs[action.origin] = new_id()
            out.append(Planned(ENQUEUED if isinstance(action, Enqueue) else REPLIED, runs[action.origin]))
        first.setdefault(key, n)
    return out


def _delivery_row(incoming: Incoming, planned: Planned, now: datetime) -> dict[str, Any]:
    return {
        "source": incoming.source,
        "dedup_key": incoming.dedup_key,
        "event": incoming.event[:64],
        "outcome": planned.outcome,
        "reason": planned.reason,
        "run_id": planned.run_id,
        "payload": incoming.payload if planned.outcome in (ENQUEUED, REPLIED) else None,
        "received_at": now,
    }


Step = tuple[Executable, Any]  # a statement and its parameters (None, or the rows of a multi-row INSERT)


def _lookup_query() -> CompoundSelect[Any]:
    deliveries = select(literal("d"), Delivery.id, Delivery.source, Delivery.dedup_key, Delivery.run_id)
    runs = select(literal("r"), null(), null(), Run.origin, Run.id)
    # Both columns of the unique index, so both stores search it (the key alone scans every delivery,
    # under SQLite's write lock; a row-value IN scans too). The cross product is filtered in `_found`.
    by_key = Delivery.source.in_(bindparam("sources", expanding=True)) & Delivery.dedup_key.in_(
        bindparam("keys", expanding=True)
    )
    by_origin = Run.origin.in_(bindparam("origins", expanding=True))
    return union_all(deliveries.where(by_key), runs.where(by_origin))


LOOKUP = _lookup_query()  # built once: a batch only binds its lists (building it cost more than running it)


def _lookup(items: Sequence[tuple[Incoming, Action]]) -> Step:
    """The stored deliveries with the batch's keys and the stored runs with its origins (one query)."""
    origins = {a.origin for _, a in items if not isinstance(a, Ignore)} or {""}
    sources, keys = {i.source for i, _ in items}, {i.dedup_key for i, _ in items}
    return LOOKUP, {"sources": sorted(sources), "keys": sorted(keys), "origins": sorted(origins)}


def _found(
    items: Sequence[tuple[Incoming, Action]], found: Sequence[Any]
) -> tuple[dict[Key, tuple[int, str | None]], dict[str, str]]:
    """The lookup's rows as `plan` takes them: stored deliveries by key, stored runs by origin."""
    keys = {(i.source, i.dedup_key) for i, _ in items}
    stored: dict[Key, tuple[int, str | None]] = {}
    by_origin: dict[str, str] = {}
    for table, delivery_id, source, text, run_id in found:
        if table == "r":
            by_origin[text] = run_id
        elif (source, text) in keys:
            stored[(source, text)] = (delivery_id, run_id)
    return stored, by_origin


def _steps(items: Sequence[tuple[Incoming, Action]]) -> Generator[Step, Result[Any], list[Recorded]]:
    """The batch's statements, each sent the result of the one before (no I/O here: `write` and
    `write_sync` run them on an async or a sync connection, inside the caller's transaction)."""
    stored, origins = _found(items, (yield _lookup(items)).all())
    planned = plan(items, stored, origins)
    now = utcnow()
    fresh = [n for n, p in enumerate(planned) if p.stored_here]
    ids: dict[int, int] = {}
    if fresh:
        statement = insert(Delivery).returning(Delivery.id, sort_by_parameter_order=True)
        rows = [_delivery_row(items[n][0], planned[n], now) for n in fresh]
        ids = dict(zip(fresh, (yield statement, rows).scalars().all(), strict=True))
    runs = [
        inbox.run_values(action, ids[n], planned[n].run_id or "", now)
        for n in fresh
        if not isinstance(action := items[n][1], Ignore) and planned[n].outcome in (ENQUEUED, REPLIED)
    ]
    if runs:
        yield insert(Run), runs
        by_delivery = {ids[n]: items[n][0] for n in fresh}
        yield insert(Activity), [inbox.received_values(by_delivery[r["delivery_id"]], r) for r in runs]
    return [_recorded(p, _delivery_id(p, n, ids)) for n, p in enumerate(planned)]


async def write(conn: AsyncConnection, items: Sequence[tuple[Incoming, Action]]) -> list[Recorded]:
    """Record `items` inside the caller's transaction (a few statements whatever their number)."""
    steps = _steps(items)
    try:
        statement, parameters = next(steps)
        while True:
            statement, parameters = steps.send(await conn.execute(statement, parameters))
    except StopIteration as done:
        results: list[Recorded] = done.value
        return results


def write_sync(conn: Connection, items: Sequence[tuple[Incoming, Action]]) -> list[Recorded]:
    """`write` on a synchronous connection (the SQLite writer thread's)."""
    steps = _steps(items)
    try:
        statement, parameters = next(steps)
        while True:
            statement, parameters = steps.send(conn.execute(statement, parameters))
    except StopIteration as done:
        results: list[Recorded] = done.value
        return results


def _write_sync(items: Sequence[tuple[Incoming, Action]], conn: Connection) -> list[Recorded]:
    return write_sync(conn, items)  # looked up at each call (tests replace it)


def _delivery_id(planned: Planned, n: int, ids: Mapping[int, int]) -> int | None:
    if planned.same_as is not None:
        return ids[planned.same_as]
    return planned.existing if planned.existing is not None else ids[n]


def _recorded(planned: Planned, delivery_id: int | None) -> Recorded:
    return Recorded(planned.outcome, run_id=planned.run_id, delivery_id=delivery_id, reason=planned.reason)


def _locked(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text


def _sqlstate(exc: BaseException) -> str:
    """PostgreSQL's SQLSTATE of a driver error ("" for SQLite and for other errors): asyncpg's data
    errors reach SQLAlchemy as a plain DBAPIError, not a DataError."""
    return str(getattr(exc.orig, "sqlstate", None) or "") if isinstance(exc, DBAPIError) else ""


def _store_down(exc: BaseException) -> bool:
    """The store, not a delivery, failed (connection, lock timeout, I/O, resources, shutdown): nothing of
    the batch can go in, one by one neither."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError) or _sqlstate(
        exc
    ).startswith(("08", "53", "57", "58"))


def _unstorable(exc: BaseException) -> bool:
    """This delivery can never be stored as sent (a value a column refuses: SQLSTATE class 22; an input
    that does not serialize): answering 503 would only make the sender fail again and again (GitLab
    disables such hooks)."""
    if isinstance(exc, DataError) or _sqlstate(exc).startswith("22"):
        return True
    return not isinstance(exc, SQLAlchemyError | OSError | TimeoutError)


def _fail(futures: Sequence[asyncio.Future[Recorded]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)


class GroupCommitter:
    """The process's one inbox writer: `record` queues, one task commits batches (see the module doc)."""

    def __init__(
        self,
        engine: AsyncEngine,
        max_batch: int = MAX_BATCH,
        on_batch: Callable[[int], None] | None = None,
        max_queued: int | None = None,
    ) -> None:
        self.engine = engine
        self.on_batch = on_batch  # told each batch's size (a metric)
        self.max_batch = max(max_batch, 1)
        self.max_queued = max(max_queued or MAX_QUEUED_BATCHES * self.max_batch, 1)
        self.sqlite = engine.dialect.name == "sqlite"
        writer_engine = sqlite_writer_engine(engine) if self.sqlite else None
        self.thread = SqliteWriter(writer_engine) if writer_engine is not None else None
        self.batches = 0  # transactions committed (or tried): fewer than deliveries under load
        self._pending: list[tuple[Incoming, Action, asyncio.Future[Recorded]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._checkpoint: asyncio.Task[None] | None = None
        self._checkpointed = 0.0

    async def record(self, incoming: Incoming, action: Action) -> Recorded:
        """Wait until the delivery is committed; raise what the store raised if its batch failed, or
        StoreUnavailable at once when `max_queued` deliveries already wait (the store is not keeping up)."""
        if len(self._pending) >= self.max_queued:
            raise StoreUnavailable("inbox queue full; retry later")
        future: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        self._pending.append((incoming, action, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._run(), name="inbox group commit")
        self._wake.set()
        return await asyncio.shield(future)  # a caller that goes away does not take the batch with it

    async def close(self) -> None:
        """Commit what is queued, then stop the writer."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        if self.thread is not None:
            await self.thread.stop()

    async def _run(self) -> None:
        batch: list[tuple[Incoming, Action, asyncio.Future[Recorded]]] = []
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                    await self._commit(batch)
                if self._closing:
                    if self._checkpoint is not None:
                        await self._checkpoint
                    return
        except Exception:
            log.exception(
                "inbox writer failed"
            )  # its callers are answered below; the next record restarts it
        finally:  # cancelled or failed: no caller waits forever (the batch in flight and the queue behind it)
            left, self._pending = [*batch, *self._pending], []
            _fail([future for *_, future in left], StoreUnavailable("inbox writer stopped; retry later"))

    async def _commit(self, batch: Sequence[tuple[Incoming, Action, asyncio.Future[Recorded]]]) -> None:
        items = [(incoming, action) for incoming, action, _ in batch]
        self.batches += 1
        if self.on_batch is not None:
            with contextlib.suppress(Exception):  # a metric never keeps a batch from its callers
                self.on_batch(len(batch))
        try:
            results = await self._transaction(items)
        except Exception as exc:  # rolled back, nothing of the batch stored
            if _store_down(exc):  # every caller gets the store's error (503, the sender retries)
                _fail([future for *_, future in batch], exc)
            else:  # another process stored a key meanwhile (IntegrityError), one delivery is bad, or the
                # SQLite writer thread died inside it (StoreUnavailable): each delivery on its own
                await self._one_by_one(batch)
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _transaction(self, items: Sequence[tuple[Incoming, Action]]) -> list[Recorded]:
        if self.thread is not None:  # SQLite: the whole transaction in the writer thread, one hand-off
            results = await self.thread.run(partial(_write_sync, items), LOCK_WAIT_S)
            self._checkpoint_beside()
            return results
        async with self.engine.connect() as conn:
            if self.sqlite:
                await self._begin_immediate(conn)
            results = await write(conn, items)
            await conn.commit()
        if self.sqlite:
            self._checkpoint_beside()
        return results

    def _checkpoint_beside(self) -> None:
        """Copy the WAL into the database on another connection at most every CHECKPOINT_EVERY_S, instead
        of inside a commit that crossed SQLite's 1000-page mark (a stall of tens of ms for that batch).
        PASSIVE: it never waits for the writers (the worker's connections still checkpoint on their own)."""
        now = asyncio.get_running_loop().time()
        if now - self._checkpointed < CHECKPOINT_EVERY_S or (
            self._checkpoint and not self._checkpoint.done()
        ):
            return
        self._checkpointed = now
        self._checkpoint = asyncio.create_task(self._run_checkpoint(), name="inbox WAL checkpoint")

    async def _run_checkpoint(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:  # best effort: the next one, or the worker's, copies what this one did not
            log.debug("WAL checkpoint skipped", exc_info=True)

    async def _begin_immediate(self, conn: AsyncConnection) -> None:
        deadline = asyncio.get_running_loop().time() + LOCK_WAIT_S
        while True:
            try:
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if not _locked(exc) or asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(LOCK_POLL_S)

    async def _one_by_one(self, batch: Sequence[tuple[Incoming, Action, asyncio.Future[Recorded]]]) -> None:
        """Each delivery in its own transaction: a bad one fails alone (and is kept, see `_record_alone`)."""
        sm = sessionmaker(self.engine)
        for incoming, action, future in batch:
            try:
                result = await _record_alone(sm, incoming, action)
            except Exception as exc:
                _fail([future], exc)
                continue
            if not future.done():
                future.set_result(result)


async def _record_alone(sm: async_sessionmaker[AsyncSession], incoming: Incoming, action: Action) -> Recorded:
    """`inbox.record`; a delivery that can never be stored as sent is stored as ignored instead, without
    its payload, the error's type as its reason (not its text: it may quote the payload): the sender gets
    a 200 instead of a 503 on every redelivery, and the delivery is on record."""
    try:
        return await inbox.record(sm, incoming, action)
    except Exception as exc:
        if not _unstorable(exc):
            raise
        log.warning("delivery cannot be stored as sent", extra={"error": type(exc).__name__})
        return await inbox.record(sm, incoming, Ignore(f"not storable as sent ({type(exc).__name__})"))
