"""The dashboard's queries (bot/store/dashboard.py) on SQLite and PostgreSQL: what each page is given."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import insert, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store import dashboard as queries
from bot.store.engine import create_engine
from bot.store.migrate import alembic_config, upgrade
from bot.store.runs import RunNotFound
from bot.store.tables import Activity
from config.settings import async_database_url
from tests.dashboard.seed import HOSTILE, OUTCOMES, PHASES, Batch, command_run, ticket_run

NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)  # a Wednesday


def spent(batch: Batch, run_id: str) -> float:
    return float(sum(p["cost_usd"] for p in batch.phases if p["run_id"] == run_id))


def rounds_of(batch: Batch, run_id: str) -> int:
    return next(
        (p["attempts"] for p in batch.phases if p["run_id"] == run_id and p["name"] == "implement"), 0
    )


async def write(sm: async_sessionmaker[AsyncSession], batch: Batch) -> Batch:
    kept = Batch(
        list(batch.runs), list(batch.phases), list(batch.activity), list(batch.proposals), list(batch.effects)
    )
    await batch.write(sm)
    return kept


async def test_runs_page_filters_pages_and_shows_progress_and_cost(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    batch, rng = Batch(), random.Random(1)
    ids = {
        outcome: ticket_run(batch, rng, key=f"ALPHA-{i}", outcome=outcome, created=NOW - timedelta(hours=i))
        for i, outcome in enumerate(OUTCOMES)
    }
    beta = ticket_run(batch, rng, key="BETA-7", outcome="shipped", created=NOW - timedelta(days=3))
    approve = command_run(batch, rng, key="BETA-7", kind="approve", args="", created=NOW - timedelta(days=2))
    written = await write(sm, batch)

    everything = await queries.runs_page(sm, queries.RunFilter(), 1, 50)
    assert everything.total == len(OUTCOMES) + 2
    assert [line.id for line in everything.lines][:2] == [ids["shipped"], ids["proposed"]]  # newest first
    running = next(line for line in everything.lines if line.id == ids["running"])
    assert (running.progress.done, running.progress.total) == (2, 6)
    assert (running.progress.phase, running.progress.phase_status) == ("implement", "running")
    failed = next(line for line in everything.lines if line.id == ids["failed"])
    assert (failed.progress.phase, failed.progress.phase_status) == ("implement", "failed")
    shipped = next(line for line in everything.lines if line.id == ids["shipped"])
    assert shipped.progress.cost_usd == pytest.approx(spent(written, ids["shipped"]))
    assert shipped.title == "Add a feature" and shipped.progress.done == 6

    waiting = await queries.runs_page(sm, queries.RunFilter(status="waiting"), 1, 50)
    assert {line.id for line in waiting.lines} == {ids["proposed"], ids["needs_info"], ids["needs_human"]}
    by_kind = await queries.runs_page(sm, queries.RunFilter(kind="approve"), 1, 50)
    assert [line.id for line in by_kind.lines] == [approve]
    by_subject = await queries.runs_page(sm, queries.RunFilter(subject="beta-"), 1, 50)
    assert {line.id for line in by_subject.lines} == {beta, approve} and by_subject.total == 2
    for wildcard in ("%", "_", "\\"):  # LIKE wildcards are text, not patterns
        assert (await queries.runs_page(sm, queries.RunFilter(subject=wildcard), 1, 50)).total == 0
    second = await queries.runs_page(sm, queries.RunFilter(), 2, 5)
    assert [line.id for line in second.lines] == [line.id for line in everything.lines][5:10]
    assert (await queries.runs_page(sm, queries.RunFilter(), 99, 5)).lines == []


async def test_counts_and_the_runs_stopped_for_a_person_follow_the_last_activity(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    batch, rng = Batch(), random.Random(2)
    info = ticket_run(batch, rng, key="ALPHA-1", outcome="needs_info", created=NOW - timedelta(days=2))
    human = ticket_run(batch, rng, key="ALPHA-2", outcome="needs_human", created=NOW - timedelta(days=1))
    answered = ticket_run(batch, rng, key="ALPHA-3", outcome="needs_info", created=NOW - timedelta(days=3))
    ticket_run(batch, rng, key="ALPHA-4", outcome="proposed", created=NOW)
    ticket_run(batch, rng, key="ALPHA-5", outcome="running", created=NOW)
    ticket_run(batch, rng, key="ALPHA-6", outcome="queued", created=NOW)
    await batch.write(sm)
    async with sm.begin() as session:  # ALPHA-3's questions were answered: /retry, then a proposal
        for action, data in (("reopened", None), ("waiting", {"flag": True})):
            row = {"run_id": answered, "delivery_id": None, "at": NOW, "actor": "baton", "action": action}
            await session.execute(insert(Activity), [{**row, "message": action, "data": data}])

    stopped = await queries.stopped_runs(sm, 10)
    assert [(s.id, s.flags) for s in stopped] == [(info, ("needs_info",)), (human, ("needs_human",))]
    assert stopped[0].reason.startswith("needs-info:") and stopped[1].reason.startswith("needs-human:")
    counts = await queries.counts(sm)
    assert (counts.active, counts.proposals, counts.stopped) == (2, 1, 2)
    assert counts.stopped_shown == "2"


async def test_waiting_proposals_carry_the_comment_to_reply_to_the_longest_waiting_first(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    batch, rng = Batch(), random.Random(3)
    newer = ticket_run(batch, rng, key="ALPHA-1", outcome="proposed", created=NOW - timedelta(hours=1))
    older = ticket_run(batch, rng, key="BETA-1", outcome="proposed", created=NOW - timedelta(days=2))
    shipped = ticket_run(batch, rng, key="BETA-2", outcome="shipped", created=NOW - timedelta(days=3))
    written = await write(sm, batch)

    waiting = await queries.waiting_proposals(sm, 10)
    assert [p.run_id for p in waiting] == [older, newer]
    for proposal in waiting:
        stored = next(p for p in written.proposals if p["id"] == proposal.id)
        comment = next(
            e for e in written.effects if e["key"] == f"run:{proposal.run_id}:proposal:{stored['sha'][:12]}"
        )
        assert proposal.comment_id == comment["external_id"]
        assert proposal.branch == stored["target"]["branch"] and proposal.mr_iid is None
    record = await queries.run_record(sm, shipped)
    (line,) = record.proposals
    mr = next(e for e in written.effects if e["key"] == f"proposal:{line.id}:mr")
    assert line.status == "shipped" and line.mr_iid == mr["external_id"] and line.project == "demo/app"


async def test_a_run_record_has_the_phases_outputs_proposals_and_effects(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    batch, rng = Batch(), random.Random(4)
    run_id = ticket_run(batch, rng, key="ALPHA-9", outcome="proposed", created=NOW, text=HOSTILE)
    await batch.write(sm)
    record = await queries.run_record(sm, run_id)
    assert tuple(p["name"] for p in record.detail["phases"]) == PHASES
    assert record.title == f"Add a feature {HOSTILE}"  # kept as text; the page escapes it
    assert HOSTILE in record.outputs["assemble"]["brief"] and record.outputs["implement"]["summary"]
    assert [kind for _key, kind, _id in record.effects] == ["jira_comment"]
    assert record.detail["activity"][-1]["action"] == "waiting"
    with pytest.raises(RunNotFound):
        await queries.run_record(sm, "0" * 32)


async def test_failed_runs_within_the_window_newest_first(sm: async_sessionmaker[AsyncSession]) -> None:
    batch, rng = Batch(), random.Random(5)
    recent = ticket_run(
        batch, rng, key="ALPHA-1", outcome="failed", created=datetime.now(UTC) - timedelta(hours=2)
    )
    ticket_run(batch, rng, key="ALPHA-2", outcome="failed", created=datetime.now(UTC) - timedelta(days=30))
    await batch.write(sm)
    failed = await queries.failed_runs(sm, timedelta(days=7), 10)
    assert [f.id for f in failed] == [recent] and "phase implement failed" in failed[0].reason


async def test_the_cost_report_adds_up_what_the_phases_spent(sm: async_sessionmaker[AsyncSession]) -> None:
    batch, rng = Batch(), random.Random(6)
    a = ticket_run(batch, rng, key="ALPHA-1", outcome="shipped", created=NOW - timedelta(days=1, hours=1))
    b = ticket_run(batch, rng, key="ALPHA-2", outcome="needs_human", created=NOW - timedelta(days=8))
    c = ticket_run(batch, rng, key="BETA-1", outcome="rejected", created=NOW - timedelta(hours=3))
    d = ticket_run(batch, rng, key="BETA-1", outcome="proposed", created=NOW - timedelta(hours=2))
    ticket_run(batch, rng, key="GAMMA-1", outcome="shipped", created=NOW - timedelta(days=45))  # outside
    command_run(batch, rng, key="ALPHA-1", kind="approve", args="", created=NOW - timedelta(hours=1))
    written = await write(sm, batch)

    report = await queries.cost_report(sm, 30, now=NOW)
    assert report.since == datetime(2026, 2, 17, tzinfo=UTC) and len(report.days) == 30
    assert report.days[-1].day == date(2026, 3, 18)
    costs = {run: spent(written, run) for run in (a, b, c, d)}
    by_day = {d.day: d for d in report.days}
    assert by_day[date(2026, 3, 17)].cost_usd == pytest.approx(costs[a])
    assert by_day[date(2026, 3, 10)].cost_usd == pytest.approx(costs[b])
    assert by_day[date(2026, 3, 18)].cost_usd == pytest.approx(costs[c] + costs[d])
    assert by_day[date(2026, 3, 18)].runs == 3  # c, d and the /approve
    assert sum(day.cost_usd for day in report.days) == pytest.approx(sum(costs.values()))
    assert report.outcomes == {"succeeded": 2, "waiting": 2, "cancelled": 1}
    expected_rounds: dict[int, int] = {}
    for run in (a, b, c, d):
        expected_rounds[rounds_of(written, run)] = expected_rounds.get(rounds_of(written, run), 0) + 1
    assert report.rounds == dict(sorted(expected_rounds.items())) and report.rounds.get(3, 0) >= 1
    monday = date(2026, 3, 16)
    assert report.by_project_week["jira:ALPHA"][monday] == pytest.approx(costs[a])
    assert report.by_project_week["jira:ALPHA"][date(2026, 3, 9)] == pytest.approx(costs[b])
    assert report.by_project_week["jira:BETA"] == {monday: pytest.approx(costs[c] + costs[d])}
    top = {subject: (cost, runs) for subject, cost, runs in report.top_subjects}
    assert top["jira:BETA-1"][0] == pytest.approx(costs[c] + costs[d]) and top["jira:BETA-1"][1] == 2
    assert [s for s, _c, _r in report.top_subjects] == sorted(top, key=lambda s: -top[s][0])
    assert (report.decisions.approved, report.decisions.rejected) == (1, 1) and report.decisions.rate == 0.5
    assert report.waiting_now == 1


async def test_an_empty_store_gives_empty_pages(sm: async_sessionmaker[AsyncSession]) -> None:
    assert (await queries.runs_page(sm, queries.RunFilter(), 1, 50)).total == 0
    assert await queries.waiting_proposals(sm, 10) == [] and await queries.stopped_runs(sm, 10) == []
    report = await queries.cost_report(sm, 7, now=NOW)
    assert [d.cost_usd for d in report.days] == [0.0] * 7 and report.decisions.rate is None
    assert report.top_subjects == [] and report.rounds == {} and report.outcomes == {}


@pytest.mark.parametrize(
    ("subject", "project"),
    [("jira:KEY-12", "jira:KEY"), ("gitlab:group/app!3", "gitlab:group/app"), ("jira:K2-7", "jira:K2")],
)
async def test_subjects_fold_into_their_project(
    sm: async_sessionmaker[AsyncSession], subject: str, project: str
) -> None:
    batch, rng = Batch(), random.Random(7)
    run_id = ticket_run(batch, rng, key="X-1", outcome="shipped", created=NOW)
    batch.runs[-1]["subject"] = subject
    await batch.write(sm)
    report = await queries.cost_report(sm, 7, now=NOW)
    assert list(report.by_project_week) == [project], run_id


def _downgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def _indexes(connection: Connection) -> set[str]:
    inspector = inspect(connection)
    return {
        index["name"] or ""
        for table in ("runs", "phases", "proposals")
        for index in inspector.get_indexes(table)
    }


async def test_the_dashboard_indexes_come_and_go_with_their_migration(db_url: str) -> None:
    wanted = {"ix_runs_created", "ix_phases_run_figures", "ix_proposals_status_created"}
    engine = create_engine(async_database_url(db_url))
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert wanted <= await conn.run_sync(_indexes)
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, "0001")
        async with engine.connect() as conn:
            assert not wanted & await conn.run_sync(_indexes)
        await upgrade(engine)
        async with engine.connect() as conn:
            assert wanted <= await conn.run_sync(_indexes)
    finally:
        await engine.dispose()
