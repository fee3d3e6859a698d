"""The inbox's group commit (bot/store/group.py): many deliveries per transaction, the same decisions and
rows as `inbox.record` one by one, nothing of a failed batch stored, every caller told (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.errors import StoreUnavailable
from bot.redact import Redactor
from bot.store import group, inbox
from bot.store.engine import create_engine, sessionmaker
from bot.store.group import GroupCommitter, Planned, plan
from bot.store.inbox import DUPLICATE, ENQUEUED, IGNORED, JOINED, REPLIED, Incoming
from bot.store.migrate import upgrade
from bot.store.tables import Activity, Delivery, Run
from bot.triggers import JiraReplyTarget, TicketLabelled
from config.settings import async_database_url
from handlers.actions import Action, Enqueue, Ignore, Reply

CANARY = "canary-group-secret-5e6f7a8b"


def enqueue(origin: str, ticket: str = "DEMO-1") -> Enqueue:
    return Enqueue(
        "implement", f"jira:{ticket}", origin, TicketLabelled(issue_key=ticket, issue_id="1", summary=CANARY)
    )


def reply(origin: str) -> Reply:
    return Reply(
        target=JiraReplyTarget(issue_key="DEMO-2"),
        text=f"did you mean /approve? {CANARY}",
        subject="jira:DEMO-2",
        origin=origin,
    )


def incoming(key: str, source: str = "jira") -> Incoming:
    return Incoming(source, key, "jira:issue_updated", {"key": key, "note": CANARY}, "jira:dan")


# --- the decisions (pure) ----------------------------------------------------------------------------

IDS = itertools.count()


def fresh_id() -> str:
    return f"run{next(IDS)}"


def test_plan_decides_each_delivery_in_order_like_record_one_by_one() -> None:
    items: list[tuple[Incoming, Action]] = [
        (incoming("a"), enqueue("o1")),  # new run
        (incoming("a"), enqueue("o1")),  # same key again in the batch: duplicate of the first
        (incoming("b"), enqueue("o1")),  # same origin, another key (Jira's second delivery): joins
        (incoming("c"), Ignore("not for Baton")),
        (incoming("c", source="gitlab"), Ignore("other source, same key: a different delivery")),
        (incoming("d"), reply("o2")),  # a reply run
        (incoming("stored"), enqueue("o3")),  # a key already stored: duplicate of the stored one
        (incoming("e"), enqueue("stored-origin")),  # an origin already stored: joins that run
        (incoming("b"), Ignore("a redelivery of the joined one")),  # duplicate of a joined delivery
    ]
    out = plan(items, {("jira", "stored"): (41, "runS")}, {"stored-origin": "runT"}, lambda: "new")
    assert out == [
        Planned(ENQUEUED, "new"),
        Planned(DUPLICATE, "new", same_as=0),
        Planned(JOINED, "new", reason="same origin as run new"),
        Planned(IGNORED, reason="not for Baton"),
        Planned(IGNORED, reason="other source, same key: a different delivery"),
        Planned(REPLIED, "new"),
        Planned(DUPLICATE, "runS", existing=41),
        Planned(JOINED, "runT", reason="same origin as run runT"),
        Planned(DUPLICATE, "new", same_as=2),
    ]
    assert [p.stored_here for p in out] == [True, False, True, True, True, True, False, True, False]


def test_plan_of_an_empty_or_all_duplicate_batch_stores_nothing() -> None:
    assert plan([], {}, {}) == []
    stored = {("jira", "a"): (1, None)}
    out = plan([(incoming("a"), Ignore("x")), (incoming("a"), enqueue("o"))], stored, {}, fresh_id)
    assert out == [Planned(DUPLICATE, None, existing=1), Planned(DUPLICATE, None, existing=1)]


# --- against the databases --------------------------------------------------------------------------


@pytest.fixture
async def engines(db_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """A migrated store: the plain engine and the inbox's own (as `shell.services.build` makes them)."""
    url = async_database_url(db_url)
    plain = create_engine(url, Redactor([CANARY]))
    await upgrade(plain)
    ingest = create_engine(url, Redactor([CANARY]), ingest=True) if plain.dialect.name == "sqlite" else plain
    yield plain, ingest
    await ingest.dispose()
    await plain.dispose()


class Gate:
    """Where a blocked write waits: `entered` says a batch got there, `release()` lets it go on (both the
    event loop's write, PostgreSQL, and the SQLite writer thread's)."""

    def __init__(self) -> None:
        self.entered, self._release, self._thread_release = (
            asyncio.Event(),
            asyncio.Event(),
            threading.Event(),
        )

    def release(self) -> None:
        self._release.set()
        self._thread_release.set()


def blocking_write(monkeypatch: pytest.MonkeyPatch) -> Gate:
    """The batch's write waits inside its transaction until released."""
    gate, loop = Gate(), asyncio.get_running_loop()
    real_write, real_write_sync = group.write, group.write_sync

    async def held(conn: Any, items: Any) -> Any:
        gate.entered.set()
        await gate._release.wait()
        return await real_write(conn, items)

    def held_sync(conn: Any, items: Any) -> Any:
        loop.call_soon_threadsafe(gate.entered.set)
        gate._thread_release.wait(30)
        return real_write_sync(conn, items)

    monkeypatch.setattr(group, "write", held)
    monkeypatch.setattr(group, "write_sync", held_sync)
    return gate


def replace_write(monkeypatch: pytest.MonkeyPatch, after: Callable[[Any], Any]) -> None:
    """The batch's write returns `after(what the real write returned)` (on both paths)."""
    real_write, real_write_sync = group.write, group.write_sync

    async def replaced(conn: Any, items: Any) -> Any:
        return after(await real_write(conn, items))

    def replaced_sync(conn: Any, items: Any) -> Any:
        return after(real_write_sync(conn, items))

    monkeypatch.setattr(group, "write", replaced)
    monkeypatch.setattr(group, "write_sync", replaced_sync)


def commits(committer: GroupCommitter) -> list[int]:
    """Counts the committer's commits (its writer thread's engine on SQLite)."""
    counted: list[int] = []
    event.listen(writing_engine(committer), "commit", lambda _conn: counted.append(1))
    return counted


def writing_engine(committer: GroupCommitter) -> Engine:
    return committer.thread.engine if committer.thread is not None else committer.engine.sync_engine


async def rows(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """What is stored, with run ids replaced by their origin (ids are random) and without times."""
    async with engine.connect() as conn:
        origin: dict[str | None, str | None] = dict((await conn.execute(select(Run.id, Run.origin))).all())
        deliveries = (
            await conn.execute(
                select(Delivery.source, Delivery.dedup_key, Delivery.event, Delivery.outcome, Delivery.reason,
                       Delivery.run_id, Delivery.payload).order_by(Delivery.source, Delivery.dedup_key)
            )
        ).all()  # fmt: skip
        runs = (
            await conn.execute(
                select(Run.origin, Run.kind, Run.subject, Run.status, Run.attempts).order_by(Run.origin)
            )
        ).all()
        raw_inputs = (await conn.execute(text("SELECT origin, input FROM runs ORDER BY origin"))).all()
        activity = (
            await conn.execute(select(Activity.run_id, Activity.actor, Activity.action, Activity.message))
        ).all()
    named = {**origin, None: None}
    return {
        "deliveries": [(*d[:4], (d[4] or "").replace(str(d[5]), str(named.get(d[5]))), named.get(d[5]), d[6])
                       for d in deliveries],
        "runs": [tuple(r) for r in runs],
        "inputs": [(o, json.loads(i) if isinstance(i, str) else i) for o, i in raw_inputs],  # as stored
        "activity": sorted((named[a[0]], *a[1:]) for a in activity),
    }  # fmt: skip


def mixed(n: int, seed: int) -> list[tuple[Incoming, Action]]:
    """Deliveries with repeated keys and origins, as redeliveries and Jira's twin deliveries make them."""
    rng = random.Random(seed)
    out: list[tuple[Incoming, Action]] = []
    for _ in range(n):
        key, origin = f"k{rng.randrange(n // 2)}", f"o{rng.randrange(n // 3)}"
        kind = rng.choice(["enqueue", "reply", "ignore"])
        action: Action = (
            enqueue(origin)
            if kind == "enqueue"
            else reply(origin)
            if kind == "reply"
            else Ignore(f"skip {key}")
        )
        out.append((incoming(key, rng.choice(["jira", "gitlab"])), action))
    return out


async def test_concurrent_deliveries_share_transactions_and_store_what_record_stores(
    engines: tuple[AsyncEngine, AsyncEngine], tmp_path: Path
) -> None:
    """60 deliveries arriving together are committed in a few transactions (old code: one each), with the
    same answers, rows, redaction and activity as `inbox.record` called one after another."""
    plain, ingest = engines
    items = mixed(60, seed=7)
    committer = GroupCommitter(ingest)
    assert (committer.thread is not None) == (plain.dialect.name == "sqlite")  # SQLite: the writer thread
    counted = commits(committer)
    grouped = await asyncio.gather(*(committer.record(i, a) for i, a in items))
    await committer.close()
    assert committer.batches == len(counted) < 5, (committer.batches, len(counted))

    reference = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'reference.db'}", Redactor([CANARY]))
    await upgrade(reference)
    one_by_one = [await inbox.record(sessionmaker(reference), i, a) for i, a in items]
    try:
        assert [r.outcome for r in grouped] == [r.outcome for r in one_by_one]
        assert await rows(plain) == await rows(reference)
    finally:
        await reference.dispose()
    stored = await rows(plain)
    assert CANARY not in str(stored["inputs"]) + str(stored["activity"])  # redacted, as record does
    assert any(CANARY in str(d[-1]) for d in stored["deliveries"])  # the delivery kept as sent
    async with plain.connect() as conn:
        by_id = {
            i: (s, k)
            for i, s, k in (await conn.execute(select(Delivery.id, Delivery.source, Delivery.dedup_key)))
        }
    for (item, _), result in zip(items, grouped, strict=True):  # each answer names its stored delivery
        assert result.delivery_id is not None
        assert by_id[result.delivery_id] == (item.source, item.dedup_key)


async def test_a_quiet_server_commits_each_delivery_at_once(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    _, ingest = engines
    committer = GroupCommitter(ingest)
    for n in range(3):
        recorded = await committer.record(incoming(f"q{n}"), enqueue(f"quiet{n}"))
        assert recorded.outcome == ENQUEUED and recorded.run_id
    assert committer.batches == 3
    await committer.close()


async def test_a_failed_batch_stores_none_of_its_deliveries_and_every_caller_gets_the_error(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, ingest = engines
    committer = GroupCommitter(ingest)

    def fail(_written: Any) -> Any:  # every row inserted, then the transaction fails before its commit
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    replace_write(monkeypatch, fail)
    answers = await asyncio.gather(
        *(committer.record(incoming(f"f{n}"), enqueue(f"fail{n}")) for n in range(10)), return_exceptions=True
    )
    assert all(isinstance(a, OperationalError) for a in answers), answers
    assert (await rows(plain))["deliveries"] == []
    monkeypatch.undo()  # the store is back: the same deliveries are accepted
    again = await asyncio.gather(
        *(committer.record(incoming(f"f{n}"), enqueue(f"fail{n}")) for n in range(10))
    )
    assert [a.outcome for a in again] == [ENQUEUED] * 10
    assert len((await rows(plain))["runs"]) == 10
    await committer.close()


async def test_keys_another_server_stored_meanwhile_are_recorded_one_by_one(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the batch's reads and its inserts another process stores one of its keys: the batch's
    insert fails on the unique key, and every delivery is recorded by `inbox.record` instead."""
    plain, ingest = engines
    other = await inbox.record(sessionmaker(plain), incoming("raced"), enqueue("raced-origin"))

    def nothing_stored(items: Any, found: Any) -> tuple[dict[Any, Any], dict[str, str]]:
        return {}, {}

    monkeypatch.setattr(group, "_found", nothing_stored)
    committer = GroupCommitter(ingest)
    answers = await asyncio.gather(
        committer.record(incoming("new-1"), enqueue("o-new-1")),
        committer.record(incoming("raced"), enqueue("raced-origin")),
        committer.record(incoming("new-2"), Ignore("x")),
    )
    assert [a.outcome for a in answers] == [ENQUEUED, DUPLICATE, IGNORED]
    assert answers[1].run_id == other.run_id and answers[1].delivery_id == other.delivery_id
    assert len((await rows(plain))["deliveries"]) == 3
    await committer.close()


async def test_a_caller_that_goes_away_does_not_take_the_others_with_it(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Callers cancelled while their delivery is queued and while its batch is in flight: the others are
    answered, and every queued delivery is stored exactly once (the sender's retry is a duplicate of the
    same run, not a second run and not a loss)."""
    plain, ingest = engines
    gate = blocking_write(monkeypatch)
    committer = GroupCommitter(ingest)
    tasks = [asyncio.create_task(committer.record(incoming(f"c{n}"), enqueue(f"co{n}"))) for n in range(8)]
    await asyncio.wait_for(gate.entered.wait(), 5)  # c0..c7 are in the batch the writer is writing
    tasks[3].cancel()
    late = [asyncio.create_task(committer.record(incoming(f"c{n}"), enqueue(f"co{n}"))) for n in (8, 9)]
    await asyncio.sleep(0)
    late[0].cancel()  # c8 is queued behind the batch in flight
    gate.release()
    done = await asyncio.wait_for(asyncio.gather(*tasks, *late, return_exceptions=True), 10)
    assert isinstance(done[3], asyncio.CancelledError) and isinstance(done[8], asyncio.CancelledError)
    answered = [d for i, d in enumerate(done) if i not in (3, 8)]
    assert all(isinstance(d, inbox.Recorded) and d.outcome == ENQUEUED for d in answered), answered
    for gone in (3, 8):  # the sender, seeing no answer, sends it again
        again = await committer.record(incoming(f"c{gone}"), enqueue(f"co{gone}"))
        assert again.outcome == DUPLICATE and again.run_id
    await committer.close()
    assert sorted(d[1] for d in (await rows(plain))["deliveries"]) == sorted(f"c{n}" for n in range(10))
    assert len((await rows(plain))["runs"]) == 10


async def test_sqlite_ingest_waits_for_another_writer_and_fails_only_past_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker holds SQLite's write lock: the inbox polls for it (no busy timeout of its own), records
    as soon as it is free, and answers an error only when it stays taken longer than LOCK_WAIT_S."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}"
    plain = create_engine(url)
    await upgrade(plain)
    ingest = create_engine(url, ingest=True)
    committer = GroupCommitter(ingest)
    try:
        async with plain.connect() as holder:
            await holder.exec_driver_sql("BEGIN IMMEDIATE")
            waiting = asyncio.create_task(committer.record(incoming("w1"), enqueue("wo1")))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await holder.rollback()
        assert (await waiting).outcome == ENQUEUED

        monkeypatch.setattr(group, "LOCK_WAIT_S", 0.1)
        async with plain.connect() as holder:
            await holder.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError, match="locked"):
                await committer.record(incoming("w2"), enqueue("wo2"))
            await holder.rollback()
        assert (await committer.record(incoming("w2"), enqueue("wo2"))).outcome == ENQUEUED
    finally:
        await committer.close()
        await ingest.dispose()
        await plain.dispose()


async def test_sqlite_ingest_checkpoints_the_wal_beside_its_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inbox's connections never checkpoint inside a commit (wal_autocheckpoint=0); the writer copies
    the WAL into the database file itself, on another connection: the rows are in the file proper."""
    path = tmp_path / "baton.db"
    plain = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(plain)
    await plain.dispose()
    ingest = create_engine(f"sqlite+aiosqlite:///{path}", ingest=True)
    async with ingest.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar() == 0
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 0
    monkeypatch.setattr(group, "CHECKPOINT_EVERY_S", 0.0)
    holder = sqlite3.connect(path)  # a reader throughout: closing the engine is not the last close (which
    holder.execute("SELECT count(*) FROM deliveries").fetchone()  # would checkpoint by itself)
    try:
        committer = GroupCommitter(ingest)
        for n in range(5):
            await committer.record(incoming(f"cp{n}"), enqueue(f"cp-origin{n}"))
            if committer._checkpoint is not None:  # one at a time: let it finish before the next commit
                await committer._checkpoint
        await committer.close()
        await ingest.dispose()
        file_only = sqlite3.connect(f"file:{path}?immutable=1", uri=True)  # the file proper, not the WAL
        try:
            assert file_only.execute("SELECT count(*) FROM deliveries").fetchone() == (5,)
        finally:
            file_only.close()
    finally:
        holder.close()


async def test_a_failing_batch_metric_neither_loses_nor_holds_a_delivery(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    plain, ingest = engines

    def broken(size: int) -> None:
        raise RuntimeError("metrics backend gone")

    committer = GroupCommitter(ingest, on_batch=broken)
    answers = await asyncio.wait_for(
        asyncio.gather(*(committer.record(incoming(f"m{n}"), Ignore("x")) for n in range(5))), 10
    )
    assert [a.outcome for a in answers] == [IGNORED] * 5
    assert len((await rows(plain))["deliveries"]) == 5
    await committer.close()


# --- the review's findings: index use, one bad delivery, a bounded queue, a writer that stops ---------


async def test_the_batch_lookup_searches_the_unique_index(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    """The stored-deliveries lookup constrains both columns of (source, dedup_key), so the store searches
    the index instead of scanning every delivery (under SQLite's write lock). Old code: `SCAN deliveries`
    on SQLite; on PostgreSQL an index condition on dedup_key alone (the whole index read)."""
    _, ingest = engines
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        if "FROM deliveries" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    committer = GroupCommitter(ingest)
    event.listen(writing_engine(committer), "before_cursor_execute", capture)
    items = [(incoming(f"ix{n}", source), Ignore("x")) for n in range(4) for source in ("jira", "gitlab")]
    await asyncio.gather(*(committer.record(i, a) for i, a in items))
    await committer.close()
    event.remove(writing_engine(committer), "before_cursor_execute", capture)
    assert seen
    statement, parameters = seen[-1]
    async with ingest.connect() as conn:
        if ingest.dialect.name == "sqlite":
            plan_rows = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)).all()
            steps = [str(r[-1]) for r in plan_rows if "deliveries" in str(r[-1])]
            assert steps and all(
                s.startswith("SEARCH deliveries USING") and "(source=? AND dedup_key=?)" in s for s in steps
            ), steps
        else:
            await conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: judge the conditions
            plan_rows = (await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)).all()
            text_plan = "\n".join(str(r[0]) for r in plan_rows)
            conditions = [line for line in text_plan.splitlines() if "Index Cond" in line]
            assert any("source" in c and "dedup_key" in c for c in conditions), text_plan


def unserializable(origin: str) -> Enqueue:
    """An input the inbox cannot serialize (a handler bug): `triggers.dump` raises."""
    broken = TicketLabelled.model_construct(issue_key="DEMO-9", issue_id="9", summary=object())  # type: ignore[arg-type]
    return Enqueue("implement", "jira:DEMO-9", origin, broken)


def too_long_subject(origin: str) -> Enqueue:
    """A subject longer than runs.subject's 255 characters: PostgreSQL refuses it (a DataError)."""
    action = enqueue(origin)
    return Enqueue(action.kind, "jira:" + "S" * 300, origin, action.input)


async def test_one_bad_delivery_fails_alone_and_is_stored_as_ignored(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """A delivery that can never be stored as sent (its input does not serialize; on PostgreSQL a value
    a column refuses) does not fail the others of its batch (old code: all got the error, a 503), and is
    itself stored as ignored, without payload, so its sender gets a 200 instead of a 503 forever."""
    plain, ingest = engines
    postgres = plain.dialect.name != "sqlite"
    bad: dict[int, Action] = {
        3: unserializable("bad-dump"),
        6: too_long_subject("bad-subject"),
        8: Ignore("a reason with a NUL \x00 byte"),  # PostgreSQL's text refuses NUL (SQLSTATE 22021)
    }
    items: list[tuple[Incoming, Action]] = [
        (incoming(f"b{n}"), bad.get(n) or enqueue(f"good{n}")) for n in range(10)
    ]
    committer = GroupCommitter(ingest)
    answers = await asyncio.wait_for(asyncio.gather(*(committer.record(i, a) for i, a in items)), 10)
    await committer.close()
    refused = {3, 6, 8} if postgres else {3}  # SQLite keeps any length and NUL bytes
    for n, answer in enumerate(answers):
        if n in refused:
            assert answer.outcome == IGNORED and answer.run_id is None, answer
            assert answer.reason and answer.reason.startswith("not storable as sent ("), answer.reason
            assert CANARY not in answer.reason
        elif n == 8:
            assert answer.outcome == IGNORED and answer.reason == "a reason with a NUL \x00 byte"
        else:
            assert answer.outcome == ENQUEUED and answer.run_id, (n, answer)
    stored = await rows(plain)
    by_key = {d[1]: d for d in stored["deliveries"]}
    assert sorted(by_key) == sorted(f"b{n}" for n in range(10))
    assert all(by_key[f"b{n}"][3] == IGNORED and by_key[f"b{n}"][-1] is None for n in refused)
    assert len(stored["runs"]) == 9 - len(refused - {8})  # nine deliveries start a run


async def test_a_full_queue_is_refused_at_once_with_a_retry(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch is in flight at most `max_queued` deliveries wait behind it; the next one is refused
    at once with StoreUnavailable (503 + Retry-After), not queued without bound holding its body."""
    assert GroupCommitter(engines[1]).max_queued == group.MAX_QUEUED_BATCHES * group.MAX_BATCH
    _, ingest = engines
    gate = blocking_write(monkeypatch)
    committer = GroupCommitter(ingest, max_batch=2, max_queued=3)
    first = asyncio.create_task(committer.record(incoming("q0"), enqueue("qo0")))
    await asyncio.wait_for(gate.entered.wait(), 5)  # q0's batch is in flight
    queued = [asyncio.create_task(committer.record(incoming(f"q{n}"), enqueue(f"qo{n}"))) for n in (1, 2, 3)]
    await asyncio.sleep(0)
    with pytest.raises(StoreUnavailable, match="queue full"):
        await asyncio.wait_for(committer.record(incoming("q4"), enqueue("qo4")), 1)
    gate.release()
    answers = await asyncio.wait_for(asyncio.gather(first, *queued), 10)
    assert [a.outcome for a in answers] == [ENQUEUED] * 4
    assert (await committer.record(incoming("q4"), enqueue("qo4"))).outcome == ENQUEUED  # room again
    await committer.close()


async def test_cancelling_the_writer_mid_batch_answers_every_caller(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer is cancelled (shutdown) inside a batch's transaction: the callers of that batch and of
    the queue behind it get StoreUnavailable (503) at once (old code: they waited forever); nothing of the
    batch is stored, and the next delivery starts a new writer."""
    plain, ingest = engines
    gate = blocking_write(monkeypatch)
    committer = GroupCommitter(ingest)
    in_flight = [
        asyncio.create_task(committer.record(incoming(f"x{n}"), enqueue(f"xo{n}"))) for n in range(3)
    ]
    await asyncio.wait_for(gate.entered.wait(), 5)
    behind = [asyncio.create_task(committer.record(incoming(f"y{n}"), enqueue(f"yo{n}"))) for n in range(2)]
    await asyncio.sleep(0)
    assert committer._writer is not None
    committer._writer.cancel()
    answers = await asyncio.wait_for(asyncio.gather(*in_flight, *behind, return_exceptions=True), 5)
    assert all(isinstance(a, StoreUnavailable) for a in answers), answers
    gate.release()  # the thread, let go, rolls the abandoned batch back instead of committing it
    assert (await committer.record(incoming("x0"), enqueue("xo0"))).outcome == ENQUEUED
    await committer.close()
    assert [d[1] for d in (await rows(plain))["deliveries"]] == ["x0"]  # the abandoned batch: none of it


async def test_a_writer_that_fails_outside_the_transaction_answers_its_batch(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`write` answers fewer results than the batch has deliveries (the zip(strict=True) check raises
    outside the transaction's try): every caller is answered, none waits forever."""
    _, ingest = engines
    replace_write(monkeypatch, lambda written: written[:-1])
    committer = GroupCommitter(ingest)
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(committer.record(incoming(f"z{n}"), Ignore("x")) for n in range(4)), return_exceptions=True
        ),
        5,
    )
    assert all(isinstance(a, inbox.Recorded | StoreUnavailable) for a in answers), answers
    assert any(isinstance(a, StoreUnavailable) for a in answers)
    monkeypatch.undo()
    assert (await committer.record(incoming("z9"), Ignore("x"))).outcome == IGNORED  # a new writer
    await committer.close()
