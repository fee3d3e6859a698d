"""The task graph at work: the scheduler (start ready tasks as queue jobs, block dependants of a failure,
reopen the parent when all are done), the `task` workflow (assemble → implement → validate → finish, each
task in its own worktree), `/retry <task>` and the live graph for /status and baton show."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.repo_config import read_repo_config
from bot.store import proposals, runs, status, tasks
from bot.store.engine import utcnow
from bot.store.proposals import ProposalRow
from bot.store.runs import RunRow
from bot.store.tables import Phase
from bot.store.tasks import TaskRow
from bot.triggers import dump
from orchestrators import Outcome, implement, plan, progress
from orchestrators.brief import build_brief
from orchestrators.engine import DONE as PHASE_DONE
from orchestrators.engine import PhaseContext, PhaseFailed, PhaseResult, Workflow, execute, reset_from
from orchestrators.graph_render import TaskLine, TaskResult, interfaces, render_graph, task_brief
from orchestrators.knowledge import facts_for
from orchestrators.outputs import Fact, TicketAssembled, implemented, ticket_assembled, validated
from orchestrators.proposal import inline
from orchestrators.resources import WorkerContext
from orchestrators.taskgraph import (
    ACTIVE,
    BLOCKED,
    DONE,
    FAILED,
    PENDING,
    Plan,
    TaskSpec,
    decide,
    retry_resets,
)
from orchestrators.ticket import comments, linked, ticket_info
from orchestrators.venue import subject_proposals, venue_of


def plan_of(rows: list[TaskRow]) -> Plan:
    return Plan(tuple(TaskSpec.model_validate(r.spec) for r in rows))


async def reconcile(wctx: WorkerContext, graph_run_id: str) -> list[TaskRow]:
    """The graph's tasks, after failing each queued or running task whose run has ended without saying so
    (deferred until the worker gave up, stopped by the attempt cap, an error, /cancel) with that run's
    error, its worktree freed."""
    rows = await tasks.of_graph(wctx.sm, graph_run_id)
    changed = 0
    for row in rows:
        if row.status not in ACTIVE or not row.run_id:
            continue
        run = await runs.by_id(wctx.sm, row.run_id)
        if run is None or run.status in status.ACTIVE:
            continue
        reason = run.error or f"its run {row.run_id[:12]} ended {run.status}"
        changed += await tasks.mark(
            wctx.sm, graph_run_id, [row.task_id], FAILED, only_from=ACTIVE, of_run=row.run_id,
            error=reason[:2000], finished_at=utcnow(),
        )  # fmt: skip
        await wctx.need_clients().workspace.remove_worktree(row.run_id)
    return await tasks.of_graph(wctx.sm, graph_run_id) if changed else rows


async def advance(wctx: WorkerContext, graph_run_id: str) -> None:
    """One scheduling step (idempotent, safe from any worker at once): settle tasks whose run ended unseen,
    block what a failure stops, start ready tasks (compare-and-set, then a job each), reopen the parent
    when every task is done. Nothing starts unless the parent waits on its tasks (not cancelled, failed or
    past them)."""
    rows = await reconcile(wctx, graph_run_id)
    parent = await runs.by_id(wctx.sm, graph_run_id)
    if not rows or parent is None or parent.status != status.WAITING:
        return
    decision = decide(plan_of(rows), {r.task_id: r.status for r in rows})
    if decision.block:
        await tasks.mark(wctx.sm, graph_run_id, decision.block, BLOCKED, only_from=(PENDING,))
    for task_id in decision.start:
        run_id = await tasks.start(
            wctx.sm, graph_run_id, task_id, {"subject": parent.subject, "input": dump(parent.trigger)}
        )
        if run_id is not None:
            await wctx.queue.enqueue_run(run_id)
    await show_graph(wctx, parent)
    if not decision.complete or await _past_tasks(wctx, graph_run_id):
        return
    # reopen (compare-and-set) first: a step replayed after the parent moved on changes nothing
    if await runs.reopen(wctx.sm, graph_run_id, wctx.name, "every task of the graph is done"):
        await reset_from(wctx.sm, plan.WORKFLOW, graph_run_id, "tasks")
        await wctx.queue.enqueue_run(graph_run_id)


async def _past_tasks(wctx: WorkerContext, graph_run_id: str) -> bool:
    """The parent has passed its `tasks` gate with every task done (it reviews, proposes or waits on its
    final proposal); a gate that stopped to wait is done too, but without the tasks' results."""
    async with wctx.sm() as session:
        found = (
            await session.execute(
                select(Phase.status, Phase.output).where(Phase.run_id == graph_run_id, Phase.name == "tasks")
            )
        ).one_or_none()
    return found is not None and found[0] == PHASE_DONE and "tasks" in (found[1] or {})


async def show_graph(wctx: WorkerContext, parent: RunRow) -> None:
    """The live graph in one comment on the ticket, posted once and edited in place after every step."""
    clients, key = wctx.need_clients(), progress.issue_key(parent)
    body = f"h4. Baton: the task graph of {key} (run {parent.id[:12]})\n\n" + await status_text(wctx, parent)
    effect = f"run:{parent.id}:graph"
    record = await clients.ledger.get(effect)
    if record is not None and record.status == "done" and record.external_id:
        await clients.jira.edit_comment(key, record.external_id, body)
        return
    await clients.jira.add_comment(key, body, effect, run_id=parent.id)


async def _task(ctx: PhaseContext) -> TaskRow:
    row = await tasks.by_run(ctx.wctx.sm, ctx.run.id)
    if row is None:
        raise PhaseFailed(f"run {ctx.run.id[:12]} is no task of a graph")
    return row


async def _upstream(wctx: WorkerContext, row: TaskRow) -> list[TaskResult]:
    rows = {r.task_id: r for r in await tasks.of_graph(wctx.sm, row.graph_run_id)}
    spec = TaskSpec.model_validate(row.spec)
    return [
        TaskResult(
            d, rows[d].repository, str(rows[d].spec.get("goal", "")),
            tuple((rows[d].result or {}).get("files", [])),
            tuple((rows[d].result or {}).get("interfaces", [])),
            str((rows[d].result or {}).get("summary", "")),
        )
        for d in spec.depends_on
        if d in rows
    ]  # fmt: skip


async def assemble(ctx: PhaseContext) -> PhaseResult:
    """The task's repository: mirror, a worktree on the task's branch, and the brief with the results of the
    tasks it depends on."""
    clients, key = ctx.wctx.need_clients(), progress.issue_key(ctx.run)
    row = await _task(ctx)
    spec = TaskSpec.model_validate(row.spec)
    graph_outputs = await _plan_output(ctx.wctx, row.graph_run_id)
    repo_info = next(r for r in graph_outputs["repositories"] if r["path"] == spec.repository)
    repo_id = repo_info["path"]
    await clients.workspace.ensure_mirror(repo_id, repo_info["remote_url"], clients.gitlab_token)
    branch = plan.task_branch(key, spec)
    worktree = await clients.workspace.create_worktree(
        repo_id, ctx.run.id, repo_info["target_branch"], branch
    )
    config_text, repo = read_repo_config(worktree)
    issue = await clients.jira.issue(key)
    ticket = ticket_info(issue, clients.jira.config.url)
    found = await facts_for(clients.knowledge, f"{spec.goal}\n\n{ticket.description}", worktree, repo)
    brief = build_brief(
        ticket, linked(issue), comments(issue), found.facts, repo, knowledge_unavailable=found.unavailable
    )
    notes = await _review_notes(ctx.wctx, row.graph_run_id)
    text = task_brief(key, spec, await _upstream(ctx.wctx, row), brief.markdown, row.attempts, notes)
    output = TicketAssembled(
        worktree=worktree, branch=branch, base_sha=await clients.workspace.head(worktree),
        target_branch=repo_info["target_branch"], project_id=repo_info["project_id"], project_path=repo_id,
        remote_url=repo_info["remote_url"], repo=repo, repo_config=config_text, brief=text,
        brief_tokens=brief.tokens, summary=spec.goal[:200],
        knowledge=tuple(Fact.of(f) for f in found.facts[:5]), knowledge_unavailable=found.unavailable,
    )  # fmt: skip
    return PhaseResult(output.model_dump(mode="json"))


async def _review_notes(wctx: WorkerContext, graph_run_id: str) -> list[str]:
    """The blockers of the graph's last cross-repository review (a task redone after it reads them)."""
    verdict = (await _phase_output(wctx, graph_run_id, "review")).get("verdict") or {}
    found = verdict.get("blockers") if isinstance(verdict, dict) else None
    return [
        f"{b.get('file') or ''} {b.get('text') or ''}".strip()[:500]
        for b in found or []
        if isinstance(b, dict)
    ]


async def _plan_output(wctx: WorkerContext, graph_run_id: str) -> dict[str, Any]:
    return await _phase_output(wctx, graph_run_id, "plan")


async def _phase_output(wctx: WorkerContext, graph_run_id: str, name: str) -> dict[str, Any]:
    async with wctx.sm() as session:
        found = (
            await session.execute(
                select(Phase.output).where(Phase.run_id == graph_run_id, Phase.name == name)
            )
        ).scalar_one_or_none()
    return dict(found or {})


async def finish(ctx: PhaseContext) -> PhaseResult:
    """Commit locally; the task's result (files, interfaces, decisions) is what its dependants read."""
    clients, key = ctx.wctx.need_clients(), progress.issue_key(ctx.run)
    assembled, row = ticket_assembled(ctx), await _task(ctx)
    worktree = assembled.workdir()
    try:
        sha = await implement.commit_proposal(
            ctx, worktree, f"[{key}] task {row.task_id}: {assembled.summary}"
        )
    except implement.ChangedSinceValidate as exc:
        return implement.revalidate(exc)
    stat = await clients.workspace.diffstat(worktree, assembled.base_sha, at=sha)
    diff = await clients.workspace.diff(worktree, assembled.base_sha, at=sha)
    result = {
        "files": [f.path for f in stat.files], "diffstat": [[f.path, f.added, f.deleted] for f in stat.files],
        "interfaces": list(interfaces(diff)), "summary": implemented(ctx).summary[:2000],
        "checks": [c.line() for c in validated(ctx).checks], "sha": sha, "base_sha": assembled.base_sha,
        "worktree": str(worktree), **assembled.target(),
    }  # fmt: skip
    await tasks.mark(
        ctx.wctx.sm, row.graph_run_id, [row.task_id], DONE, of_run=ctx.run.id, result=result,
        finished_at=utcnow(),
    )  # fmt: skip
    return PhaseResult(result)


TASK_WORKFLOW = Workflow(
    "task",
    (("assemble", assemble), ("implement", implement.implement), ("validate", implement.validate),
     ("finish", finish)),
    max_rounds=3,
)  # fmt: skip


async def _failed(wctx: WorkerContext, run: RunRow, row: TaskRow, reason: str) -> None:
    """Record the failure, free the task's worktree and branch (a retry is a new run on the same branch) and
    say on the ticket what it stops."""
    await tasks.mark(
        wctx.sm,
        row.graph_run_id,
        [row.task_id],
        FAILED,
        of_run=run.id,
        error=reason[:2000],
        finished_at=utcnow(),
    )  # fmt: skip  (recorded first: nothing after it can leave the task running)
    await wctx.need_clients().workspace.remove_worktree(run.id)
    waiting = [
        r.task_id
        for r in await tasks.of_graph(wctx.sm, row.graph_run_id)
        if row.task_id in r.spec.get("depends_on", [])
    ]
    stops = f" {', '.join(waiting)} will not start until it passes." if waiting else ""
    text = (
        f"❌ Task {inline(row.task_id, 'jira', 20)} ({inline(row.repository, 'jira', 120)}) failed: "
        f"{inline(reason, 'jira', 400)}.{stops} The other tasks go on. "
        f"Reply /retry {row.task_id} to run it again."
    )
    await wctx.need_clients().jira.add_comment(
        progress.issue_key(run), text, f"run:{run.id}:task-failed", run_id=run.id
    )


async def run_task(wctx: WorkerContext, run: RunRow) -> Outcome:
    """One task of a graph, as its own queued run; whatever happens, the scheduler takes the next step."""
    row = await tasks.by_run(wctx.sm, run.id)
    if row is None:
        return Outcome(status.FAILED, "this task run belongs to no graph")
    await tasks.begin(wctx.sm, run.id)
    try:
        outcome = await execute(TASK_WORKFLOW, wctx, run)
    except PhaseFailed as exc:
        outcome = Outcome(status.FAILED, str(exc))
    if outcome.status != status.SUCCEEDED:
        await _failed(wctx, run, row, outcome.message)
        outcome = Outcome(status.FAILED, outcome.message)
    await advance(wctx, row.graph_run_id)
    return outcome


async def run_ended(wctx: WorkerContext, run_id: str) -> None:
    """A task run the worker ended itself (it gave up after deferrals, the attempt cap, an error the task
    workflow did not catch): its graph takes a step, which fails the task and blocks what waits on it."""
    row = await tasks.by_run(wctx.sm, run_id)
    if row is not None:
        await advance(wctx, row.graph_run_id)


async def graph_lines(wctx: WorkerContext, graph_run_id: str) -> list[TaskLine]:
    return [
        TaskLine(
            r.task_id,
            r.repository,
            r.status,
            tuple(r.spec.get("depends_on", [])),
            r.duration_s,
            r.cost_usd,
            r.error,
        )
        for r in await tasks.of_graph(wctx.sm, graph_run_id)
    ]


async def status_text(wctx: WorkerContext, target: RunRow, flavor: str = "jira") -> str:
    await reconcile(wctx, target.id)  # a task whose run ended unseen shows as failed, not running
    lines = await graph_lines(wctx, target.id)
    if not lines:
        return "The plan is not approved yet; no task has started."
    return render_graph(lines, flavor)


async def retry(wctx: WorkerContext, target: RunRow, args: str) -> str:
    """`/retry <task>` (or `/retry` for every failed task): the task and the dependants that built on it go
    back to pending and the scheduler starts them; tasks that do not depend on it are not run again. A done
    task may be redone (say, after the cross-repository review) until the final proposal is approved; its
    open proposal goes stale. The reply."""
    if target.status == status.CANCELLED:
        return f"run {target.id[:12]} was cancelled; its tasks are not run again. {venue_of(target).again}"
    rows = await reconcile(wctx, target.id)
    states = {r.task_id: r.status for r in rows}
    asked = args.split(maxsplit=1)[0] if args.strip() else ""
    chosen = [asked] if asked else [r.task_id for r in rows if r.status == FAILED]
    if asked and asked not in states:
        return f"there is no task {asked[:20]!r}; the tasks are {', '.join(states)}."
    if not chosen:
        return "no task has failed; nothing to retry (name a task to redo it: /retry <task>)."
    if any(states[t] not in (FAILED, BLOCKED, DONE) for t in chosen):
        return f"task {chosen[0]} is {states[chosen[0]]}; wait until it has finished."
    shipping = await _final_proposal(wctx, target)
    if shipping is not None and shipping.status in (proposals.APPROVED, proposals.SHIPPED):
        return f"proposal {shipping.id} is already {shipping.status}; its tasks are not redone."
    resets = sorted({t for c in chosen for t in retry_resets(plan_of(rows), states, c)})
    redone = [r for r in rows if r.task_id in resets and r.status == DONE]
    # a checked compare-and-set before anything is undone: an /approve that won keeps its worktrees
    shipping_open = shipping if shipping is not None and shipping.status == proposals.PROPOSED else None
    if redone and shipping_open and not await _stale(wctx, shipping_open):
        return f"proposal {shipping_open.id} was approved just now; its tasks are not redone."
    for row in redone:  # a redone task gets a new run on the same branch: free the old worktree
        if row.run_id:
            await wctx.need_clients().workspace.remove_worktree(row.run_id)
    await tasks.mark(wctx.sm, target.id, resets, PENDING, only_from=(FAILED, BLOCKED, DONE))
    await reset_from(wctx.sm, plan.WORKFLOW, target.id, "tasks")  # the parent waits on its tasks again
    await tasks.wait_again(wctx.sm, target.id, wctx.name, f"task {', '.join(chosen)} is run again")
    await advance(wctx, target.id)
    waiting = ", ".join(t for t in resets if t not in chosen) or "no other task"
    return f"Retrying task {', '.join(chosen)}; {waiting} waits on it; the other tasks are not run again."


async def _stale(wctx: WorkerContext, proposal: ProposalRow) -> bool:
    return await proposals.move(wctx.sm, proposal.id, proposals.PROPOSED, proposals.STALE)


async def _final_proposal(wctx: WorkerContext, target: RunRow) -> ProposalRow | None:
    """The graph's newest proposal over every repository (None: none yet)."""
    found = [
        p
        for p in await subject_proposals(wctx, target.subject)
        if p.run_id == target.id and p.target.get("kind") == "graph" and p.target.get("origin") == "ship"
    ]
    return found[0] if found else None


async def has_tasks(wctx: WorkerContext, graph_run_id: str) -> bool:
    """The graph's plan was approved (its tasks exist)."""
    return bool(await tasks.of_graph(wctx.sm, graph_run_id))


async def free_worktrees(wctx: WorkerContext, graph_run_id: str, *, keep_branches: bool = False) -> None:
    """Free every task's worktree (shipped, rejected or cancelled: the graph is over); a shipped graph
    keeps its local branches, as a shipped one-repository run does."""
    for row in await tasks.of_graph(wctx.sm, graph_run_id):
        if row.run_id:
            await wctx.need_clients().workspace.remove_worktree(row.run_id, keep_branch=keep_branches)
