"""The other replies that move a run on: /reject, /revise, /retry, /status, /help, and posting Reply actions.

On a Jira ticket they act on the ticket's `implement` run and its proposal; in a merge request thread
on the thread's `remediate` run and proposal (on the MR overview: the latest `/remediate all`).
"""

from __future__ import annotations

from bot.store import proposals, runs, status
from bot.store.proposals import ProposalRow
from bot.store.runs import RunRow
from bot.triggers import PipelineFailed, ReplyRequest, ThreadCommand, TicketLabelled
from orchestrators import Outcome, design, graph, graph_ship, plan, progress, remediate, ship, wiki_proposal
from orchestrators.ci_analysis import WORKFLOW as CI_WORKFLOW
from orchestrators.ci_analysis import status_view as ci_status_view
from orchestrators.engine import Workflow, reset_from, states
from orchestrators.implement import WORKFLOW
from orchestrators.resources import WorkerContext
from orchestrators.status_comment import Ending, render_status
from orchestrators.taskgraph import DONE as TASK_DONE
from orchestrators.venue import (
    IMPLEMENT,
    REMEDIATE,
    JiraTicket,
    args_of,
    author_of,
    latest_target,
    refuse,
    reply,
    respond,
    venue_of,
)

WORKFLOWS: dict[str, Workflow] = {
    IMPLEMENT: WORKFLOW,
    REMEDIATE: remediate.WORKFLOW,
    design.KIND: design.WORKFLOW,
    CI_WORKFLOW.name: CI_WORKFLOW,
}
"""The workflow a command acts on, by the run kind its venue works on (or the run of a knowledge proposal)."""
REVISED_FROM = {
    IMPLEMENT: "implement",
    REMEDIATE: "implement",
    design.KIND: "draft",
    CI_WORKFLOW.name: "implement",
}
"""The phase `/revise` starts again from, by run kind."""


def _workflow(target: RunRow) -> Workflow:
    return WORKFLOWS[target.kind]


async def _proposal(wctx: WorkerContext, run: RunRow, command: str) -> ProposalRow | str | None:
    """The proposal the command acts on; on a Jira ticket, which can hold an open proposal of each family,
    the one its first word names or the only open one (a reason when that is ambiguous)."""
    venue = venue_of(run)
    if isinstance(venue, JiraTicket):
        return await ship.addressed(wctx, run, command)
    return await venue.proposal(wctx, run)


async def _reopen(wctx: WorkerContext, run: RunRow, target: RunRow, phase: str, **extra: object) -> bool:
    workflow = _workflow(target)
    if await plan.is_graph_run(wctx, target.id):  # a multi-repository ticket: its own phases
        workflow, phase = plan.WORKFLOW, phase if phase in plan.WORKFLOW.names else "plan"
    await reset_from(wctx.sm, workflow, target.id, phase)
    if not await runs.reopen(wctx.sm, target.id, wctx.name, f"{run.kind} from run {run.id}", **extra):
        return False
    await wctx.queue.enqueue_run(target.id)
    return True


async def run_reject(wctx: WorkerContext, run: RunRow) -> Outcome:
    proposal = await _proposal(wctx, run, "/reject")
    if isinstance(proposal, str):
        return await refuse(wctx, run, "/reject", proposal)
    halfway = proposal is not None and await _stopped_shipping(wctx, proposal)
    if proposal is None or not await proposals.move(
        wctx.sm, proposal.id, proposals.APPROVED if halfway else proposals.PROPOSED, proposals.REJECTED
    ):
        return await refuse(wctx, run, "/reject", f"there is no open proposal {venue_of(run).here}.")
    who, reason = author_of(run).called(), args_of(run)
    await runs.settle(
        wctx.sm, proposal.run_id, status.CANCELLED, wctx.name, f"rejected by {who}: {reason}"[:500]
    )
    await wctx.need_clients().workspace.remove_worktree(proposal.run_id)
    await graph.free_worktrees(wctx, proposal.run_id)  # a multi-repository ticket's task worktrees
    again, pushed = venue_of(run).again, "what shipped stays as the comment above says" if halfway else ""
    await respond(
        wctx, run, "/reject", f"Rejected proposal {proposal.id}; {pushed or 'nothing was pushed'}. {again}"
    )
    return Outcome(status.SUCCEEDED, f"rejected proposal {proposal.id}")


async def _stopped_shipping(wctx: WorkerContext, proposal: ProposalRow) -> bool:
    """An approved proposal over several repositories whose shipping stopped halfway (its approve run is
    not going on): it may still be rejected."""
    if proposal.status != proposals.APPROVED or not graph_ship.is_graph(proposal):
        return False
    approver = await runs.by_id(wctx.sm, str(proposal.target.get("approved_by_run") or ""))
    return approver is not None and approver.status not in status.ACTIVE


async def run_revise(wctx: WorkerContext, run: RunRow) -> Outcome:
    text = args_of(run)
    if not text:
        return await refuse(
            wctx, run, "/revise", "say what to change, e.g. /revise keep the old function name."
        )
    target = await latest_target(wctx, run)
    proposal = await _proposal(wctx, run, "/revise")
    if isinstance(proposal, str):
        return await refuse(wctx, run, "/revise", proposal)
    if proposal is not None and wiki_proposal.is_knowledge(proposal):  # an ADR or learned facts
        target = await runs.by_id(wctx.sm, proposal.run_id)
        if target is not None and target.kind not in REVISED_FROM:
            return await refuse(
                wctx, run, "/revise", "learned facts are not redrafted; reply /approve or /reject."
            )
    revisable = target.trigger if target else None
    if (
        not isinstance(revisable, TicketLabelled | ThreadCommand | PipelineFailed)
        or proposal is None
        or proposal.status != proposals.PROPOSED
    ):
        here = venue_of(run).here
        return await refuse(wctx, run, "/revise", f"there is no open proposal {here} to revise.")
    assert target is not None  # the trigger came from it
    if await graph.has_tasks(wctx, target.id):
        return await refuse(
            wctx, run, "/revise", "the plan is already running; reply /retry <task> to run one task again."
        )
    await proposals.move(wctx.sm, proposal.id, proposals.PROPOSED, proposals.STALE)
    revisions = [*revisable.revisions, text[:4000]]
    if not await _reopen(wctx, run, target, REVISED_FROM[target.kind], revisions=revisions):
        return await refuse(wctx, run, "/revise", f"run {target.id[:12]} is busy; try again when it stops.")
    await respond(
        wctx, run, "/revise", f"Revising proposal {proposal.id} with your note; a new proposal will follow."
    )
    return Outcome(status.SUCCEEDED, f"revising run {target.id}")


def _retry_phase(run: RunRow, workflow: Workflow, failed: str | None) -> str:
    asked = args_of(run).split(maxsplit=1)
    if asked and asked[0] in workflow.names:
        return asked[0]
    return failed or workflow.names[0]


async def _parent_phase(wctx: WorkerContext, run: RunRow, target: RunRow) -> bool:
    """A graph's `/retry` is for its own phase, not a task: its review or propose failed after every task
    was done (a bare /retry, or one naming a phase that is no task)."""
    rows = await graph.reconcile(wctx, target.id)
    if target.status != status.FAILED or any(r.status != TASK_DONE for r in rows):
        return False
    asked = args_of(run).split(maxsplit=1)
    return not asked or (asked[0] in plan.WORKFLOW.names and all(r.task_id != asked[0] for r in rows))


async def run_retry(wctx: WorkerContext, run: RunRow) -> Outcome:
    target, venue = await latest_target(wctx, run), venue_of(run)
    if target is None:
        return await refuse(wctx, run, "/retry", f"there is no run {venue.here}; {venue.start_over}.")
    if target.status in status.ACTIVE:
        return await refuse(wctx, run, "/retry", f"run {target.id[:12]} is already {target.status}.")
    graph_run = await plan.is_graph_run(wctx, target.id)
    if graph_run and await graph.has_tasks(wctx, target.id) and not await _parent_phase(wctx, run, target):
        resumed = None if args_of(run).strip() else await graph_ship.resume(wctx, target.id, target.subject)
        said = resumed or await graph.retry(wctx, target, args_of(run))
        await respond(wctx, run, "/retry", said)
        return Outcome(status.SUCCEEDED, said)
    detail = await runs.detail(wctx.sm, target.id)
    failed = next((p["name"] for p in detail["phases"] if p["status"] != "done"), None)
    phase = _retry_phase(run, plan.WORKFLOW if graph_run else _workflow(target), failed)
    for open_proposal in await proposals.latest_open(wctx.sm, run.subject, run.id):
        if open_proposal.run_id == target.id and open_proposal.status == proposals.PROPOSED:
            await proposals.move(wctx.sm, open_proposal.id, proposals.PROPOSED, proposals.STALE)
    if not await _reopen(wctx, run, target, phase):
        return await refuse(wctx, run, "/retry", f"run {target.id[:12]} could not be reopened.")
    await respond(wctx, run, "/retry", f"Retrying run {target.id[:12]} from {phase}.")
    return Outcome(status.SUCCEEDED, f"retrying run {target.id} from {phase}")


async def run_reply(wctx: WorkerContext, run: RunRow) -> Outcome:
    """Post a handler's Reply (e.g. "did you mean") exactly once."""
    if not isinstance(run.trigger, ReplyRequest):
        return Outcome(status.FAILED, f"a reply run needs a reply request, not {run.trigger.trigger!r}")
    await reply(wctx, run, run.trigger.text)
    return Outcome(status.SUCCEEDED, "replied")


async def run_help(wctx: WorkerContext, run: RunRow) -> Outcome:
    """`/help`: the commands usable here, generated from the skill manifest."""
    lines = "\n".join(f"* {line}" for line in wctx.need_clients().skills.help_lines(venue_of(run).flavor))
    await respond(wctx, run, "/help", f"Baton understands these replies (at the start of a line):\n{lines}")
    return Outcome(status.SUCCEEDED, "help posted")


async def _ending(wctx: WorkerContext, target: RunRow) -> Ending | None:
    """How a run that is not running any more stands, from its last recorded outcome."""
    if target.status in status.ACTIVE:
        return None
    activity = (await runs.detail(wctx.sm, target.id))["activity"]
    last = next((a for a in reversed(activity) if a["action"] == target.status), None)
    message, flags = (last["message"], last["data"]) if last else (target.status, {})
    stopped_short = any(flags.get(k) for k in ("needs_info", "needs_human", "refused"))
    ok = target.status == status.SUCCEEDED or (target.status == status.WAITING and not stopped_short)
    return Ending(ok, str(message))


VIEWS = {IMPLEMENT: progress.view, REMEDIATE: remediate.status_view, CI_WORKFLOW.name: ci_status_view}
"""How /status draws a run's checklist, by its kind."""


async def run_status(wctx: WorkerContext, run: RunRow) -> Outcome:
    """`/status`: the latest run's phase checklist on this ticket or in this thread."""
    target, venue = await latest_target(wctx, run), venue_of(run)
    if target is None:
        await respond(wctx, run, "/status", f"There is no Baton run {venue.here} yet; {venue.start_over}.")
        return Outcome(status.SUCCEEDED, "no run")
    if await plan.is_graph_run(wctx, target.id):
        graph_text = await graph.status_text(wctx, target, venue.flavor)
        await respond(wctx, run, "/status", f"Run {target.id[:12]} is {target.status}.\n\n{graph_text}")
        return Outcome(status.SUCCEEDED, f"status of graph {target.id}")
    phases = await states(wctx.sm, _workflow(target), target.id)
    shown = render_status(VIEWS[target.kind](target, phases, await _ending(wctx, target)), venue.flavor)
    await respond(wctx, run, "/status", f"Run {target.id[:12]} is {target.status}.\n\n{shown}")
    return Outcome(status.SUCCEEDED, f"status of {target.id}")
