"""Read-only queries behind the dashboard (`shell/dashboard`): runs with their phase and cost, one run's
record, the proposals that wait for approval, the runs stopped for a person, and cost/outcome aggregates.

Each page costs a handful of statements that use the store's indexes (runs by status, phases, activity
and effects by run) or aggregate in SQL, so a page answers quickly with tens of thousands of runs. Day
buckets are computed in SQL (UTC) on SQLite and PostgreSQL alike; weeks are folded from days here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Integer,
    Select,
    String,
    case,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import triggers
from bot.store import proposals as proposal_states
from bot.store import runs, status
from bot.store.engine import as_utc, utcnow
from bot.store.tables import Activity, Effect, Phase, Proposal, Run

STOP_FLAGS = ("needs_info", "needs_human")
COUNT_CAP = 100  # the runs stopped for a person are counted up to this (the page lists as many)
DECIDED = (proposal_states.APPROVED, proposal_states.SHIPPED, proposal_states.REJECTED)


# --- what the pages get --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFilter:
    """The runs list's filters; None (or empty) means any."""

    status: str | None = None
    kind: str | None = None
    subject: str | None = None  # a case-insensitive part of the subject


@dataclass(frozen=True)
class Progress:
    """Where a run is in its phases: how many are done, and the phase that is running, failed or next."""

    done: int = 0
    total: int = 0
    phase: str | None = None
    phase_status: str | None = None
    cost_usd: float = 0.0
    tokens: int = 0


@dataclass(frozen=True)
class RunLine:
    id: str
    kind: str
    subject: str
    status: str
    title: str
    created: datetime
    updated: datetime
    progress: Progress


@dataclass(frozen=True)
class RunsPage:
    lines: list[RunLine]
    total: int
    page: int
    per_page: int


@dataclass(frozen=True)
class Counts:
    """The figures every page's navigation shows."""

    active: int
    proposals: int
    stopped: int  # at most COUNT_CAP

    @property
    def stopped_shown(self) -> str:
        return f"{COUNT_CAP}+" if self.stopped >= COUNT_CAP else str(self.stopped)


@dataclass(frozen=True)
class ProposalLine:
    id: str
    run_id: str
    subject: str
    status: str
    sha: str
    branch: str
    project: str  # the GitLab project it ships to
    title: str
    created: datetime
    updated: datetime
    comment_id: str | None  # the proposal's comment (Jira) or thread reply (GitLab), once posted
    mr_iid: str | None = None  # the merge request it shipped as


@dataclass(frozen=True)
class StoppedRun:
    id: str
    kind: str
    subject: str
    title: str
    reason: str
    since: datetime
    flags: tuple[str, ...]


@dataclass(frozen=True)
class RunRecord:
    """One run's page: `baton show`'s detail, the phases' stored outputs, its proposals and effects."""

    detail: dict[str, Any]
    title: str
    outputs: dict[str, dict[str, Any]]
    proposals: list[ProposalLine]
    effects: list[tuple[str, str, str]]  # (key, kind, external id) of the run's done external writes


@dataclass(frozen=True)
class DayCost:
    day: date
    cost_usd: float
    runs: int


@dataclass(frozen=True)
class Decisions:
    approved: int = 0
    rejected: int = 0
    superseded: int = 0

    @property
    def rate(self) -> float | None:
        decided = self.approved + self.rejected
        return self.approved / decided if decided else None


@dataclass(frozen=True)
class CostReport:
    since: datetime
    days: list[DayCost]  # one per day of the window, empty days included
    rounds: dict[int, int]  # implement rounds → runs
    decisions_by_week: dict[date, Decisions]  # Monday of the week → decisions taken that week
    by_project_week: dict[str, dict[date, float]]  # project → Monday → cost
    top_subjects: list[tuple[str, float, int]]  # (subject, cost, runs), most expensive first
    outcomes: dict[str, int]  # run status → runs created in the window
    waiting_now: int = 0
    decisions: Decisions = field(default_factory=Decisions)
    as_of: datetime | None = None  # when the figures were read


# --- helpers -------------------------------------------------------------------------------------


def title_of(trigger: triggers.AnyTrigger | triggers.Unreadable) -> str:
    """A line saying what the run is about: the ticket's summary, the command's words, the reply."""
    if isinstance(trigger, triggers.TicketLabelled):
        text = trigger.summary or ""
    elif isinstance(trigger, triggers.TicketCommand | triggers.ThreadCommand):
        text = trigger.args
    elif isinstance(trigger, triggers.ReplyRequest):
        text = trigger.text
    elif isinstance(trigger, triggers.MergeRequestPushed):
        text = f"new commits on {trigger.source_branch} ({trigger.head_sha[:12]})"
    elif isinstance(trigger, triggers.Unreadable):
        text = f"unreadable input: {trigger.error}"
    else:  # a trigger without words of its own
        text = trigger.trigger.replace("_", " ")
    return " ".join(text.split())  # one line; the page shortens it (after screening it for secrets)


def _title(stored: Any) -> str:
    return title_of(triggers.parse(stored if isinstance(stored, dict) else {}))


def _dialect(session: AsyncSession) -> str:
    bind = session.bind
    return bind.dialect.name if bind is not None else "sqlite"


def _day(session: AsyncSession, column: Any) -> ColumnElement[str]:
    """`YYYY-MM-DD` of a UTC timestamp column, computed by the database (constants inlined, so that the
    same expression in GROUP BY is the same SQL)."""
    if _dialect(session) == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), column)
        return func.to_char(utc, literal_column("'YYYY-MM-DD'"))
    return func.substr(column, literal_column("1"), literal_column("10"))  # SQLite keeps the text form


def _project(subject: Any) -> ColumnElement[str]:
    """`jira:KEY-12` → `jira:KEY`, `gitlab:group/app!3` → `gitlab:group/app`: the team's project."""
    return func.rtrim(func.rtrim(subject, literal_column("'0123456789'")), literal_column("'-!'"))


def _filtered(query: Select[Any], filters: RunFilter) -> Select[Any]:
    if filters.status:
        query = query.where(Run.status == filters.status)
    if filters.kind:
        query = query.where(Run.kind == filters.kind)
    if filters.subject:
        query = query.where(func.lower(Run.subject).contains(filters.subject.lower(), autoescape=True))
    return query


def _progress(phases: list[Any]) -> Progress:
    """Phases of one run (rows with name, position, status, cost and tokens), in any order."""
    ordered = sorted(phases, key=lambda p: p.position)
    done = [p for p in ordered if p.status == "done"]
    current = next(
        (p for p in ordered if p.status in ("running", "failed")),
        next((p for p in ordered if p.status != "done"), ordered[-1] if ordered else None),
    )
    return Progress(
        done=len(done),
        total=len(ordered),
        phase=current.name if current is not None else None,
        phase_status=current.status if current is not None else None,
        cost_usd=sum(p.cost_usd for p in ordered),
        tokens=sum(p.input_tokens + p.output_tokens for p in ordered),
    )


async def _progress_of(session: AsyncSession, run_ids: list[str]) -> dict[str, Progress]:
    if not run_ids:
        return {}
    query = select(
        Phase.run_id, Phase.name, Phase.position, Phase.status, Phase.cost_usd,
        Phase.input_tokens, Phase.output_tokens,
    ).where(Phase.run_id.in_(run_ids))  # fmt: skip
    by_run: dict[str, list[Any]] = {}
    for row in (await session.execute(query)).all():
        by_run.setdefault(row.run_id, []).append(row)
    return {run_id: _progress(rows) for run_id, rows in by_run.items()}


# --- the runs list -------------------------------------------------------------------------------


async def runs_page(
    sm: async_sessionmaker[AsyncSession], filters: RunFilter, page: int = 1, per_page: int = 50
) -> RunsPage:
    """Runs matching `filters`, newest first, one page of them with their progress and cost."""
    page = max(page, 1)
    columns = (Run.id, Run.kind, Run.subject, Run.status, Run.input, Run.created_at, Run.updated_at)
    query = _filtered(select(*columns), filters)
    query = query.order_by(Run.created_at.desc(), Run.id.desc()).offset((page - 1) * per_page)
    async with sm() as session:
        total = int((await session.execute(_filtered(select(func.count(Run.id)), filters))).scalar_one())
        rows = (await session.execute(query.limit(per_page))).all()
        progress = await _progress_of(session, [row.id for row in rows])
    lines = [
        RunLine(
            id=row.id,
            kind=row.kind,
            subject=row.subject,
            status=row.status,
            title=_title(row.input),
            created=as_utc(row.created_at),
            updated=as_utc(row.updated_at),
            progress=progress.get(row.id, Progress()),
        )
        for row in rows
    ]
    return RunsPage(lines, total, page, per_page)


def _stopped_query(columns: tuple[Any, ...]) -> Select[Any]:
    """Waiting runs whose last activity (the outcome the worker recorded) carries needs_info or
    needs_human. The last activity's id comes from the activity's run index alone."""
    last = select(func.max(Activity.id)).where(Activity.run_id == Run.id).correlate(Run).scalar_subquery()
    flagged = or_(*(Activity.data[flag].as_boolean() for flag in STOP_FLAGS))
    return (
        select(*columns)
        .join(Activity, Activity.id == last)
        .where(Run.status == status.WAITING, Activity.action == status.WAITING, flagged)
    )


async def counts(sm: async_sessionmaker[AsyncSession]) -> Counts:
    """Active runs, proposals waiting for approval, and runs stopped for a person (counted up to
    COUNT_CAP, so the figure every page shows costs the same however many there are)."""
    stopped = _stopped_query((Run.id,)).limit(COUNT_CAP).subquery()
    query = select(
        select(func.count(Run.id)).where(Run.status.in_(status.ACTIVE)).scalar_subquery(),
        select(func.count(Proposal.id)).where(Proposal.status == proposal_states.PROPOSED).scalar_subquery(),
        select(func.count()).select_from(stopped).scalar_subquery(),
    )
    async with sm() as session:
        active, waiting, stuck = (await session.execute(query)).one()
    return Counts(int(active), int(waiting), int(stuck))


# --- one run -------------------------------------------------------------------------------------


async def run_record(sm: async_sessionmaker[AsyncSession], run_id: str) -> RunRecord:
    """Everything one run's page shows; `runs.RunNotFound` if there is no such run."""
    detail = await runs.detail(sm, run_id)
    async with sm() as session:
        stored = await session.execute(select(Run.input).where(Run.id == run_id))
        title = _title(stored.scalar_one())
        outputs = {
            name: dict(output)
            for name, output in (
                await session.execute(select(Phase.name, Phase.output).where(Phase.run_id == run_id))
            )
            if isinstance(output, dict)
        }
        found = (
            await session.execute(
                _proposal_query().where(Proposal.run_id == run_id).order_by(Proposal.created_at)
            )
        ).all()
        effects = await session.execute(
            select(Effect.key, Effect.kind, Effect.external_id)
            .where(Effect.run_id == run_id, Effect.status == "done", Effect.external_id.is_not(None))
            .order_by(Effect.created_at)
        )
        done = [(key, kind, str(external)) for key, kind, external in effects]
        lines = await _proposal_lines(session, found)
    return RunRecord(detail, title, outputs, lines, done)


def _proposal_query() -> Select[Any]:
    return select(
        Proposal.id, Proposal.run_id, Proposal.subject, Proposal.status, Proposal.sha, Proposal.target,
        Proposal.created_at, Proposal.updated_at, Run.input,
    ).join(Run, Run.id == Proposal.run_id)  # fmt: skip


async def _proposal_lines(session: AsyncSession, rows: list[Any]) -> list[ProposalLine]:
    """Proposal rows with the id of the comment that posted each and the MR each shipped as."""
    if not rows:
        return []
    comments = await session.execute(
        select(Effect.run_id, Effect.key, Effect.external_id)
        .where(
            Effect.run_id.in_({row.run_id for row in rows}),
            Effect.key.like("run:%:proposal:%"),
            Effect.status == "done",
        )
        .order_by(Effect.created_at)
    )
    posted: dict[str, str] = {}
    for run_id, key, external in comments:
        sha = key.removeprefix(f"run:{run_id}:proposal:").split(":")[0]
        if external:
            posted[f"{run_id}:{sha}"] = str(external)  # the latest post of that commit wins
    shipped_keys = [f"proposal:{row.id}:mr" for row in rows if row.status == proposal_states.SHIPPED]
    shipped: dict[str, str] = {}
    if shipped_keys:
        found = await session.execute(
            select(Effect.key, Effect.external_id).where(
                Effect.key.in_(shipped_keys), Effect.status == "done"
            )
        )
        shipped = {key.split(":")[1]: str(external) for key, external in found if external}
    return [
        ProposalLine(
            id=row.id,
            run_id=row.run_id,
            subject=row.subject,
            status=row.status,
            sha=row.sha or "",
            branch=str((row.target or {}).get("branch") or ""),
            project=str((row.target or {}).get("project_path") or ""),
            title=_title(row.input),
            created=as_utc(row.created_at),
            updated=as_utc(row.updated_at),
            comment_id=posted.get(f"{row.run_id}:{(row.sha or '')[:12]}"),
            mr_iid=shipped.get(row.id),
        )
        for row in rows
    ]


# --- what waits for a person ---------------------------------------------------------------------


async def waiting_proposals(sm: async_sessionmaker[AsyncSession], limit: int = 200) -> list[ProposalLine]:
    """Proposals waiting for `/approve`, the longest-waiting first."""
    query = _proposal_query().where(Proposal.status == proposal_states.PROPOSED)
    async with sm() as session:
        rows = (await session.execute(query.order_by(Proposal.created_at, Proposal.id).limit(limit))).all()
        return await _proposal_lines(session, rows)


async def stopped_runs(sm: async_sessionmaker[AsyncSession], limit: int = 200) -> list[StoppedRun]:
    """Runs that wait because they asked questions (needs_info) or ran out of rounds (needs_human)."""
    columns = (Run.id, Run.kind, Run.subject, Run.input, Activity.message, Activity.at, Activity.data)
    query = _stopped_query(columns).order_by(Run.updated_at, Run.id).limit(limit)  # the longest-stopped first
    async with sm() as session:
        rows = (await session.execute(query)).all()
    return [_stopped(row, row.message, row.at, row.data) for row in rows]


async def failed_runs(
    sm: async_sessionmaker[AsyncSession], within: timedelta, limit: int = 100
) -> list[StoppedRun]:
    """Runs that failed within `within` (newest first), with their error: `/retry` brings them back."""
    since = utcnow() - within
    query = (
        select(Run.id, Run.kind, Run.subject, Run.input, Run.error, Run.updated_at)
        .where(Run.status == status.FAILED, Run.updated_at >= since)
        .order_by(Run.updated_at.desc(), Run.id)
        .limit(limit)
    )
    async with sm() as session:
        rows = (await session.execute(query)).all()
    return [_stopped(row, row.error or "failed", row.updated_at, None) for row in rows]


def _stopped(row: Any, reason: str, since: datetime, data: dict[str, Any] | None) -> StoppedRun:
    flags = tuple(flag for flag in STOP_FLAGS if (data or {}).get(flag) is True)
    return StoppedRun(row.id, row.kind, row.subject, _title(row.input), reason, as_utc(since), flags)


# --- cost and outcomes ---------------------------------------------------------------------------


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


async def cost_report(
    sm: async_sessionmaker[AsyncSession], days: int, now: datetime | None = None
) -> CostReport:
    """Cost, rounds and outcomes of the runs created in the last `days` days (UTC, today included), and
    the proposals decided in that time.

    One statement: the window's runs with their phases' cost and implement rounds (summed from the phases'
    covering index, never their large rows) are materialized once, then grouped by project, day, status
    and rounds, and — in the same statement — the ten most expensive subjects picked; the groups are
    folded into days, weeks and projects here."""
    now = now or utcnow()
    first = (now - timedelta(days=days - 1)).date()
    since = datetime(first.year, first.month, first.day, tzinfo=now.tzinfo)
    async with sm() as session:
        report = _Folding(since, days)
        for part, name, day, state, rounds, runs_, cost in await session.execute(
            _cost_statement(session, since)
        ):
            if part == "group":
                report.add_runs(name, day, state, int(rounds or 0), int(runs_), float(cost or 0))
            else:
                report.top.append((name, float(cost or 0), int(runs_)))
        decided_day = _day(session, Proposal.updated_at).label("day")
        decided = await session.execute(
            select(decided_day, Proposal.status, func.count(Proposal.id))
            .where(Proposal.updated_at >= since, Proposal.status.in_((*DECIDED, proposal_states.STALE)))
            .group_by("day", Proposal.status)
        )
        for day, state, n in decided:
            report.add_decisions(day, state, int(n))
        waiting = await session.execute(
            select(func.count(Proposal.id)).where(Proposal.status == proposal_states.PROPOSED)
        )
        return report.done(int(waiting.scalar_one()))


def _cost_statement(session: AsyncSession, since: datetime) -> CompoundSelect[Any]:
    """(part, name, day, status, rounds, runs, cost) rows: part `group` per project, day, status and rounds
    of the window's runs; part `subject` for the ten most expensive subjects."""
    figures = (
        select(
            Phase.run_id,
            func.sum(Phase.cost_usd).label("cost"),
            func.max(case((Phase.name == literal_column("'implement'"), Phase.attempts))).label("rounds"),
        )
        .group_by(Phase.run_id)
        .subquery("figures")
    )
    window = (
        select(
            Run.subject.label("subject"), _day(session, Run.created_at).label("day"),
            Run.status.label("status"), figures.c.cost, figures.c.rounds,
        )
        .select_from(Run)
        .outerjoin(figures, figures.c.run_id == Run.id)
        .where(Run.created_at >= since)
        .cte("window_runs")
        .prefix_with("MATERIALIZED")  # read by both parts below, computed once
    )  # fmt: skip
    w = window.c
    groups = select(
        literal_column("'group'").label("part"), _project(w.subject).label("name"), w.day, w.status, w.rounds,
        func.count().label("runs"), func.sum(w.cost).label("cost"),
    ).group_by("name", w.day, w.status, w.rounds)  # fmt: skip
    spent = func.sum(w.cost).label("cost")
    nothing = (cast(null(), String), cast(null(), String), cast(null(), Integer))  # typed for the UNION
    top = (
        select(
            literal_column("'subject'").label("part"), w.subject.label("name"), nothing[0].label("day"),
            nothing[1].label("status"), nothing[2].label("rounds"), func.count().label("runs"), spent,
        )
        .group_by(w.subject)
        .order_by(spent.desc(), w.subject)
        .limit(10)
        .subquery("top")
    )  # fmt: skip
    return union_all(groups, select(top))


class _Folding:
    """The cost report being folded from the grouped runs and per-day decision counts."""

    def __init__(self, since: datetime, days: int) -> None:
        self.since, self.days = since, days
        self.daily: dict[date, tuple[float, int]] = {}  # day → (cost, runs)
        self.per_week: dict[str, dict[date, float]] = {}
        self.rounds: dict[int, int] = {}
        self.outcomes: dict[str, int] = {}
        self.decided: dict[date, dict[str, int]] = {}
        self.top: list[tuple[str, float, int]] = []

    def add_runs(self, project: str, day: str, state: str, rounds: int, runs: int, cost: float) -> None:
        when = date.fromisoformat(str(day)[:10])
        spent, counted = self.daily.get(when, (0.0, 0))
        self.daily[when] = (spent + cost, counted + runs)
        weeks = self.per_week.setdefault(str(project), {})
        weeks[monday(when)] = weeks.get(monday(when), 0.0) + cost
        self.outcomes[state] = self.outcomes.get(state, 0) + runs
        if rounds > 0:
            self.rounds[rounds] = self.rounds.get(rounds, 0) + runs

    def add_decisions(self, day: str, state: str, n: int) -> None:
        week = self.decided.setdefault(monday(date.fromisoformat(str(day)[:10])), {})
        week[state] = week.get(state, 0) + n

    def done(self, waiting: int) -> CostReport:
        window = [self.since.date() + timedelta(days=i) for i in range(self.days)]
        overall = {
            s: sum(w.get(s, 0) for w in self.decided.values()) for s in (*DECIDED, proposal_states.STALE)
        }
        return CostReport(
            as_of=utcnow(),
            since=self.since,
            days=[DayCost(d, *self.daily.get(d, (0.0, 0))) for d in window],
            rounds=dict(sorted(self.rounds.items())),
            decisions_by_week={week: _decisions(states) for week, states in sorted(self.decided.items())},
            by_project_week=self.per_week,
            top_subjects=sorted(self.top, key=lambda item: (-item[1], item[0])),
            outcomes=self.outcomes,
            waiting_now=waiting,
            decisions=_decisions(overall),
        )


def _decisions(states: dict[str, int]) -> Decisions:
    return Decisions(
        approved=states.get(proposal_states.APPROVED, 0) + states.get(proposal_states.SHIPPED, 0),
        rejected=states.get(proposal_states.REJECTED, 0),
        superseded=states.get(proposal_states.STALE, 0),
    )
