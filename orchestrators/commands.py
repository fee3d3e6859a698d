"""The other replies that move a ticket's run on: /reject, /revise, /retry, and posting Reply actions."""

from __future__ import annotations

from bot.store import proposals, runs, status
from bot.store.runs import RunRow
from bot.worker_context import WorkerContext
from handlers.commands import help_lines
from orchestrators import Outcome, progress
from orchestrators.engine import reset_from, states
from orchestrators.implement import WORKFLOW
from orchestrators.ship import refuse, reply
from orchestrators.status_comment import render_status

IMPLEMENT = "implement"


async def _latest_implement(wctx: WorkerContext, subject: str) -> RunRow | None:
    for row in await runs.listing(wctx.sm, limit=200):
        if row.subject == subject and row.kind == IMPLEMENT:
            return row
    return None


async def _reopen(wctx: WorkerContext, run: RunRow, target: RunRow, phase: str, **extra: object) -> bool:
    await reset_from(wctx.sm, WORKFLOW, target.id, phase)
    if not await runs.reopen(wctx.sm, target.id, wctx.name, f"{run.kind} from run {run.id}", **extra):
        return False
    await wctx.queue.enqueue_run(target.id)
    return True


async def run_reject(wctx: WorkerContext, run: RunRow) -> Outcome:
    proposal = await proposals.latest(wctx.sm, run.subject)
    if proposal is None or not await proposals.move(
        wctx.sm, proposal.id, proposals.PROPOSED, proposals.REJECTED
    ):
        return await refuse(wctx, run, "/reject", "there is no open proposal on this ticket.")
    who = (run.input.get("author") or {}).get("display_name") or "someone"
    reason = str(run.input.get("args") or "").strip()
    await runs.settle(
        wctx.sm, proposal.run_id, status.CANCELLED, wctx.name, f"rejected by {who}: {reason}"[:500]
    )
    await wctx.need_clients().workspace.remove_worktree(proposal.run_id)
    await reply(
        wctx, run, f"Rejected proposal {proposal.id}; nothing was pushed. Add the label again to start over."
    )
    return Outcome(status.SUCCEEDED, f"rejected proposal {proposal.id}")


async def run_revise(wctx: WorkerContext, run: RunRow) -> Outcome:
    text = str(run.input.get("args") or "").strip()
    if not text:
        return await refuse(
            wctx, run, "/revise", "say what to change, e.g. /revise keep the old function name."
        )
    target = await _latest_implement(wctx, run.subject)
    proposal = await proposals.latest(wctx.sm, run.subject)
    if target is None or proposal is None or proposal.status != proposals.PROPOSED:
        return await refuse(wctx, run, "/revise", "there is no open proposal on this ticket to revise.")
    await proposals.move(wctx.sm, proposal.id, proposals.PROPOSED, proposals.STALE)
    revisions = [*target.input.get("revisions", []), text[:4000]]
    if not await _reopen(wctx, run, target, "implement", revisions=revisions):
        return await refuse(wctx, run, "/revise", f"run {target.id[:12]} is busy; try again when it stops.")
    await reply(wctx, run, f"Revising proposal {proposal.id} with your note; a new proposal will follow.")
    return Outcome(status.SUCCEEDED, f"revising run {target.id}")


def _retry_phase(run: RunRow, target: RunRow, failed: str | None) -> str:
    asked = str(run.input.get("args") or "").strip().split(maxsplit=1)
    if asked and asked[0] in WORKFLOW.names:
        return asked[0]
    return failed or "triage"


async def run_retry(wctx: WorkerContext, run: RunRow) -> Outcome:
    target = await _latest_implement(wctx, run.subject)
    if target is None:
        return await refuse(
            wctx, run, "/retry", "there is no run on this ticket; add the trigger label to start one."
        )
    if target.status in status.ACTIVE:
        return await refuse(wctx, run, "/retry", f"run {target.id[:12]} is already {target.status}.")
    detail = await runs.detail(wctx.sm, target.id)
    failed = next((p["name"] for p in detail["phases"] if p["status"] != "done"), None)
    phase = _retry_phase(run, target, failed)
    open_proposal = await proposals.latest(wctx.sm, run.subject)
    if open_proposal is not None and open_proposal.status == proposals.PROPOSED:
        await proposals.move(wctx.sm, open_proposal.id, proposals.PROPOSED, proposals.STALE)
    if not await _reopen(wctx, run, target, phase):
        return await refuse(wctx, run, "/retry", f"run {target.id[:12]} could not be reopened.")
    await reply(wctx, run, f"Retrying run {target.id[:12]} from {phase}.")
    return Outcome(status.SUCCEEDED, f"retrying run {target.id} from {phase}")


async def run_reply(wctx: WorkerContext, run: RunRow) -> Outcome:
    """Post a handler's Reply (e.g. "did you mean") exactly once."""
    target = run.input.get("target") or {}
    text = str(run.input.get("text") or "")
    clients = wctx.need_clients()
    if target.get("kind") == "jira_comment":
        await clients.jira.add_comment(str(target["issue_key"]), text, f"run:{run.id}:reply", run_id=run.id)
    elif target.get("kind") == "gitlab_discussion":
        where = (target["project_id"], int(target["mr_iid"]), str(target["discussion_id"]))
        await clients.gitlab.reply_in_discussion(*where, text, f"run:{run.id}:reply", run_id=run.id)
    else:
        return Outcome(status.FAILED, f"unknown reply target {target.get('kind')!r}")
    return Outcome(status.SUCCEEDED, "replied")


async def run_help(wctx: WorkerContext, run: RunRow) -> Outcome:
    """`/help`: the commands, generated from the same table the parser uses."""
    lines = "\n".join(f"* {line}" for line in help_lines())
    await reply(wctx, run, f"Baton understands these replies (at the start of a line):\n{lines}")
    return Outcome(status.SUCCEEDED, "help posted")


async def run_status(wctx: WorkerContext, run: RunRow) -> Outcome:
    """`/status`: the latest run's phase checklist on this ticket."""
    target = await _latest_implement(wctx, run.subject)
    if target is None:
        await reply(
            wctx, run, "There is no Baton run on this ticket yet; add the trigger label to start one."
        )
        return Outcome(status.SUCCEEDED, "no run")
    phases = await states(wctx.sm, WORKFLOW, target.id)
    view = progress.view(target, phases, None)
    await reply(wctx, run, f"Run {target.id[:12]} is {target.status}.\n\n{render_status(view, 'jira')}")
    return Outcome(status.SUCCEEDED, f"status of {target.id}")
