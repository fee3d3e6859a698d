"""`/approve`: check the approver and that the proposal is current, then push, open the MR, link it (a
proposal of wiki pages lands in the wiki instead: orchestrators/wiki_proposal.py).

A ticket can hold an open proposal of each family at once (a code change, an architecture decision,
learned facts: bot/store/proposals.py `family`). `addressed` finds the one a command means: the one its
first word names, else the only open one; with several open, a bare command is refused with the exact
replies that name each.
"""

from __future__ import annotations

from pathlib import Path

from bot.git.errors import HeadMoved
from bot.store import proposals, runs, status
from bot.store.proposals import ProposalRow
from bot.store.runs import RunRow
from bot.triggers import TicketLabelled
from orchestrators import Outcome, approval, graph_ship, progress, wiki_proposal
from orchestrators.proposal import Person
from orchestrators.resources import Clients, WorkerContext
from orchestrators.venue import addressee, args_of, author_of, refuse

SHIPPED_BY = "baton"


def what(proposal: ProposalRow) -> str:
    """A proposal's family in words."""
    if wiki_proposal.is_knowledge(proposal):
        return "architecture decision" if proposal.target.get("origin") == "design" else "learned facts"
    return "code change"


async def addressed(wctx: WorkerContext, run: RunRow, command: str) -> ProposalRow | str | None:
    """The proposal `command` acts on here: the open one its first word names (id, or 7+ characters of its
    SHA), else the only open one, else the subject's newest (whatever its status; None: there is none).
    A reason (str) when several families have an open proposal and the command names none of them."""
    opens = await proposals.latest_open(wctx.sm, run.subject, run.id)
    words = args_of(run).split(maxsplit=1)
    if words:
        named = [p for p in opens if approval.names_latest(p.id, p.sha, words[0])]
        if named:
            return named[0]
    resuming = [p for p in opens if p.status == proposals.APPROVED]
    if resuming:
        return resuming[0]
    if len(opens) > 1:
        replies = "; ".join(f"for the {what(p)} reply `{command} {p.id}`" for p in opens)
        return f"{len(opens)} proposals are open on this ticket, so say which: {replies}."
    return opens[0] if opens else await proposals.latest(wctx.sm, run.subject)


def _named(proposal: ProposalRow, args: str) -> bool:
    return approval.names_latest(proposal.id, proposal.sha, args)


async def _check(wctx: WorkerContext, run: RunRow, proposal: ProposalRow | None) -> str | None:
    """Why this /approve cannot ship now (None: it can)."""
    if proposal is None:
        return "there is no proposal on this ticket yet."
    if not _named(proposal, args_of(run)):
        return f"that is not the latest proposal (the latest is {proposal.id} at {proposal.sha[:12]})."
    resuming = proposal.status == proposals.APPROVED and proposal.target.get("approved_by_run") == run.id
    if proposal.status != proposals.PROPOSED and not resuming:
        return f"proposal {proposal.id} is already {proposal.status}."
    clients = wctx.need_clients()
    implement_run = await runs.by_id(wctx.sm, proposal.run_id)
    requester = author_of(implement_run) if implement_run else None
    paths = graph_ship.repositories(proposal) if graph_ship.is_graph(proposal) else []
    for path in dict.fromkeys(paths or [proposal.target["project_path"]]):  # each repository's approvers
        mapping = clients.projects.for_gitlab(path)
        if mapping is None:
            return f"{path} is no longer in the project mapping."
        refused = await approval.refusal(clients.jira, wctx.settings, mapping, author_of(run), requester)
        if refused:
            return refused
    if wiki_proposal.is_knowledge(proposal):  # wiki pages: bound to their content, no branch to go stale
        return None
    if graph_ship.is_graph(proposal):  # a plan, or one proposal over several repositories
        return await graph_ship.stale(clients, proposal)
    return await _stale(clients, proposal)


async def _stale(clients: Clients, proposal: ProposalRow) -> str | None:
    """The proposal is stale if its worktree moved or someone pushed to its branch since."""
    worktree = Path(proposal.target["worktree"])
    if not worktree.is_dir() or await clients.workspace.head(worktree) != proposal.sha:
        return (
            f"proposal {proposal.id} is stale: its commit {proposal.sha[:12]} is no longer what was proposed."
        )
    remote = await clients.gitlab.branch_head(proposal.target["project_path"], proposal.target["branch"])
    if remote is not None and remote != proposal.sha:
        return f"proposal {proposal.id} is stale: branch {proposal.target['branch']} moved to {remote[:12]}."
    return None


def _description(proposal: ProposalRow, key: str, jira_url: str, approver: Person) -> str:
    return (
        f"Implements [{key}]({jira_url.rstrip('/')}/browse/{key}).\n\n"
        f"Proposed by Baton (proposal `{proposal.id}`, commit `{proposal.sha[:12]}`), reviewed by Baton's "
        f"read-only reviewer, and approved by {approver.display_name} with `/approve` on the ticket.\n\n"
        "The full proposal (diffstat, checks, review verdict, cost) is on the ticket."
    )


async def _ship(wctx: WorkerContext, run: RunRow, proposal: ProposalRow) -> str:
    clients, target, key = wctx.need_clients(), proposal.target, progress.issue_key(run)
    approver = addressee(author_of(run))
    await clients.workspace.push(
        Path(target["worktree"]), target["remote_url"], target["branch"], clients.gitlab_token, proposal.sha
    )
    implement_run = await runs.by_id(wctx.sm, proposal.run_id)
    labelled = implement_run.trigger if implement_run else None
    summary = (labelled.summary if isinstance(labelled, TicketLabelled) else None) or key
    mr = await clients.gitlab.create_merge_request(
        target["project_path"], target["branch"], target["target_branch"], f"[{key}] {summary}",
        _description(proposal, key, clients.jira.config.url, approver), ["baton"], False,
        f"proposal:{proposal.id}:mr", run_id=run.id,
    )  # fmt: skip
    branch = target["branch"]
    text = f"✅ Shipped: merge request [!{mr.iid}|{mr.web_url}] opens branch {{{{{branch}}}}} for review."
    await clients.jira.add_comment(key, text, f"proposal:{proposal.id}:mr-link", run_id=run.id)
    await proposals.move(wctx.sm, proposal.id, proposals.APPROVED, proposals.SHIPPED)
    await runs.settle(
        wctx.sm, proposal.run_id, status.SUCCEEDED, SHIPPED_BY, f"shipped as !{mr.iid} {mr.web_url}"
    )
    await clients.workspace.remove_worktree(proposal.run_id, keep_branch=True)
    return mr.web_url


async def run_approve(wctx: WorkerContext, run: RunRow) -> Outcome:
    """The `approve` run: every check at execution time, compare-and-set, then the external writes once."""
    proposal = await addressed(wctx, run, "/approve")
    if isinstance(proposal, str):
        return await refuse(wctx, run, "/approve", proposal)
    refused = await _check(wctx, run, proposal)
    if refused or proposal is None:
        return await refuse(
            wctx, run, "/approve", refused or "no proposal", "Reply /retry to get a fresh proposal."
        )
    if not await proposals.approve(wctx.sm, proposal.id, run.id):
        return await refuse(
            wctx, run, "/approve", f"proposal {proposal.id} was approved by someone else just now."
        )
    if wiki_proposal.is_knowledge(proposal):
        return await wiki_proposal.approved(wctx, run, proposal)
    if graph_ship.is_graph(proposal):
        return await graph_ship.approved(wctx, run, proposal)
    try:
        url = await _ship(wctx, run, proposal)
    except HeadMoved as exc:
        await proposals.move(wctx.sm, proposal.id, proposals.APPROVED, proposals.STALE)
        return await refuse(wctx, run, "/approve", f"the proposal went stale: {exc}", "Reply /retry.")
    return Outcome(status.SUCCEEDED, f"shipped proposal {proposal.id}: {url}")
