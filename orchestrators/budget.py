"""Cost budgets: what has been spent on a subject or a team (the phases' recorded cost), the caps that
apply to it (config/projects.yaml `budget`, else BATON_BUDGET_TICKET_USD / BATON_BUDGET_MONTH_USD), and
the check made before every agent call (orchestrators/agents.py): a cap already reached stops the run
with a reply naming it; otherwise what is left goes to the CLI as its own budget (`--max-budget-usd`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.tables import Phase, Run
from config.projects import Project, ProjectMap
from config.settings import Settings

PROJECTS_FILE = "config/projects.yaml"


def usd(amount: float) -> str:
    """`$1,234.50`; an amount under a cent keeps two significant digits (`$0.0005`, `$0.0000000012`), so a
    tiny cap is not `$0.00`; under a trillionth of a dollar it is `$0`."""
    if amount == 0 or abs(amount) >= 0.01:
        return f"${amount:,.2f}"
    digits = min(12, 1 - math.floor(math.log10(abs(amount))))
    return "$" + f"{amount:.{digits}f}".rstrip("0").rstrip(".")


class BudgetExceeded(RuntimeError):
    """A cost cap stops the run; the message names the cap, where it is set and what was spent."""

    def __init__(self, message: str, usage: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.usage = usage or {}  # the tokens and cost of an agent call the CLI stopped at the cap


@dataclass(frozen=True)
class Limit:
    """One configured cap: what it covers, where it is set, the amount."""

    scope: str  # "ticket" (every run on this ticket or merge request) or "month" (the team, this month)
    what: str  # `jira:DEMO-1`, or `DEMO` / `demo/app` for a team
    setting: str  # where a person changes it
    usd: float


@dataclass(frozen=True)
class Cap:
    limit: Limit
    spent_usd: float

    @property
    def remaining_usd(self) -> float:
        return self.limit.usd - self.spent_usd

    def describe(self) -> str:
        """`the per-ticket cap of $0.50 for jira:DEMO-1 (BATON_BUDGET_TICKET_USD)`."""
        limit = self.limit
        scope = "per-ticket cap" if limit.scope == "ticket" else "monthly team cap"
        return f"the {scope} of {usd(limit.usd)} for {limit.what} ({limit.setting})"

    def shown(self) -> str:
        """`ticket $0.42 of $0.50` for the status comment."""
        name = "ticket" if self.limit.scope == "ticket" else f"{self.limit.what} this month"
        return f"{name} {usd(self.spent_usd)} of {usd(self.limit.usd)}"


@dataclass(frozen=True)
class Standing:
    """The caps that apply to a subject and what has been spent against each."""

    caps: tuple[Cap, ...] = ()

    @property
    def tightest(self) -> Cap | None:
        return min(self.caps, key=lambda c: c.remaining_usd, default=None)

    @property
    def remaining_usd(self) -> float | None:
        tightest = self.tightest
        return None if tightest is None else tightest.remaining_usd

    def line(self) -> str:
        """`budget: ticket $0.42 of $0.50 · DEMO this month $3.10 of $100.00`; empty with no cap."""
        return f"budget: {' · '.join(c.shown() for c in self.caps)}" if self.caps else ""

    def stop(self, pending_usd: float = 0.0) -> str | None:
        """Why no agent call may start (a cap reached, counting `pending_usd` not yet recorded), or None.
        It ends at the cap: each workflow adds its own next step (`next_step`)."""
        reached = [c for c in self.caps if c.remaining_usd - pending_usd <= 0]
        if not reached:
            return None
        cap = reached[0]
        return f"Stopped: {cap.describe()} is reached ({usd(cap.spent_usd + pending_usd)} spent)."

    def held(self, pending_usd: float) -> str:
        """Why a call may not start although no cap is reached: what is left is held by calls running
        now on the same ticket or team (bot/holds.py)."""
        cap = self.tightest
        what = f"{cap.describe()} ({usd(cap.remaining_usd - pending_usd)})" if cap else "the cost caps"
        return (
            f"Stopped: what is left of {what} is held by agent calls running now on the same ticket or team."
        )

    def used_up(self, pending_usd: float) -> str:
        """Why the CLI stopped a call at the budget it was given: the cap reached, else the tightest cap
        (whose remainder was the call's budget) with what has been spent against it."""
        reached, cap = self.stop(pending_usd), self.tightest
        if reached is not None or cap is None:
            return reached or "Stopped: the agent call reached the cost budget it was given."
        spent = usd(cap.spent_usd + pending_usd)
        return f"Stopped: the agent call used up what {cap.describe()} left it ({spent} spent)."


def hold_key(limit: Limit, now: datetime) -> str:
    """The key running calls hold budget under (bot/holds.py): `ticket:jira:demo-1`, `month:demo:2026-12`."""
    if limit.scope == "ticket":
        return f"ticket:{limit.what.lower()}"
    return f"month:{limit.what.lower()}:{month_start(now):%Y-%m}"


def next_step(exc: BaseException, otherwise: str, again: str = "/retry") -> str:
    """A failure reply's next step: `otherwise`, or — when a cost cap stopped the run (`exc` or its
    cause is `BudgetExceeded`) — raise the cap, then reply `again`."""
    capped = isinstance(exc, BudgetExceeded) or isinstance(exc.__cause__, BudgetExceeded)
    return f"Raise the cap, then reply {again}." if capped else otherwise


def project_of(subject: str, projects: ProjectMap) -> Project | None:
    """The project map's entry for `jira:KEY-12` or `gitlab:group/app!3` (None when unmapped)."""
    source, _, rest = subject.partition(":")
    if source == "jira":
        key = rest.rpartition("-")[0]
        return projects.for_jira(key) or next((p for p in projects.projects if p.jira_project == key), None)
    if source == "gitlab":
        return projects.for_gitlab(rest.rpartition("!")[0])
    return None


def _team(subject: str, entries: Sequence[Project]) -> tuple[str, tuple[str, ...]]:
    """The team's name and the subject prefixes of its runs: every entry of its Jira project (one per
    component, each with its GitLab project)."""
    if entries:
        jira = entries[0].jira_project
        return jira, team_prefixes(jira, *(p.gitlab_project for p in entries))
    source, _, rest = subject.partition(":")
    name = rest.rpartition("-" if source == "jira" else "!")[0] or rest
    return name, (f"{source}:{name}{'-' if source == 'jira' else '!'}",)


def _team_cap(entries: Sequence[Project]) -> float | None:
    """The team's monthly cap: the tightest `month_usd` its entries set (None: none sets one)."""
    return min((p.budget.month_usd for p in entries if p.budget.month_usd is not None), default=None)


def limits(subject: str, projects: ProjectMap, settings: Settings) -> tuple[list[Limit], tuple[str, ...]]:
    """The caps configured for `subject` (the project's own, else the BATON_BUDGET_* defaults) and the
    subject prefixes of its team's runs."""
    project = project_of(subject, projects)
    entries = [p for p in projects.projects if project is not None and p.jira_project == project.jira_project]
    team, prefixes = _team(subject, entries)
    own = {"ticket_usd": project.budget.ticket_usd if project else None, "month_usd": _team_cap(entries)}
    where = f"budget.{{}} of {team} in {PROJECTS_FILE}"
    found: list[Limit] = []
    for scope, field, env, what in (
        ("ticket", "ticket_usd", "BATON_BUDGET_TICKET_USD", subject),
        ("month", "month_usd", "BATON_BUDGET_MONTH_USD", team),
    ):
        mine = own[field]
        default = getattr(settings, f"budget_{field}")
        if mine is not None:
            found.append(Limit(scope, what, where.format(field), mine))
        elif default is not None:
            found.append(Limit(scope, what, env, default))
    return found, prefixes


async def standing(
    sm: async_sessionmaker[AsyncSession],
    subject: str,
    projects: ProjectMap,
    settings: Settings,
    now: datetime,
) -> Standing:
    """The caps that apply to `subject` with what has been spent against each (no query without a cap)."""
    found, prefixes = limits(subject, projects, settings)
    caps = []
    for limit in found:
        if limit.scope == "ticket":
            caps.append(Cap(limit, await spent(sm, subject)))
        else:
            caps.append(Cap(limit, await spent_since(sm, prefixes, month_start(now))))
    return Standing(tuple(caps))


def team_prefixes(jira_project: str | None, *gitlab_projects: str | None) -> tuple[str, ...]:
    """The subject prefixes of a team's runs: `jira:KEY-` (its tickets) and `gitlab:group/app!` (each
    project's MRs); `spent_since` matches them ignoring case, as the project map matches GitLab paths."""
    prefixes = [f"jira:{jira_project}-"] if jira_project else []
    prefixes += [f"gitlab:{path}!" for path in gitlab_projects if path]
    return tuple(dict.fromkeys(prefixes))


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
    """USD spent at or after `since` by the runs whose subject starts with one of `prefixes`: a phase's
    cost is dated when it last finished (while it runs: when it started), not when its run was created,
    so a January run's work in February counts in February."""
    if not prefixes:
        return 0.0
    subject = func.lower(Run.subject)
    matches = or_(*(subject.startswith(prefix.lower(), autoescape=True) for prefix in prefixes))
    query = (
        select(func.sum(Phase.cost_usd))
        .join(Run, Run.id == Phase.run_id)
        .where(func.coalesce(Phase.finished_at, Phase.started_at) >= since, matches)
    )
    async with sm() as session:
        return float((await session.execute(query)).scalar_one() or 0.0)
