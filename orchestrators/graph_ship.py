"""`/approve` of a multi-repository ticket's proposals (orchestrators/ship.py checks first): of the plan, the
tasks are created and the scheduler starts the ready ones; of the final proposal, every repository's branch
is pushed and its merge request opened, each linking the others and the ticket, every write exactly once
(effect keys per task), so a job killed midway resumes without a second MR. A push that fails leaves the
proposal approved, says exactly what shipped and offers `/retry`, which resumes that same approve run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.clients.gitlab import GitLabError
from bot.clients.retry import RetryableError
from bot.git.errors import GitError, HeadMoved
from bot.store import proposals, runs, status, tasks
from bot.store.proposals import ProposalRow
from bot.store.runs import RunRow
from orchestrators import Outcome, graph, progress
from orchestrators.graph_render import mr_description, mr_links
from orchestrators.proposal import inline
from orchestrators.resources import Clients, WorkerContext
from orchestrators.taskgraph import TaskSpec
from orchestrators.venue import refuse, respond, venue_of

SHIPPED_BY = "baton"


def is_graph(proposal: ProposalRow) -> bool:
    return proposal.target.get("kind") == "graph"


def repositories(proposal: ProposalRow) -> list[str]:
    """Every repository the plan or final proposal changes (each one's approvers must agree)."""
    return [str(t.get("project_path") or t["repository"]) for t in proposal.target["tasks"]]


async def stale(clients: Clients, proposal: ProposalRow) -> str | None:
    """A final proposal is stale when a task's worktree moved or its branch was pushed to since."""
    if proposal.target.get("origin") != "ship":
        return None
    for task in proposal.target["tasks"]:
        worktree = Path(task["worktree"])
        if not worktree.is_dir() or await clients.workspace.head(worktree) != task["sha"]:
            task_id = task["task_id"]
            return f"proposal {proposal.id} is stale: task {task_id}'s commit is no longer what was proposed."
        remote = await clients.gitlab.branch_head(task["project_path"], task["branch"])
        if remote is not None and remote != task["sha"]:
            return f"proposal {proposal.id} is stale: branch {task['branch']} moved to {remote[:12]}."
    return None


async def approved(wctx: WorkerContext, run: RunRow, proposal: ProposalRow) -> Outcome:
    if proposal.target.get("origin") == "plan":
        return await _start(wctx, run, proposal)
    return await _ship(wctx, run, proposal)


async def _start(wctx: WorkerContext, run: RunRow, proposal: ProposalRow) -> Outcome:
    parent = await runs.by_id(wctx.sm, proposal.run_id)
    if parent is None or parent.status != status.WAITING:  # cancelled, rejected or failed since: no task
        await proposals.move(wctx.sm, proposal.id, proposals.APPROVED, proposals.STALE)
        why = f"run {proposal.run_id[:12]} is {parent.status if parent else 'gone'}"
        return await refuse(
            wctx, run, "/approve", f"{why}; plan {proposal.id} starts nothing.", venue_of(run).again
        )
    await tasks.create(wctx.sm, proposal.run_id, proposal.target["tasks"])
    await proposals.move(wctx.sm, proposal.id, proposals.APPROVED, proposals.SHIPPED)
    await graph.advance(wctx, proposal.run_id)
    started = [r.task_id for r in await tasks.of_graph(wctx.sm, proposal.run_id) if r.status != "pending"]
    await respond(
        wctx, run, "/approve",
        f"Plan {proposal.id} approved: started task {', '.join(started) or 'none'}; the others follow as "
        "what they depend on passes. Reply /status to see the graph.",
    )  # fmt: skip
    return Outcome(status.SUCCEEDED, f"plan {proposal.id} started")


async def _open(
    wctx: WorkerContext, run: RunRow, proposal: ProposalRow, task: dict[str, Any]
) -> tuple[int, str]:
    """Push one task's exact commit and open its merge request (once: effect key per task)."""
    clients, key = wctx.need_clients(), progress.issue_key(run)
    await clients.workspace.push(
        Path(task["worktree"]), task["remote_url"], task["branch"], clients.gitlab_token, task["sha"]
    )
    others = [(t["project_path"], t["branch"]) for t in proposal.target["tasks"] if t is not task]
    spec = TaskSpec(id=task["task_id"], repository=task["project_path"], goal=task.get("goal") or key)
    mr = await clients.gitlab.create_merge_request(
        task["project_path"], task["branch"], task["target_branch"],
        f"[{key}] {task['task_id']}: {' '.join(spec.goal.split())[:80]}",
        mr_description(key, clients.jira.config.url, spec, others, proposal.id), ["baton"], False,
        f"proposal:{proposal.id}:mr:{task['task_id']}", run_id=run.id,
    )  # fmt: skip
    return mr.iid, mr.web_url


async def _ship(wctx: WorkerContext, run: RunRow, proposal: ProposalRow) -> Outcome:
    clients, key = wctx.need_clients(), progress.issue_key(run)
    opened: dict[str, tuple[int, str]] = {}
    for task in proposal.target["tasks"]:
        try:
            opened[task["task_id"]] = await _open(wctx, run, proposal, task)
        except Exception as exc:  # a push or MR that fails: say exactly what shipped, nothing silent
            outcome = await _partial(wctx, run, proposal, opened, task, exc)
            if isinstance(exc, RetryableError):  # an outage: the worker tries this run again later
                raise
            return outcome
    links = [(t["task_id"], t["project_path"], opened[t["task_id"]][1]) for t in proposal.target["tasks"]]
    for task in proposal.target["tasks"]:
        iid = opened[task["task_id"]][0]
        await clients.gitlab.post_note(
            task["project_path"], iid, mr_links(key, clients.jira.config.url, task["project_path"], links),
            f"proposal:{proposal.id}:links:{task['task_id']}", run_id=run.id,
        )  # fmt: skip
    listed = "\n".join(f"* {t}: {inline(repo, 'jira', 120)} [{url}]" for t, repo, url in links)
    text = f"✅ Shipped {len(links)} merge requests for {key}, each linking the others:\n{listed}"
    await clients.jira.add_comment(key, text, f"proposal:{proposal.id}:mr-link", run_id=run.id)
    await proposals.move(wctx.sm, proposal.id, proposals.APPROVED, proposals.SHIPPED)
    await runs.settle(wctx.sm, proposal.run_id, status.SUCCEEDED, SHIPPED_BY, f"shipped {len(links)} MRs")
    await graph.free_worktrees(wctx, proposal.run_id, keep_branches=True)
    return Outcome(status.SUCCEEDED, f"shipped proposal {proposal.id}: {len(links)} merge requests")


async def _partial(
    wctx: WorkerContext,
    run: RunRow,
    proposal: ProposalRow,
    opened: dict[str, tuple[int, str]],
    task: dict[str, Any],
    exc: Exception,
) -> Outcome:
    key = progress.issue_key(run)
    shipped = ", ".join(f"{t} (!{iid} {url})" for t, (iid, url) in opened.items()) or "nothing"
    rest = [t["task_id"] for t in proposal.target["tasks"] if t["task_id"] not in opened]
    permanent = _permanent(exc)
    if permanent:  # trying again cannot help: the proposal goes stale (as ship.py does on a moved branch)
        await proposals.move(wctx.sm, proposal.id, proposals.APPROVED, proposals.STALE)
    step = (
        f"Proposal {proposal.id} is stale; reply /retry {task['task_id']} to redo that task"
        if permanent
        else "Reply /retry to ship the rest (what shipped is not opened twice) or /reject to stop"
    )
    text = (
        f"⚠️ Shipping {key} stopped at task {inline(task['task_id'], 'jira', 20)} "
        f"({inline(task['project_path'], 'jira', 120)}): "
        f"{inline(f'{type(exc).__name__}: {exc}', 'jira', 300)}.\n"
        f"Shipped: {shipped}. Not shipped: {', '.join(rest)}.\n{step}."
    )
    # each attempt (each /retry reopens the approve run) says what happened to it, once
    attempt = sum(a["action"] == "reopened" for a in (await runs.detail(wctx.sm, run.id))["activity"])
    await wctx.need_clients().jira.add_comment(key, text, f"run:{run.id}:partial:{attempt}", run_id=run.id)
    return Outcome(status.FAILED, f"shipped {shipped}; stopped at {task['task_id']}: {exc}"[:500])


def _permanent(exc: Exception) -> bool:
    """Trying the same shipping again cannot help: the task's commit or its branch moved (a rejected,
    non-fast-forward push), or GitLab refused the request itself for good (a 4xx other than 401/403: a
    permission can be granted, and then `/retry` ships the rest)."""
    moved = isinstance(exc, HeadMoved) or (isinstance(exc, GitError) and "[rejected]" in exc.stderr)
    code = exc.status if isinstance(exc, GitLabError) else None
    return moved or (code is not None and 400 <= code < 500 and code not in (401, 403))


async def resume(wctx: WorkerContext, graph_run_id: str, subject: str) -> str | None:
    """`/retry` after a shipping that stopped halfway: reopen the approve run that stopped (it resumes its
    approved proposal; what it opened is found by effect key, not opened again). The reply, or None when
    no shipping of this graph stopped."""
    stopped = await proposals.latest(wctx.sm, subject)
    if stopped is None or not is_graph(stopped) or stopped.run_id != graph_run_id:
        return None
    approver = stopped.target.get("approved_by_run")
    if stopped.status != proposals.APPROVED or not approver:
        return None
    if not await runs.reopen(wctx.sm, approver, wctx.name, "retry of a shipping that stopped halfway"):
        return f"the shipping of proposal {stopped.id} is still going on."
    await wctx.queue.enqueue_run(approver)
    return f"Shipping the rest of proposal {stopped.id}; what shipped already is not opened again."
