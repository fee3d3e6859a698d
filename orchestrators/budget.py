"""Cost budgets: what has been spent on a subject or a team, read from the phases' recorded cost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.tables import Phase, Run


def team_prefixes(jira_project: str | None, gitlab_project: str | None) -> tuple[str, ...]:
    """The subject prefixes of a team's runs: `jira:KEY-` (its tickets) and `gitlab:group/app!` (its MRs)."""
    prefixes = []
    if jira_project:
        prefixes.append(f"jira:{jira_project}-")
    if gitlab_project:
        prefixes.append(f"gitlab:{gitlab_project}!")
    return tuple(prefixes)


def month_start(now: datetime) -> datetime:
    """The first instant of `now`'s calendar month, UTC."""
    utc = now.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


async def spent(sm: async_sessionmaker[AsyncSession], subject: str) -> float:
    """USD spent by every run on `subject` (all its phases' cost, whatever the runs' status)."""
    query = select(func.sum(Phase.cost_usd)).join(Run, Run.id == Phase.run_id).where(Run.subject == subject)
    async with sm() as session:
        return float((await session.execute(query)).scalar_one() or 0.0)


async def spent_since(
    sm: async_sessionmaker[AsyncSession], prefixes: Sequence[str], since: datetime
) -> float:
    """USD spent by the runs created at or after `since` whose subject starts with one of `prefixes`."""
    if not prefixes:
        return 0.0
    matches = or_(*(Run.subject.startswith(prefix, autoescape=True) for prefix in prefixes))
    query = (
        select(func.sum(Phase.cost_usd))
        .join(Run, Run.id == Phase.run_id)
        .where(Run.created_at >= since, matches)
    )
    async with sm() as session:
        return float((await session.execute(query)).scalar_one() or 0.0)
