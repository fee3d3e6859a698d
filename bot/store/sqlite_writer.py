"""The inbox's SQLite writer thread: one hand-off per batch instead of one per statement.

Through aiosqlite every statement of a batch is a hop to aiosqlite's thread and back to the event loop
(BEGIN IMMEDIATE polled every millisecond, the lookup, one INSERT per table, the COMMIT): five or more
wake-ups of a loop that also reads, verifies and parses the deliveries, so under load each hop waits
for the loop and the batch holds SQLite's write lock the longer. Here one thread owns one synchronous
connection (the same SQLAlchemy tables, types and redactor: the rows are the ones `inbox.record`
writes) and runs a whole transaction per job: it polls for the write lock itself, runs the job's
statements and commits, then wakes the loop once (`call_soon_threadsafe`) with the answer.

A job the loop abandoned (its writer task was cancelled) is rolled back instead of committed if the
thread has not reached its COMMIT yet; past that point it is committed and the sender's retry finds a
duplicate of the same delivery (stored once either way). A job that ends the thread (a BaseException
that is not an Exception) is answered, and so is every job queued behind it; the next job starts a
new thread. `stop` lets the thread finish the job it has and answers the ones behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from bot.errors import StoreUnavailable

log = logging.getLogger("baton.inbox")
T = TypeVar("T")
LOCK_POLL_S = 0.0005  # between two tries for SQLite's write lock (a sleep in this thread, not the loop's)


class Abandoned(Exception):
    """The loop stopped waiting for this job before its COMMIT: rolled back, nothing stored."""


@dataclass
class _Job(Generic[T]):
    work: Callable[[Connection], T]  # the statements, inside the transaction this thread opened
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    lock_wait_s: float
    abandoned: threading.Event = field(default_factory=threading.Event)

    def answer(self, result: T | BaseException) -> None:
        """Settle the future on its loop (from any thread); a closed loop has no one left to tell."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._settle, result)

    def _settle(self, result: T | BaseException) -> None:
        if self.future.done():
            return
        if isinstance(result, BaseException):
            self.future.set_exception(result)
        else:
            self.future.set_result(result)


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


@dataclass
class _Lane:
    """One writer thread and the jobs queued to it (None: stop after the jobs before it)."""

    jobs: queue.SimpleQueue[_Job[Any] | None] = field(default_factory=queue.SimpleQueue)
    thread: threading.Thread | None = None


class SqliteWriter:
    """One thread, one connection of `engine` (synchronous, SQLite), one transaction per `run`."""

    def __init__(self, engine: Engine, name: str = "inbox sqlite writer") -> None:
        self.engine = engine
        self.name = name
        self._guard = threading.Lock()  # jobs go only to the current lane; a lane that ends is replaced
        self._lane: _Lane | None = None

    async def run(self, work: Callable[[Connection], T], lock_wait_s: float) -> T:
        """Run `work` in one transaction on the thread (BEGIN IMMEDIATE, `work`, COMMIT) and return its
        result; raise what it raised (rolled back). Cancelled before the COMMIT: rolled back."""
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(work, loop, loop.create_future(), lock_wait_s)
        self._submit(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.abandoned.set()
            raise

    async def stop(self) -> None:
        """Let the thread finish the jobs it has, then close its connection (waits off the loop)."""
        with self._guard:
            lane, self._lane = self._lane, None
        if lane is not None and lane.thread is not None:
            lane.jobs.put(None)
            await asyncio.to_thread(lane.thread.join)
        self.engine.dispose()

    def _submit(self, job: _Job[Any]) -> None:
        with self._guard:
            if self._lane is None:
                self._lane = _Lane()
                self._lane.thread = threading.Thread(
                    target=self._main, args=(self._lane,), name=self.name, daemon=True
                )
                self._lane.thread.start()
            self._lane.jobs.put(job)

    def _main(self, lane: _Lane) -> None:
        conn: Connection | None = None
        try:
            while (job := lane.jobs.get()) is not None:
                try:
                    conn = conn or self.engine.connect()
                    job.answer(self._transaction(conn, job))
                except Exception as exc:
                    job.answer(exc)
                    conn = self._after_failure(conn, exc)
                except BaseException:  # the thread ends here (its job and the lane's queue are answered)
                    log.exception("inbox writer thread stopped")
                    job.answer(StoreUnavailable("inbox writer stopped; retry later"))
                    return
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._retire(lane)

    def _retire(self, lane: _Lane) -> None:
        """No job waits on a lane whose thread ended: the next `run` starts a new one."""
        with self._guard:
            if self._lane is lane:
                self._lane = None
        while True:  # nothing is queued to a lane that is not current
            try:
                job = lane.jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.answer(StoreUnavailable("inbox writer stopped; retry later"))

    def _transaction(self, conn: Connection, job: _Job[T]) -> T:
        conn.begin()  # SQLAlchemy's side only (pysqlite emits nothing): its COMMIT/ROLLBACK end ours
        try:
            self._begin_immediate(conn, job)
            result = job.work(conn)
            if job.abandoned.is_set():
                raise Abandoned("the inbox writer stopped waiting for this batch")
            conn.commit()
            return result
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise

    def _begin_immediate(self, conn: Connection, job: _Job[Any]) -> None:
        """Take SQLite's write lock, trying every LOCK_POLL_S (the connection has no busy timeout: SQLite's
        own handler sleeps 1, 2, 5, 10… ms); past `lock_wait_s` raise OperationalError (store down)."""
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        deadline = time.monotonic() + job.lock_wait_s
        while True:
            if job.abandoned.is_set():
                raise Abandoned("the inbox writer stopped waiting for this batch")
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _locked(exc) or time.monotonic() > deadline:
                    raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            time.sleep(LOCK_POLL_S)

    def _after_failure(self, conn: Connection | None, exc: Exception) -> Connection | None:
        """Keep the connection after a failed job, unless the store failed (I/O, a lock never freed,
        a broken connection): then the next job opens a new one."""
        broken = isinstance(exc, OperationalError) or (
            conn is not None and (conn.closed or conn.invalidated or conn.in_transaction())
        )
        if conn is None or not broken:
            return conn
        with contextlib.suppress(Exception):
            conn.close()
        return None
