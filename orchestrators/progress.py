"""Visible progress on the ticket: the pickup acknowledgement and one status comment edited in place."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

from bot.store.engine import utcnow
from bot.store.runs import RunRow
from bot.triggers import TicketCommand, TicketLabelled
from orchestrators import budget
from orchestrators.engine import PhaseState
from orchestrators.resources import WorkerContext
from orchestrators.status_comment import Ending, PhaseView, StatusView, render_status
from orchestrators.status_comment import PhaseState as Shown

SHOWN = {"pending": "pending", "running": "running", "done": "done", "failed": "failed"}


def status_key(run: RunRow) -> str:
    return f"run:{run.id}:status"


def issue_key(run: RunRow) -> str:
    trigger = run.trigger
    if not isinstance(trigger, TicketLabelled | TicketCommand):
        raise ValueError("the run does not name a Jira issue")
    return trigger.issue_key or trigger.issue_id


async def acknowledge(wctx: WorkerContext, run: RunRow) -> None:
    """A short comment on pickup (Jira has no award emoji), posted once per run."""
    text = (
        f"👀 Baton picked this up (run {run.id[:12]}). "
        "I keep one status comment up to date below; nothing is pushed until someone replies /approve."
    )
    await wctx.need_clients().jira.add_comment(issue_key(run), text, f"run:{run.id}:ack", run_id=run.id)


def view(
    run: RunRow, phases: list[PhaseState], ending: Ending | None, title: str | None = None
) -> StatusView:
    """What the status comment shows; `title` defaults to the run's kind and ticket."""
    shown = tuple(
        PhaseView(p.name, cast(Shown, SHOWN.get(p.status, "pending")), p.duration_s, max(p.attempts, 1))
        for p in phases
    )
    return StatusView(
        run_id=run.id[:12],
        title=title or f"Baton: {run.kind} {issue_key(run)}",
        phases=shown,
        elapsed_s=(utcnow() - run.created).total_seconds(),
        input_tokens=sum(p.input_tokens for p in phases),
        output_tokens=sum(p.output_tokens for p in phases),
        cost_usd=sum(p.cost_usd for p in phases),
        ending=ending,
    )


async def with_budget(wctx: WorkerContext, run: RunRow, shown: StatusView) -> StatusView:
    """The status view with the run's spend against its cost caps (unchanged when no cap applies)."""
    clients = wctx.need_clients()
    found = await budget.standing(wctx.sm, run.subject, clients.projects, wctx.settings, utcnow())
    return replace(shown, budget=found.line())


async def update_status(
    wctx: WorkerContext, run: RunRow, phases: list[PhaseState], ending: Ending | None = None
) -> None:
    """Post the status comment the first time, then edit that same comment."""
    clients = wctx.need_clients()
    body = render_status(await with_budget(wctx, run, view(run, phases, ending)), "jira")
    record = await clients.ledger.get(status_key(run))
    if record is not None and record.status == "done" and record.external_id:
        await clients.jira.edit_comment(issue_key(run), record.external_id, body)
        return
    await clients.jira.add_comment(issue_key(run), body, status_key(run), run_id=run.id)
