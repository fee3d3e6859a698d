"""Cost budgets: spend read from the phases of a migrated SQLite store."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.store.tables import Phase, Run
from orchestrators import budget

NOW = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)
_ids = itertools.count(1)


@pytest.fixture
async def sm(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}")
    await upgrade(engine)
    yield sessionmaker(engine)
    await engine.dispose()


async def add_run(
    sm: async_sessionmaker[AsyncSession], subject: str, costs: list[float], created: datetime = NOW
) -> str:
    run_id = f"run{next(_ids):05d}"
    run: dict[str, Any] = dict(
        id=run_id, kind="ticket", subject=subject, origin=f"origin:{run_id}", status="succeeded",
        input={}, created_at=created, updated_at=created,
    )  # fmt: skip
    phases = [
        dict(run_id=run_id, name=f"p{i}", position=i, status="done", cost_usd=cost)
        for i, cost in enumerate(costs)
    ]
    async with sm.begin() as session:
        await session.execute(insert(Run), [run])
        if phases:
            await session.execute(insert(Phase), phases)
    return run_id


async def test_spent_sums_every_phase_of_every_run_on_the_subject_and_nothing_else(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    assert await budget.spent(sm, "jira:TES-41") == 0.0
    await add_run(sm, "jira:TES-41", [0.25, 0.5])
    await add_run(sm, "jira:TES-41", [1.0], NOW - timedelta(days=40))
    await add_run(sm, "jira:TES-41", [])
    await add_run(sm, "jira:TES-410", [7.0])
    await add_run(sm, "jira:TES-4", [9.0])
    assert await budget.spent(sm, "jira:TES-41") == pytest.approx(1.75)


async def test_spent_since_counts_a_teams_tickets_and_mrs_created_in_the_window(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    await add_run(sm, "jira:TES-1", [1.0])
    await add_run(sm, "jira:TES-2", [0.5], budget.month_start(NOW))
    await add_run(sm, "gitlab:group/app!3", [0.25])
    await add_run(sm, "jira:TES-3", [4.0], budget.month_start(NOW) - timedelta(seconds=1))  # last month
    await add_run(sm, "jira:TESS-1", [8.0])  # another project whose key starts the same
    await add_run(sm, "gitlab:group/app2!1", [16.0])
    await add_run(sm, "gitlab:group/ap%!1", [32.0])  # LIKE wildcards are literal
    prefixes = budget.team_prefixes("TES", "group/app")
    assert prefixes == ("jira:TES-", "gitlab:group/app!")
    assert await budget.spent_since(sm, prefixes, budget.month_start(NOW)) == pytest.approx(1.75)
    assert await budget.spent_since(sm, budget.team_prefixes("TES", None), budget.month_start(NOW)) == 1.5
    assert await budget.spent_since(sm, (), budget.month_start(NOW)) == 0.0
    assert await budget.spent_since(sm, ("gitlab:group/a_p!",), datetime(2000, 1, 1, tzinfo=UTC)) == 0.0


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (datetime(2026, 12, 5, 20, 0, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
        # 00:30 on 1 March in UTC+2 is still February in UTC
        (datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))), datetime(2026, 2, 1, tzinfo=UTC)),
    ],
)
def test_month_start_is_the_first_instant_of_the_utc_calendar_month(now: datetime, start: datetime) -> None:
    assert budget.month_start(now) == start
