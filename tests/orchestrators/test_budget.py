"""Cost budgets: spend read from the phases of a migrated SQLite store."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.agent.result import AgentResult, TokenUsage
from bot.store import runs, status
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.store.tables import Phase, Run
from config.projects import Budget, Project, ProjectMap
from config.settings import load_settings
from orchestrators import agents, budget
from orchestrators.engine import PhaseContext, PhaseFailed, PhaseResult, Workflow, execute
from orchestrators.status_comment import StatusView, render_status
from tests.support.tables import ISSUE, PROJECT_PATH, labelled, seed_jira, table

NOW = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)
_ids = itertools.count(1)


@pytest.fixture
async def sm(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}")
    await upgrade(engine)
    yield sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def any_sm(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A migrated store on SQLite and on PostgreSQL (where LIKE is case-sensitive)."""
    engine = create_engine(db_url.replace("sqlite://", "sqlite+aiosqlite://", 1).replace(
        "postgresql://", "postgresql+asyncpg://", 1))  # fmt: skip
    await upgrade(engine)
    yield sessionmaker(engine)
    await engine.dispose()


async def add_run(
    sm: async_sessionmaker[AsyncSession],
    subject: str,
    costs: list[float],
    created: datetime = NOW,
    worked: datetime | None = None,
) -> str:
    """A run created at `created` whose phases started and finished at `worked` (default: `created`)."""
    run_id = f"run{next(_ids):05d}"
    run: dict[str, Any] = dict(
        id=run_id, kind="ticket", subject=subject, origin=f"origin:{run_id}", status="succeeded",
        input={}, created_at=created, updated_at=created,
    )  # fmt: skip
    phases = [
        dict(
            run_id=run_id,
            name=f"p{i}",
            position=i,
            status="done",
            cost_usd=cost,
            started_at=worked or created,
            finished_at=worked or created,
        )
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


async def test_a_teams_month_counts_spend_when_the_phase_ran_not_when_its_run_was_created(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    start = budget.month_start(NOW)
    last_month = start - timedelta(days=3)
    await add_run(sm, "jira:TES-1", [2.0], created=last_month, worked=start + timedelta(hours=1))
    await add_run(sm, "jira:TES-2", [4.0], created=start, worked=start - timedelta(seconds=1))
    running = await add_run(sm, "jira:TES-3", [], created=last_month)
    async with sm.begin() as session:  # a phase still running, started this month, with a cost so far
        await session.execute(
            insert(Phase),
            [dict(run_id=running, name="p0", position=0, status="running", cost_usd=0.5, started_at=NOW)],
        )
    prefixes = budget.team_prefixes("TES", None)
    assert await budget.spent_since(sm, prefixes, start) == pytest.approx(2.5)
    assert await budget.spent_since(sm, prefixes, start - timedelta(days=30)) == pytest.approx(6.5)


async def test_a_team_is_every_entry_of_its_jira_project_matched_ignoring_case(
    any_sm: async_sessionmaker[AsyncSession],
) -> None:
    projects = ProjectMap(
        projects=(
            Project(jira_project="TES", gitlab_project="Group/App", budget=Budget(month_usd=50)),
            Project(
                jira_project="TES", component="api", gitlab_project="group/api", budget=Budget(month_usd=20)
            ),
            Project(jira_project="OTH", gitlab_project="group/other", budget=Budget(month_usd=1)),
        )
    )
    settings = load_settings({}, check=False)
    await add_run(any_sm, "jira:TES-1", [1.0])
    await add_run(any_sm, "gitlab:group/app!3", [2.0])  # the path in another case than the map's
    await add_run(any_sm, "gitlab:GROUP/API!4", [4.0])  # the component's repository
    await add_run(any_sm, "gitlab:group/other!1", [8.0])  # another team
    for subject in ("jira:TES-9", "gitlab:group/API!4", "gitlab:group/app!3"):
        found = await budget.standing(any_sm, subject, projects, settings, NOW)
        month = [c for c in found.caps if c.limit.scope == "month"]
        assert [(c.limit.what, c.limit.usd, c.spent_usd) for c in month] == [("TES", 20.0, 7.0)], subject


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


# --- the caps that apply, and the check before an agent call ------------------------------------------

SETTINGS_NO_CAP = load_settings({}, check=False)


def mapping(**budget_usd: float) -> ProjectMap:
    return ProjectMap(
        projects=(Project(jira_project="TES", gitlab_project="group/app", budget=Budget(**budget_usd)),)
    )


@pytest.mark.parametrize(
    ("subject", "projects", "env", "expected"),
    [
        ("jira:TES-41", ProjectMap(), {}, []),
        (
            "jira:TES-41", mapping(ticket_usd=2), {"BATON_BUDGET_TICKET_USD": "9"},
            [("ticket", "jira:TES-41", "budget.ticket_usd of TES in config/projects.yaml", 2.0)],
        ),
        (
            "gitlab:group/app!3", mapping(month_usd=40), {"BATON_BUDGET_TICKET_USD": "9"},
            [("ticket", "gitlab:group/app!3", "BATON_BUDGET_TICKET_USD", 9.0),
             ("month", "TES", "budget.month_usd of TES in config/projects.yaml", 40.0)],
        ),
        (
            "jira:OTHER-1", mapping(ticket_usd=2), {"BATON_BUDGET_MONTH_USD": "100"},
            [("month", "OTHER", "BATON_BUDGET_MONTH_USD", 100.0)],
        ),
        ("not-a-subject", mapping(ticket_usd=2), {}, []),
    ],
)  # fmt: skip
def test_a_projects_own_caps_win_over_the_defaults(
    subject: str, projects: ProjectMap, env: dict[str, str], expected: list[tuple[str, str, str, float]]
) -> None:
    found, _ = budget.limits(subject, projects, load_settings(env, check=False))
    assert [(x.scope, x.what, x.setting, x.usd) for x in found] == expected


def test_team_prefixes_cover_the_mapped_gitlab_project_or_the_subjects_own_project() -> None:
    assert budget.limits("gitlab:group/app!3", mapping(), SETTINGS_NO_CAP)[1] == (
        "jira:TES-",
        "gitlab:group/app!",
    )
    assert budget.limits("jira:ABC-7", mapping(), SETTINGS_NO_CAP)[1] == ("jira:ABC-",)
    assert budget.limits("gitlab:g/x!1", mapping(), SETTINGS_NO_CAP)[1] == ("gitlab:g/x!",)


def test_the_stop_names_the_tightest_reached_cap_and_counts_unrecorded_spend() -> None:
    ticket = budget.Cap(budget.Limit("ticket", "jira:TES-41", "BATON_BUDGET_TICKET_USD", 0.5), 0.45)
    month = budget.Cap(budget.Limit("month", "TES", "budget.month_usd of TES in config/projects.yaml", 10), 2)
    found = budget.Standing((ticket, month))
    assert found.stop() is None and found.remaining_usd == pytest.approx(0.05)
    assert found.line() == "budget: ticket $0.45 of $0.50 · TES this month $2.00 of $10.00"
    stop = found.stop(pending_usd=0.05)
    assert stop is not None
    assert stop.startswith("Stopped: the per-ticket cap of $0.50 for jira:TES-41 (BATON_BUDGET_TICKET_USD)")
    assert stop.endswith("is reached ($0.50 spent).")  # the workflow adds its own next step
    assert budget.Standing().stop() is None and budget.Standing().line() == ""


def test_a_call_the_cli_stopped_at_its_budget_names_the_tightest_cap_even_when_none_is_reached() -> None:
    ticket = budget.Cap(budget.Limit("ticket", "jira:TES-41", "BATON_BUDGET_TICKET_USD", 0.5), 0.1)
    month = budget.Cap(budget.Limit("month", "TES", "BATON_BUDGET_MONTH_USD", 10.0), 9.8)
    found = budget.Standing((ticket, month))
    assert found.used_up(0.15) == (
        "Stopped: the agent call used up what the monthly team cap of $10.00 for TES "
        "(BATON_BUDGET_MONTH_USD) left it ($9.95 spent)."
    )
    assert found.used_up(0.2) == found.stop(0.2)  # reached: the ordinary stop
    assert "cost budget it was given" in budget.Standing().used_up(0.2)


@pytest.mark.parametrize(
    ("exc", "step"),
    [
        (budget.BudgetExceeded("Stopped: a cap."), "Raise the cap, then reply /explain to ask again."),
        (PhaseFailed("phase answer failed"), "Reply /explain to ask again."),
        (RuntimeError("no cap"), "Reply /explain to ask again."),
    ],
)
def test_the_next_step_after_a_cap_is_raising_it_then_the_workflows_own_reply(
    exc: BaseException, step: str
) -> None:
    assert budget.next_step(exc, "Reply /explain to ask again.", "/explain to ask again") == step
    wrapped = PhaseFailed("phase answer failed")
    wrapped.__cause__ = exc
    assert budget.next_step(wrapped, "Reply /retry.") == (
        "Raise the cap, then reply /retry." if isinstance(exc, budget.BudgetExceeded) else "Reply /retry."
    )


@pytest.mark.parametrize(("spent_before", "stopped"), [(0.6, True), (0.1, False)])
async def test_an_implement_run_over_its_ticket_cap_stops_before_the_agent_with_a_reply_naming_it(
    tmp_path: Path, spent_before: float, stopped: bool
) -> None:
    projects = ProjectMap(
        projects=(Project(jira_project="TES", gitlab_project=PROJECT_PATH, budget=Budget(ticket_usd=0.5)),)
    )
    async with table(tmp_path, projects) as t:
        seed_jira(t)
        await add_run(t.sm, f"jira:{ISSUE}", [spent_before])
        run = await t.job(await labelled(t))
        assert run.status == status.FAILED
        said = "\n".join(str(c[2]) for c in t.fakes.jira.calls if c[0] in ("add_comment", "edit_comment"))
        cap = (
            f"the per-ticket cap of $0.50 for jira:{ISSUE} (budget.ticket_usd of TES in config/projects.yaml)"
        )
        assert (cap in said) is stopped
        assert ("Raise the cap, then reply /retry." in said) is stopped
        assert f"budget: ticket ${spent_before:.2f} of $0.50" in said  # the status comment
        if not stopped:  # the check let the call start (triage asks the model); the fakes have none
            assert "the planner call failed: the model could not be reached" in said


# --- what is counted ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (0.0, "$0.00"), (1234.5, "$1,234.50"), (0.01, "$0.01"), (0.0005, "$0.0005"), (0.00123, "$0.0012"),
        (1e-9, "$0.000000001"), (1e-13, "$0"), (0.009999, "$0.01"),
    ],
)  # fmt: skip
def test_usd_keeps_two_significant_digits_under_a_cent_and_never_ends_in_a_dot(
    amount: float, shown: str
) -> None:
    assert budget.usd(amount) == shown


def test_a_calls_input_tokens_count_cache_writes_and_cache_reads() -> None:
    tokens = TokenUsage(
        input_tokens=100, output_tokens=20, cache_creation_input_tokens=5000, cache_read_input_tokens=7
    )
    result = AgentResult("reviewer", False, usage=tokens, total_cost_usd=0.25)
    assert agents.usage(result) == {"input_tokens": 5107, "output_tokens": 20, "cost_usd": 0.25}
    assert tokens.prompt_tokens == 5107  # what the runner logs, as baton show counts input


async def test_a_failed_agent_phase_still_records_what_the_call_cost(tmp_path: Path) -> None:
    async def costly(ctx: PhaseContext) -> PhaseResult:
        raise agents.AgentFailed(
            "the reviewer agent failed", {"input_tokens": 7, "output_tokens": 3, "cost_usd": 0.4}
        )

    async def plain(ctx: PhaseContext) -> PhaseResult:
        raise RuntimeError("no usage")

    async with table(tmp_path) as t:
        run_id = await labelled(t)
        run = await runs.claim(t.sm, run_id, "w")
        assert run is not None
        for name, phase in (("costly", costly), ("plain", plain)):
            with pytest.raises(PhaseFailed):
                await execute(Workflow(name, ((name, phase),)), t.wctx, run)
        assert await budget.spent(t.sm, run.subject) == pytest.approx(0.4)
        phases = {p["name"]: p for p in (await runs.detail(t.sm, run_id))["phases"]}
        assert (phases["costly"]["input_tokens"], phases["costly"]["output_tokens"]) == (7, 3)
        assert phases["costly"]["status"] == phases["plain"]["status"] == "failed"
        assert phases["plain"]["cost_usd"] == 0


def test_the_status_comment_shows_spend_against_the_cap() -> None:
    shown = StatusView(
        "run1", "Baton: implement TES-41", (), 3.0, 5107, 20, 0.25, budget="budget: ticket $0.45 of $0.50"
    )
    totals = render_status(shown, "gitlab").split("\n\n")[2]
    assert totals == "⏱ 3.0 s · 5,127 tokens (5,107 in / 20 out) · $0.25 · budget: ticket $0.45 of $0.50"
    assert " budget" not in render_status(StatusView("run1", "t", (), 3.0), "jira")


async def test_a_phase_of_several_calls_is_charged_the_earlier_calls_when_a_later_one_fails(
    tmp_path: Path,
) -> None:
    """`/remediate all` makes one call per thread: a later call stopped at the cap (or failing) must not
    drop what the earlier ones cost."""

    async def fine() -> AgentResult:
        return AgentResult("implementer", False, usage=TokenUsage(10, 2, 0, 0), total_cost_usd=0.25)

    async def over(exc: Exception) -> AgentResult:
        raise exc

    def phase(exc: Exception) -> Any:
        async def several(ctx: PhaseContext) -> PhaseResult:
            tally = agents.Tally()
            await tally.of(fine())
            await tally.of(fine())
            assert tally.cost_usd == pytest.approx(0.5)
            await tally.of(over(exc))
            return PhaseResult(**tally.usage)

        return several

    failures = (
        budget.BudgetExceeded("Stopped: a cap.", {"input_tokens": 1, "output_tokens": 1, "cost_usd": 0.1}),
        agents.AgentFailed("the implementer agent failed"),
    )
    async with table(tmp_path) as t:
        run = await runs.claim(t.sm, await labelled(t), "w")
        assert run is not None
        for i, exc in enumerate(failures):
            with pytest.raises(PhaseFailed):
                await execute(Workflow(f"w{i}", ((f"w{i}", phase(exc)),)), t.wctx, run)
        phases = {p["name"]: p for p in (await runs.detail(t.sm, run.id))["phases"]}
        assert phases["w0"]["cost_usd"] == pytest.approx(0.6)
        assert (phases["w0"]["input_tokens"], phases["w0"]["output_tokens"]) == (21, 5)
        assert phases["w1"]["cost_usd"] == pytest.approx(0.5)
        assert await budget.spent(t.sm, run.subject) == pytest.approx(1.1)


async def test_a_cancelled_phase_is_charged_what_its_calls_streamed_and_stays_as_it_was(
    tmp_path: Path,
) -> None:
    """/cancel aborts the job mid-call: the runner prices what streamed (`partial`), `agents.call` turns it
    into `usage`, and the engine adds it to the phase without finishing it (a /retry resumes there)."""

    async def cancelled() -> AgentResult:
        exc = asyncio.CancelledError()
        exc.partial = AgentResult("implementer", True, usage=TokenUsage(40, 4), total_cost_usd=0.3)  # type: ignore[attr-defined]
        raise exc

    async def streaming(ctx: PhaseContext) -> PhaseResult:
        tally = agents.Tally()
        await tally.of(fine())
        try:
            await cancelled()
        except asyncio.CancelledError as exc:  # as agents.call does with the runner's partial result
            agents.cancelled_usage(exc)
            await tally.of(_raise(exc))
        return PhaseResult()

    async def fine() -> AgentResult:
        return AgentResult("implementer", False, usage=TokenUsage(10, 2), total_cost_usd=0.25)

    async def _raise(exc: BaseException) -> AgentResult:
        raise exc

    async with table(tmp_path) as t:
        run = await runs.claim(t.sm, await labelled(t), "w")
        assert run is not None
        with pytest.raises(asyncio.CancelledError):
            await execute(Workflow("w", (("w", streaming),)), t.wctx, run)
        phase = (await runs.detail(t.sm, run.id))["phases"][0]
        assert phase["status"] == "running"
        assert (phase["input_tokens"], phase["output_tokens"]) == (50, 6)
        assert phase["cost_usd"] == pytest.approx(0.55)


async def test_concurrent_calls_on_a_ticket_or_team_share_what_the_cap_leaves(tmp_path: Path) -> None:
    """The worker runs several jobs at once: each call holds what it was handed (bot/holds.py), so the
    next one on the same ticket or team gets only the rest; the hold goes when the run's job ends."""
    projects = ProjectMap(
        projects=(
            Project(
                jira_project="TES", gitlab_project=PROJECT_PATH, budget=Budget(ticket_usd=1.0, month_usd=1.5)
            ),
        )
    )
    async with table(tmp_path, projects) as t:
        seed_jira(t)
        await add_run(t.sm, f"jira:{ISSUE}", [0.2])
        a, b = await add_run(t.sm, f"jira:{ISSUE}", []), await add_run(t.sm, f"jira:{ISSUE}", [])
        other = await add_run(t.sm, "jira:TES-99", [])
        assert await agents.reserve(t.wctx, a) == pytest.approx(0.8)
        with pytest.raises(budget.BudgetExceeded) as held:
            await agents.reserve(t.wctx, b)
        assert str(held.value) == (
            f"Stopped: what is left of the per-ticket cap of $1.00 for jira:{ISSUE} (budget.ticket_usd of "
            "TES in config/projects.yaml) ($0.80) is held by agent calls running now on the same ticket or "
            "team."
        )
        # another ticket of the team: the month's $1.50 less $0.20 spent and a's $0.80 held
        assert await agents.reserve(t.wctx, other) == pytest.approx(0.5)
        await t.wctx.holds.release(other)
        await t.wctx.holds.settle(a, 0.3, 60)  # a's call ended having cost $0.30, not recorded yet
        assert await agents.reserve(t.wctx, b) == pytest.approx(0.5)
        await t.wctx.holds.release(b)
        # a job on the ticket (the worker's own job function): its call holds the $0.50 left, fails (the
        # fakes have no agent), and its holds go when the job ends
        key = f"ticket:jira:{ISSUE.lower()}"
        before = await t.wctx.holds.epochs([key])
        run = await t.job(await labelled(t))
        assert run.status == status.FAILED
        assert await t.wctx.holds.epochs([key]) == [before[0] + 1]
        assert set(t.wctx.holds.held[key]) == {a}  # type: ignore[attr-defined]
        await t.wctx.holds.release(a)
        assert await agents.reserve(t.wctx, b) == pytest.approx(0.8)
