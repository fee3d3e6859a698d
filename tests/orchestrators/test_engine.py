"""The phase engine against the real store: persistence, resume after a crash, retry, jump budget."""

from __future__ import annotations

from typing import Any

import pytest

from bot.store import inbox, runs, status
from bot.triggers import TicketLabelled
from handlers.actions import Enqueue
from orchestrators import Outcome
from orchestrators.engine import PhaseContext, PhaseFailed, PhaseResult, Workflow, execute, reset_from
from orchestrators.resources import WorkerContext
from shell.services import Services


@pytest.fixture
def wctx(services: Services) -> WorkerContext:
    return WorkerContext(services.settings, services.sm, services.queue, "test-worker")


async def claimed_run(services: Services) -> runs.RunRow:
    action = Enqueue(
        kind="probe",
        subject="jira:DEMO-1",
        origin="engine-test",
        input=TicketLabelled(issue_key="DEMO-1", issue_id="1"),
    )
    recorded = await inbox.record(services.sm, inbox.Incoming("jira", "k", "e", {}), action)
    assert recorded.run_id
    row = await runs.claim(services.sm, recorded.run_id, "test-worker")
    assert row is not None
    return row


class Script:
    """Phases that record their calls; a phase can be told to crash or to jump."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, dict[str, Any]]] = []
        self.crash: set[str] = set()
        self.jumps: dict[str, str] = {}

    def phase(self, name: str) -> Any:
        async def run(ctx: PhaseContext) -> PhaseResult:
            self.calls.append((name, ctx.attempt, {k: dict(v) for k, v in ctx.outputs.items()}))
            if name in self.crash:
                raise RuntimeError(f"{name} exploded")
            goto = self.jumps.get(name)
            return PhaseResult(
                output={"by": name, "attempt": ctx.attempt}, goto=goto, input_tokens=10, cost_usd=0.01
            )

        return run

    def workflow(self, *names: str, rounds: int = 3) -> Workflow:
        return Workflow("probe", tuple((n, self.phase(n)) for n in names), max_rounds=rounds)


async def test_phases_run_in_order_and_see_earlier_outputs(services: Services, wctx: WorkerContext) -> None:
    script = Script()
    run = await claimed_run(services)
    outcome = await execute(script.workflow("a", "b", "c"), wctx, run)
    assert outcome == Outcome(status.SUCCEEDED, "probe finished")
    assert [c[0] for c in script.calls] == ["a", "b", "c"]
    assert script.calls[2][2] == {"a": {"by": "a", "attempt": 1}, "b": {"by": "b", "attempt": 1}}
    detail = await runs.detail(services.sm, run.id)
    assert [(p["name"], p["status"], p["attempts"]) for p in detail["phases"]] == [
        ("a", "done", 1),
        ("b", "done", 1),
        ("c", "done", 1),
    ]
    assert all(p["duration_s"] is not None and p["input_tokens"] == 10 for p in detail["phases"])


async def test_a_failed_run_resumes_at_the_failed_phase(services: Services, wctx: WorkerContext) -> None:
    script = Script()
    script.crash = {"b"}
    run = await claimed_run(services)
    with pytest.raises(PhaseFailed, match="phase b failed: RuntimeError: b exploded"):
        await execute(script.workflow("a", "b", "c"), wctx, run)
    script.crash = set()
    assert (await execute(script.workflow("a", "b", "c"), wctx, run)).status == status.SUCCEEDED
    assert [(c[0], c[1]) for c in script.calls] == [("a", 1), ("b", 1), ("b", 2), ("c", 1)]


async def test_retry_from_a_phase_reruns_it_and_everything_after(
    services: Services, wctx: WorkerContext
) -> None:
    script = Script()
    run = await claimed_run(services)
    workflow = script.workflow("a", "b", "c")
    await execute(workflow, wctx, run)
    await reset_from(services.sm, workflow, run.id, "b")
    await execute(workflow, wctx, run)
    assert [c[0] for c in script.calls] == ["a", "b", "c", "b", "c"]
    with pytest.raises(ValueError, match="has no phase 'zz'"):
        await reset_from(services.sm, workflow, run.id, "zz")


async def test_jumps_back_stop_for_a_human_after_the_round_budget(
    services: Services, wctx: WorkerContext
) -> None:
    script = Script()
    script.jumps = {"check": "work"}  # the check never passes
    run = await claimed_run(services)
    outcome = await execute(script.workflow("plan", "work", "check", "propose", rounds=3), wctx, run)
    assert outcome.status == status.WAITING and outcome.message.startswith("needs-human")
    assert [c[0] for c in script.calls] == ["plan"] + ["work", "check"] * 3
    assert "propose" not in [c[0] for c in script.calls]


async def test_a_stop_ends_the_run_where_it_is(services: Services, wctx: WorkerContext) -> None:
    async def ask(ctx: PhaseContext) -> PhaseResult:
        return PhaseResult(output={"questions": ["which API?"]}, stop=Outcome(status.WAITING, "needs-info"))

    script = Script()
    run = await claimed_run(services)
    workflow = Workflow("probe", (("triage", ask), ("work", script.phase("work"))))
    assert await execute(workflow, wctx, run) == Outcome(status.WAITING, "needs-info")
    assert script.calls == []
