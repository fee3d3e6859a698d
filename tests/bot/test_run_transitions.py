"""A run's claim and finish (the worker's two writes around every run) leave the same rows on SQLite and
PostgreSQL; on PostgreSQL each is one statement (bot/store/runs_pg.py), and still all or nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store import inbox, runs, status
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.store.tables import Activity
from bot.triggers import TicketLabelled
from config.settings import async_database_url
from handlers.actions import Enqueue


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(async_database_url(db_url))
    await upgrade(engine)
    yield engine
    await engine.dispose()


async def _queued(engine: AsyncEngine, n: int = 1) -> str:
    action = Enqueue(
        "implement", f"jira:DEMO-{n}", f"o:{n}", TicketLabelled(issue_key=f"DEMO-{n}", issue_id="7")
    )
    incoming = inbox.Incoming("jira", f"k{n}", "jira:issue_updated", {"n": n}, "jira:dan")
    recorded = await inbox.record(sessionmaker(engine), incoming, action)
    assert recorded.run_id is not None
    return recorded.run_id


async def _trail(engine: AsyncEngine, run_id: str) -> list[tuple[str, str, str, Any]]:
    query = select(Activity).where(Activity.run_id == run_id).order_by(Activity.id)
    async with sessionmaker(engine)() as session:
        rows = (await session.execute(query)).scalars()
        return [(a.actor, a.action, a.message, a.data) for a in rows if a.actor != "jira:dan"]


async def test_claims_and_finishes_leave_the_same_trail_on_either_store(engine: AsyncEngine) -> None:
    sm = sessionmaker(engine)
    run_id = await _queued(engine)

    first = await runs.claim(sm, run_id, "w1")
    assert first is not None
    assert (first.id, first.kind, first.subject, first.status, first.attempts) == (
        run_id, "implement", "jira:DEMO-1", status.RUNNING, 1,
    )  # fmt: skip
    assert isinstance(first.trigger, TicketLabelled) and first.trigger.issue_key == "DEMO-1"
    assert first.updated >= first.created
    again = await runs.claim(sm, run_id, "w2")  # a running run is still active: a crashed worker's run
    assert again is not None and again.attempts == 2
    await runs.finish(sm, run_id, status.WAITING, "w2", "proposal posted", needs_human=True)
    assert await runs.claim(sm, run_id, "w3") is None  # waiting: not claimed, nothing logged
    await runs.finish(sm, run_id, status.FAILED, "w3", "late")  # not running: the run keeps its status

    stored = await runs.get(sm, run_id)
    assert (stored.status, stored.error, stored.attempts) == (status.WAITING, None, 2)
    assert await _trail(engine, run_id) == [
        ("w1", "claimed", "picked up by worker w1", None),
        ("w2", "claimed", "picked up by worker w2", None),
        ("w2", status.WAITING, "proposal posted", {"needs_human": True}),
        ("w3", status.FAILED, "late", None),
    ]


async def test_a_failed_finish_stores_its_reason(engine: AsyncEngine) -> None:
    sm = sessionmaker(engine)
    run_id = await _queued(engine)
    assert await runs.claim(sm, run_id, "w1") is not None
    await runs.finish(sm, run_id, status.FAILED, "w1", "RuntimeError: boom")
    stored = await runs.get(sm, run_id)
    assert (stored.status, stored.error) == (status.FAILED, "RuntimeError: boom")
    assert await runs.claim(sm, run_id, "w1") is None


class Statements:
    """The statements an engine sends, by their first word."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.seen: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._saw)

    def _saw(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(statement.split()[0].upper())


async def test_on_postgresql_a_claim_and_a_finish_are_one_statement_each(pg_url: str) -> None:
    engine = create_engine(async_database_url(pg_url))
    try:
        await upgrade(engine)
        sm = sessionmaker(engine)
        run_id = await _queued(engine)
        statements = Statements(engine)
        assert await runs.claim(sm, run_id, "w1") is not None
        assert statements.seen == ["WITH"]
        await runs.finish(sm, run_id, status.SUCCEEDED, "w1", "replied")
        assert statements.seen == ["WITH", "WITH"]
        assert (await runs.get(sm, run_id)).status == status.SUCCEEDED
    finally:
        await engine.dispose()


async def test_on_postgresql_a_claim_whose_activity_fails_leaves_the_run_queued(pg_url: str) -> None:
    """All or nothing: the activity's actor is at most 255 characters, so its INSERT fails, and the run's
    UPDATE in the same statement is not kept either."""
    engine = create_engine(async_database_url(pg_url))
    try:
        await upgrade(engine)
        sm = sessionmaker(engine)
        run_id = await _queued(engine)
        with pytest.raises(DBAPIError):
            await runs.claim(sm, run_id, "w" * 300)
        stored = await runs.get(sm, run_id)
        assert (stored.status, stored.attempts) == (status.QUEUED, 0)
        assert await _trail(engine, run_id) == []
        assert await runs.claim(sm, run_id, "w1") is not None
        with pytest.raises(DBAPIError):  # a finish whose activity fails leaves the run running
            await runs.finish(sm, run_id, status.SUCCEEDED, "w" * 300, "replied")
        assert (await runs.get(sm, run_id)).status == status.RUNNING
    finally:
        await engine.dispose()
