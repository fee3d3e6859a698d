"""The graph's task rows on a migrated SQLite store (migration 0003): created once, started by
compare-and-set (many schedulers at once start a task once), failures and retries, a task run's cost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store import tasks
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.store.tables import Phase, Run

NOW = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
SPECS = [
    {"id": "A", "repository": "demo/catalog", "goal": "a", "depends_on": []},
    {"id": "D", "repository": "demo/storefront", "goal": "d", "depends_on": ["A"]},
]
PARENT = {"subject": "jira:DEMO-1", "input": {"trigger": "ticket_labelled", "issue_id": "10001"}}


@pytest.fixture
async def sm(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}")
    await upgrade(engine)
    maker = sessionmaker(engine)
    async with maker.begin() as session:
        await session.execute(
            insert(Run),
            [dict(id="graph1", kind="implement", subject="jira:DEMO-1", origin="o1", status="waiting",
                  input=PARENT["input"], created_at=NOW, updated_at=NOW)],
        )  # fmt: skip
    yield maker
    await engine.dispose()


async def test_tasks_are_created_once_in_plan_order(sm: async_sessionmaker[AsyncSession]) -> None:
    assert await tasks.create(sm, "graph1", SPECS)
    assert not await tasks.create(sm, "graph1", [*SPECS, {"id": "Z", "repository": "x/y", "goal": "z"}])
    rows = await tasks.of_graph(sm, "graph1")
    assert [(r.task_id, r.status, r.repository) for r in rows] == [
        ("A", "pending", "demo/catalog"),
        ("D", "pending", "demo/storefront"),
    ]


async def test_ten_schedulers_at_once_start_a_task_once(sm: async_sessionmaker[AsyncSession]) -> None:
    await tasks.create(sm, "graph1", SPECS)
    started = await asyncio.gather(*(tasks.start(sm, "graph1", "A", PARENT) for _ in range(10)))
    run_ids = [r for r in started if r is not None]
    assert len(run_ids) == 1
    async with sm() as session:
        count = await session.scalar(select(func.count()).select_from(Run).where(Run.kind == tasks.TASK_KIND))
        run = (await session.execute(select(Run).where(Run.id == run_ids[0]))).scalar_one()
    assert count == 1 and run.status == "queued" and run.subject == "jira:DEMO-1"
    assert run.origin == "graph:graph1:A:1" and run.input == PARENT["input"]
    (row,) = [r for r in await tasks.of_graph(sm, "graph1") if r.task_id == "A"]
    assert row.status == "queued" and row.run_id == run_ids[0] and row.attempts == 1
    assert await tasks.by_run(sm, run_ids[0]) == row
    await tasks.begin(sm, run_ids[0])
    assert (await tasks.by_run(sm, run_ids[0])).status == "running"  # type: ignore[union-attr]


async def test_a_retry_starts_a_new_run_and_counts_the_attempt(sm: async_sessionmaker[AsyncSession]) -> None:
    await tasks.create(sm, "graph1", SPECS)
    first = await tasks.start(sm, "graph1", "A", PARENT)
    assert first is not None
    assert await tasks.mark(sm, "graph1", ["A"], "failed", error="boom", finished_at=NOW) == 1
    assert await tasks.start(sm, "graph1", "A", PARENT) is None  # failed is not pending
    # /retry: only failed or blocked tasks go back to pending
    assert await tasks.mark(sm, "graph1", ["A", "D"], "pending", only_from=("failed", "blocked")) == 1
    second = await tasks.start(sm, "graph1", "A", PARENT)
    assert second is not None and second != first
    (row,) = [r for r in await tasks.of_graph(sm, "graph1") if r.task_id == "A"]
    assert row.attempts == 2 and row.error is None and row.run_id == second


async def test_a_tasks_cost_is_every_attempts_phases(sm: async_sessionmaker[AsyncSession]) -> None:
    await tasks.create(sm, "graph1", SPECS)
    failed = await tasks.start(sm, "graph1", "A", PARENT)
    await tasks.mark(sm, "graph1", ["A"], "pending")  # it failed; /retry
    run_id = await tasks.start(sm, "graph1", "A", PARENT)
    async with sm.begin() as session:
        await session.execute(
            insert(Phase),
            [dict(run_id=r, name=n, position=i, status="done", cost_usd=0.25, input_tokens=10,
                  output_tokens=5)
             for r in (failed, run_id) for i, n in enumerate(("assemble", "implement"))],
        )  # fmt: skip
    rows = {r.task_id: r for r in await tasks.of_graph(sm, "graph1")}
    assert rows["A"].cost_usd == 1.0 and rows["A"].tokens == 60 and rows["A"].run_id == run_id
    assert rows["D"].cost_usd == 0.0
    shown = tasks.shown(rows["A"])
    assert shown["task"] == "A" and shown["status"] == "queued" and shown["depends_on"] == []
