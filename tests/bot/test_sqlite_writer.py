"""The inbox's SQLite writer thread (bot/store/sqlite_writer.py): one transaction per job off the event
loop, every caller answered when the thread stops or dies, nothing lost or stored twice while another
process takes the write lock again and again (real SQLite files, real threads)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.errors import StoreUnavailable
from bot.store import group, inbox
from bot.store.engine import create_engine as create_async_engine
from bot.store.engine import sessionmaker
from bot.store.group import GroupCommitter
from bot.store.migrate import upgrade
from bot.store.sqlite_writer import SqliteWriter
from tests.bot.test_group_commit import enqueue, incoming, mixed, rows


@pytest.fixture
def table(tmp_path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    return engine


def stored(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [n for (n,) in conn.execute(text("SELECT n FROM t ORDER BY n"))]


def insert(n: int, gate: threading.Event | None = None) -> Any:
    def work(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
        if gate is not None:
            gate.wait(30)
        return n

    return work


async def test_stop_lets_the_thread_finish_the_jobs_it_has_then_a_new_job_starts_another(
    table: Engine,
) -> None:
    writer = SqliteWriter(table)
    gate = threading.Event()
    first = asyncio.create_task(writer.run(insert(1, gate), 5))
    second = asyncio.create_task(writer.run(insert(2), 5))
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(writer.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # it waits for the job in hand
    gate.set()
    await asyncio.wait_for(stopping, 10)
    assert await first == 1 and await second == 2
    assert await asyncio.wait_for(writer.run(insert(3), 5), 10) == 3
    await writer.stop()
    assert stored(table) == [1, 2, 3]


async def test_a_thread_that_dies_answers_its_job_and_every_job_behind_it(table: Engine) -> None:
    """A job raises what ends a thread (not an Exception): it and the jobs queued behind it are answered
    StoreUnavailable at once, nothing of them is stored, and the next job gets a new thread."""
    writer = SqliteWriter(table)
    gate = threading.Event()

    def dies(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t (n) VALUES (9)"))
        gate.wait(30)
        raise SystemExit("the thread ends")

    jobs = [asyncio.create_task(writer.run(dies, 5))]
    await asyncio.sleep(0.05)
    jobs += [asyncio.create_task(writer.run(insert(n), 5)) for n in (10, 11)]
    await asyncio.sleep(0.05)
    gate.set()
    answers = await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), 10)
    assert all(isinstance(a, StoreUnavailable) for a in answers), answers
    assert stored(table) == []
    assert await asyncio.wait_for(writer.run(insert(12), 5), 10) == 12
    await writer.stop()
    assert stored(table) == [12]
    assert not [t for t in threading.enumerate() if t.name == writer.name]


async def test_a_failing_job_is_rolled_back_and_the_thread_goes_on(table: Engine) -> None:
    writer = SqliteWriter(table)

    def fails(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t (n) VALUES (20)"))
        raise ValueError("a bad delivery")

    with pytest.raises(ValueError, match="bad delivery"):
        await writer.run(fails, 5)
    with pytest.raises(Exception, match="UNIQUE"):  # an IntegrityError: one statement fails, not the thread
        await writer.run(lambda conn: [insert(21)(conn), insert(21)(conn)], 5)
    assert await writer.run(insert(22), 5) == 22
    await writer.stop()
    assert stored(table) == [22]


# --- the group commit on the thread, against another writer ---------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine, Path]]:
    path = tmp_path / "baton.db"
    plain = create_async_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(plain)
    ingest = create_async_engine(f"sqlite+aiosqlite:///{path}", ingest=True)
    yield plain, ingest, path
    await ingest.dispose()
    await plain.dispose()


def hold_the_lock_again_and_again(path: Path, stop: threading.Event) -> None:
    """Another process's writer (the worker): takes SQLite's write lock for ~2 ms, over and over."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE runs SET attempts = attempts WHERE 0")
            stop.wait(0.002)
            conn.execute("COMMIT")
            stop.wait(0.001)
    finally:
        conn.close()


async def test_many_concurrent_callers_against_another_writer_lose_nothing_and_store_nothing_twice(
    store: tuple[AsyncEngine, AsyncEngine, Path], tmp_path: Path
) -> None:
    """400 deliveries (repeated keys and origins) from concurrent callers while another connection keeps
    taking the write lock: every caller answered, the answers those of `inbox.record` one by one, every
    key stored once and every answer naming its stored delivery."""
    plain, ingest, path = store
    items = mixed(400, seed=11)
    committer = GroupCommitter(ingest)
    assert committer.thread is not None
    stop = threading.Event()
    other = threading.Thread(target=hold_the_lock_again_and_again, args=(path, stop))
    other.start()
    try:
        answers = await asyncio.wait_for(asyncio.gather(*(committer.record(i, a) for i, a in items)), 60)
    finally:
        stop.set()
        other.join()
    await committer.close()
    assert committer.batches < len(items)

    reference = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'reference.db'}")
    await upgrade(reference)
    try:
        one_by_one = [await inbox.record(sessionmaker(reference), i, a) for i, a in items]
        assert [a.outcome for a in answers] == [r.outcome for r in one_by_one]
        assert (await rows(plain))["deliveries"] == (await rows(reference))["deliveries"]
    finally:
        await reference.dispose()
    async with plain.connect() as conn:
        keys: list[Any] = list(await conn.exec_driver_sql("SELECT id, source, dedup_key FROM deliveries"))
    by_id = {i: (s, k) for i, s, k in keys}
    assert len(by_id) == len({(i.source, i.dedup_key) for i, _ in items})
    for (item, _), answer in zip(items, answers, strict=True):
        assert by_id[answer.delivery_id] == (item.source, item.dedup_key)


async def test_a_writer_thread_dying_mid_batch_answers_its_callers_each_stored_once(
    store: tuple[AsyncEngine, AsyncEngine, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread ends inside every batch's transaction (rows written, no commit): each batch is rolled
    back and its deliveries are recorded one by one (as after any failure that is not the store being
    down), so every caller gets its answer and nothing is stored twice; redeliveries are duplicates."""
    plain, ingest, _ = store
    real_write_sync = group.write_sync
    died: list[int] = []

    def dies(conn: Connection, items: Any) -> Any:
        real_write_sync(conn, items)
        died.append(len(items))
        raise SystemExit("the writer thread ends")

    monkeypatch.setattr(group, "write_sync", dies)
    committer = GroupCommitter(ingest)
    first = await asyncio.wait_for(
        asyncio.gather(*(committer.record(incoming(f"d{n}"), enqueue(f"do{n}")) for n in range(5))), 10
    )
    assert sum(died) == 5  # every delivery was in a batch whose thread died
    assert [a.outcome for a in first] == [inbox.ENQUEUED] * 5
    monkeypatch.undo()
    again = await asyncio.wait_for(
        asyncio.gather(*(committer.record(incoming(f"d{n}"), enqueue(f"do{n}")) for n in range(5))), 10
    )
    await committer.close()
    assert [(a.outcome, a.run_id, a.delivery_id) for a in again] == [
        (inbox.DUPLICATE, a.run_id, a.delivery_id) for a in first
    ]
    assert sorted(d[1] for d in (await rows(plain))["deliveries"]) == [f"d{n}" for n in range(5)]
    assert len((await rows(plain))["runs"]) == 5
