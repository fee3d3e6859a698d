"""`/approve` in a merge request thread: push the proposed commit to the MR branch, reply, resolve.

Also the back-off: a person pushing to the MR branch (`mr_pushed`) makes open proposals stale.
Every check runs when the approval executes: the proposal is the thread's latest and still
proposed, its worktree HEAD is the proposed SHA, and the MR's source branch is still at the head the
proposal was built on (nobody pushed since). Then compare-and-set `proposed → approved`, a
fast-forward push of exactly that SHA, one reply with the commit link, and the thread resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.git.errors import GitError, HeadMoved
from bot.store import proposals, runs, status
from bot.store.proposals import ProposalRow
from bot.store.runs import RunRow
from bot.triggers import MergeRequestPushed
from orchestrators import Outcome, approval
from orchestrators.proposal import Person
from orchestrators.resources import Clients, WorkerContext
from orchestrators.ship import SHIPPED_BY
from orchestrators.threads import TARGET_KIND, render_shipped, render_stale_notice
from orchestrators.venue import (
    MrThread,
    addressee,
    args_of,
    author_of,
    command_text,
    refuse,
    subject_proposals,
    venue_of,
)

COMMAND = "/approve"
RETRY = "Reply `/retry` for a fresh proposal on the branch as it is now."


def _named(proposal: ProposalRow, args: str) -> bool:
    return approval.names_latest(proposal.id, proposal.sha, args)


@dataclass(frozen=True)
class Refusal:
    """Why an /approve does not ship, what the person can do instead, and whether the proposal is stale."""

    reason: str
    what_next: str | None = RETRY
    stale: bool = False


async def _moved(clients: Clients, proposal: ProposalRow, allowed: tuple[str, ...]) -> str | None:
    """Why the MR branch is no longer where the proposal expects it (None when it is)."""
    target = proposal.target
    branch = target["source_branch"]
    remote = await clients.gitlab.branch_head(target["project_id"], branch)
    if remote is None:
        return f"proposal {proposal.id} is stale: branch {branch} no longer exists."
    if remote not in allowed:
        return (
            f"proposal {proposal.id} is stale: branch {branch} moved to {remote[:12]} since the proposal "
            f"was made on {target['base_sha'][:12]} (someone pushed to it)."
        )
    return None


async def _why_stale(clients: Clients, proposal: ProposalRow) -> str:
    moved = await _moved(clients, proposal, (proposal.target["base_sha"], proposal.sha))
    return moved or f"proposal {proposal.id} is stale: a newer proposal or a retry replaced it."


async def _current(clients: Clients, proposal: ProposalRow, resuming: bool) -> Refusal | None:
    """The worktree still holds the proposed commit and the branch is where the proposal started."""
    target = proposal.target
    worktree = Path(target["worktree"])
    if not worktree.is_dir() or await clients.workspace.head(worktree) != proposal.sha:
        why = (
            f"proposal {proposal.id} is stale: its commit {proposal.sha[:12]} is no longer what was proposed."
        )
        return Refusal(why, stale=True)
    mr = await clients.gitlab.merge_request(target["project_id"], int(target["mr_iid"]))
    if mr.state != "opened":
        return Refusal(f"the merge request is {mr.state}; nothing can be pushed to it.", None)
    allowed = (target["base_sha"], proposal.sha) if resuming else (target["base_sha"],)
    moved = await _moved(clients, proposal, allowed)
    return Refusal(moved, stale=True) if moved else None


async def _check(wctx: WorkerContext, run: RunRow, proposal: ProposalRow | None) -> Refusal | None:
    """Why this /approve cannot ship now (None: it can)."""
    if proposal is None:
        return Refusal(
            "there is no Baton proposal in this thread yet.",
            "Reply `/remediate` in the thread you want fixed; the proposal and its `/approve` live there.",
        )
    if not _named(proposal, args_of(run)):
        latest = f"the latest is {proposal.id} at {proposal.sha[:12]}"
        return Refusal(f"that is not this thread's latest proposal ({latest}).", "Reply `/approve` alone.")
    clients = wctx.need_clients()
    if proposal.status == proposals.STALE:
        return Refusal(await _why_stale(clients, proposal))
    resuming = proposal.status == proposals.APPROVED and proposal.target.get("approved_by_run") == run.id
    if proposal.status != proposals.PROPOSED and not resuming:
        return Refusal(f"proposal {proposal.id} is already {proposal.status}.", None)
    return await _current(clients, proposal, resuming)


async def _ship(wctx: WorkerContext, run: RunRow, proposal: ProposalRow) -> str:
    """Push exactly the proposed SHA (fast-forward), reply with the commit link, resolve the threads."""
    clients, target = wctx.need_clients(), proposal.target
    project_id, iid, branch = target["project_id"], int(target["mr_iid"]), target["source_branch"]
    await clients.workspace.push(
        Path(target["worktree"]), target["remote_url"], branch, clients.gitlab_token, proposal.sha
    )
    commit_url = f"{str(target.get('web_url') or '').rstrip('/')}/-/commit/{proposal.sha}"
    resolve = [str(d) for d in target.get("resolve", [])]
    text = render_shipped(
        addressee(author_of(run)), command_text(run, COMMAND), proposal.sha, commit_url,
        branch, len(resolve), proposal.id,
    )  # fmt: skip
    venue = venue_of(run)
    here = venue.discussion_id if isinstance(venue, MrThread) else None
    discussion = str(here or target["discussion_id"])
    await clients.gitlab.reply_in_discussion(
        project_id, iid, discussion, text, f"proposal:{proposal.id}:shipped", run_id=run.id
    )
    for thread in resolve:  # after the reply: a new note would reopen a resolved thread
        await clients.gitlab.resolve_discussion(project_id, iid, thread)
    await proposals.move(wctx.sm, proposal.id, proposals.APPROVED, proposals.SHIPPED)
    await runs.settle(
        wctx.sm, proposal.run_id, status.SUCCEEDED, SHIPPED_BY, f"pushed {proposal.sha[:12]} to {branch}"
    )
    await clients.workspace.remove_worktree(proposal.run_id)
    return commit_url


async def _push_failed(wctx: WorkerContext, run: RunRow, proposal: ProposalRow, exc: Exception) -> Outcome:
    """A push that failed: stale if the branch moved meanwhile, else hand the proposal back for /approve."""
    moved = await _moved(wctx.need_clients(), proposal, (proposal.target["base_sha"], proposal.sha))
    if moved or isinstance(exc, HeadMoved):
        await proposals.move(wctx.sm, proposal.id, proposals.APPROVED, proposals.STALE)
        return await refuse(wctx, run, COMMAND, moved or f"the proposal went stale: {exc}", RETRY)
    await proposals.move(wctx.sm, proposal.id, proposals.APPROVED, proposals.PROPOSED)
    await refuse(
        wctx, run, COMMAND, f"the push failed: {str(exc)[:300]}", "Reply `/approve` again to try once more."
    )
    return Outcome(status.FAILED, f"push of proposal {proposal.id} failed: {exc}"[:500])


async def run_approve_mr(wctx: WorkerContext, run: RunRow) -> Outcome:
    """The `approve` run on a merge request: checks at execution time, compare-and-set, push once."""
    proposal = await venue_of(run).proposal(wctx, run)
    refused = await _check(wctx, run, proposal)
    if refused is not None or proposal is None:
        refused = refused or Refusal("there is no proposal.")
        if proposal is not None and refused.stale:
            await proposals.move(wctx.sm, proposal.id, proposals.PROPOSED, proposals.STALE)
        return await refuse(wctx, run, COMMAND, refused.reason, refused.what_next)
    if not await proposals.approve(wctx.sm, proposal.id, run.id):
        return await refuse(
            wctx, run, COMMAND, f"proposal {proposal.id} was approved by someone else just now."
        )
    try:
        url = await _ship(wctx, run, proposal)
    except (HeadMoved, GitError) as exc:
        return await _push_failed(wctx, run, proposal, exc)
    return Outcome(status.SUCCEEDED, f"pushed proposal {proposal.id}: {url}")


async def run_mr_pushed(wctx: WorkerContext, run: RunRow) -> Outcome:
    """New commits on the MR branch by someone: every open proposal built on the old head goes stale."""
    head = run.trigger.head_sha if isinstance(run.trigger, MergeRequestPushed) else ""
    pusher: Person = addressee(author_of(run))
    clients, staled = wctx.need_clients(), []
    for proposal in await subject_proposals(wctx, run.subject):
        target = proposal.target
        if proposal.status != proposals.PROPOSED or target.get("kind") != TARGET_KIND:
            continue
        if head in (target.get("base_sha"), proposal.sha):
            continue
        if not await proposals.move(wctx.sm, proposal.id, proposals.PROPOSED, proposals.STALE):
            continue
        text = render_stale_notice(pusher, proposal.id, target["source_branch"], head, target["base_sha"])
        await clients.gitlab.reply_in_discussion(
            target["project_id"], int(target["mr_iid"]), target["discussion_id"], text,
            f"proposal:{proposal.id}:stale", run_id=run.id,
        )  # fmt: skip
        staled.append(proposal.id)
    if not staled:
        return Outcome(status.SUCCEEDED, "no open proposal on this merge request")
    return Outcome(status.SUCCEEDED, f"marked stale after a push: {', '.join(staled)}")
