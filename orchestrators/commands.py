"""The other replies that move a run on: /reject, /revise, /retry, /status, /help, and posting Reply actions.

On a Jira ticket they act on the ticket's `implement` run and its proposal; in a merge request thread
on the thread's `remediate` run and proposal (on the MR overview: the latest `/remediate all`).
"""

from __future__ import annotations

from bot.store import proposals, runs, status
from bot.store.proposals import ProposalRow
from bot.store.runs import RunRow
from orchestrators import Outcome, progress, remediate
from orchestrators.engine import Workflow, reset_from, states
from orchestrators.implement import WORKFLOW
from orchestrators.mr_ship import thread_proposal
from orchestrators.resources import WorkerContext
from orchestrators.ship import flavor, is_gitlab, refuse, respond
from orchestrators.status_comment import Ending, render_status

IMPLEMENT = "implement"


def _workflow(run: RunRow) -> Workflow:
    return remediate.WORKFLOW if is_gitlab(run) else WORKFLOW


def _here(run: RunRow) -> str:
    return "in this thread" if is_gitlab(run) else "on this ticket"


def _start_over(run: RunRow) -> str:
    return "reply `/remediate` to start one" if is_gitlab(run) else "add the trigger label to start one"


async def _latest_target(wctx: WorkerContext, run: RunRow) -> RunRow | None:
    """The run a command acts on: the ticket's latest `implement`, or the thread's latest `remediate`."""
    kind = remediate.KIND if is_gitlab(run) else IMPLEMENT
    rows = [r for r in await runs.listing(wctx.sm, limit=200) if r.subject == run.subject and r.kind == kind]
    if not is_gitlab(run):
        return rows[0] if rows else None
    discussion = run.input.get("discussion_id")
    same = next((r for r in rows if r.input.get("discussion_id") == discussion), None)
    if same is not None or run.input.get("note_type"):
        return same
    return next((r for r in rows if remediate.is_all(r)), None)


async def _proposal(wctx: WorkerContext, run: RunRow) -> ProposalRow | None:
    if is_gitlab(run):
        return await thread_proposal(wctx, run)
    return await proposals.latest(wctx.sm, run.subject)


async def _reopen(wctx: WorkerContext, run: RunRow, target: RunRow, phase: str, **extra: object) -> bool:
    await reset_from(wctx.sm, _workflow(target), target.id, phase)
    if not await runs.reopen(wctx.sm, target.id, wctx.name, f"{run.kind} from run {run.id}", **extra):
        return False
    await wctx.queue.enqueue_run(target.id)
    return True


async def run_reject(wctx: WorkerContext, run: RunRow) -> Outcome:
    proposal = await _proposal(wctx, run)
    if proposal is None or not await proposals.move(
        wctx.sm, proposal.id, proposals.PROPOSED, proposals.REJECTED
    ):
        return await refuse(wctx, run, "/reject", f"there is no open proposal {_here(run)}.")
    author = run.input.get("author") or {}
    who = author.get("display_name") or author.get("username") or "someone"
    reason = str(run.input.get("args") or "").strip()
    await runs.settle(
        wctx.sm, proposal.run_id, status.CANCELLED, wctx.name, f"rejected by {who}: {reason}"[:500]
    )
    await wctx.need_clients().workspace.remove_worktree(proposal.run_id)
    again = "Reply `/remediate` to start over." if is_gitlab(run) else "Add the label again to start over."
    await respond(wctx, run, "/reject", f"Rejected proposal {proposal.id}; nothing was pushed. {again}")
    return Outcome(status.SUCCEEDED, f"rejected proposal {proposal.id}")


async def run_revise(wctx: WorkerContext, run: RunRow) -> Outcome:
    text = str(run.input.get("args") or "").strip()
    if not text:
        return await refuse(
            wctx, run, "/revise", "say what to change, e.g. /revise keep the old function name."
        )
    target = await _latest_target(wctx, run)
    proposal = await _proposal(wctx, run)
    if target is None or proposal is None or proposal.status != proposals.PROPOSED:
        return await refuse(wctx, run, "/revise", f"there is no open proposal {_here(run)} to revise.")
    await proposals.move(wctx.sm, proposal.id, proposals.PROPOSED, proposals.STALE)
    revisions = [*target.input.get("revisions", []), text[:4000]]
    if not await _reopen(wctx, run, target, "implement", revisions=revisions):
        return await refuse(wctx, run, "/revise", f"run {target.id[:12]} is busy; try again when it stops.")
    await respond(
        wctx, run, "/revise", f"Revising proposal {proposal.id} with your note; a new proposal will follow."
    )
    return Outcome(status.SUCCEEDED, f"revising run {target.id}")


def _retry_phase(run: RunRow, workflow: Workflow, failed: str | None) -> str:
    asked = str(run.input.get("args") or "").strip().split(maxsplit=1)
    if asked and asked[0] in workflow.names:
        return asked[0]
    return failed or workflow.names[0]


async def run_retry(wctx: WorkerContext, run: RunRow) -> Outcome:
    target = await _latest_target(wctx, run)
    if target is None:
        return await refuse(wctx, run, "/retry", f"there is no run {_here(run)}; {_start_over(run)}.")
    if target.status in status.ACTIVE:
        return await refuse(wctx, run, "/retry", f"run {target.id[:12]} is already {target.status}.")
    detail = await runs.detail(wctx.sm, target.id)
    failed = next((p["name"] for p in detail["phases"] if p["status"] != "done"), None)
    phase = _retry_phase(run, _workflow(target), failed)
    open_proposal = await _proposal(wctx, run)
    if open_proposal is not None and open_proposal.status == proposals.PROPOSED:
        await proposals.move(wctx.sm, open_proposal.id, proposals.PROPOSED, proposals.STALE)
    if not await _reopen(wctx, run, target, phase):
        return await refuse(wctx, run, "/retry", f"run {target.id[:12]} could not be reopened.")
    await respond(wctx, run, "/retry", f"Retrying run {target.id[:12]} from {phase}.")
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
    """`/help`: the commands usable here, generated from the skill manifest."""
    lines = "\n".join(f"* {line}" for line in wctx.need_clients().skills.help_lines(flavor(run)))
    await respond(wctx, run, "/help", f"Baton understands these replies (at the start of a line):\n{lines}")
    return Outcome(status.SUCCEEDED, "help posted")


async def _ending(wctx: WorkerContext, target: RunRow) -> Ending | None:
    """How a run that is not running any more stands, from its last recorded outcome."""
    if target.status in status.ACTIVE:
        return None
    activity = (await runs.detail(wctx.sm, target.id))["activity"]
    last = next((a["message"] for a in reversed(activity) if a["action"] == target.status), target.status)
    ok = target.status == status.SUCCEEDED or (
        target.status == status.WAITING and not str(last).startswith(("needs-", "refused"))
    )
    return Ending(ok, str(last))


async def run_status(wctx: WorkerContext, run: RunRow) -> Outcome:
    """`/status`: the latest run's phase checklist on this ticket or in this thread."""
    target = await _latest_target(wctx, run)
    if target is None:
        await respond(wctx, run, "/status", f"There is no Baton run {_here(run)} yet; {_start_over(run)}.")
        return Outcome(status.SUCCEEDED, "no run")
    phases = await states(wctx.sm, _workflow(target), target.id)
    ending = await _ending(wctx, target)
    if is_gitlab(run):
        shown = render_status(remediate.status_view(target, phases, ending), "gitlab")
    else:
        shown = render_status(progress.view(target, phases, ending), "jira")
    await respond(wctx, run, "/status", f"Run {target.id[:12]} is {target.status}.\n\n{shown}")
    return Outcome(status.SUCCEEDED, f"status of {target.id}")
