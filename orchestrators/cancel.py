"""`/cancel`: stop the run in progress on this ticket or MR and say what state it left."""

from __future__ import annotations

from arq.constants import abort_jobs_ss
from arq.utils import timestamp_ms

from bot.agent.process import kill_stragglers
from bot.store import runs, status, tasks
from bot.store.runs import RunRow
from orchestrators import Outcome, graph
from orchestrators.agents import agent_root
from orchestrators.resources import WorkerContext
from orchestrators.taskgraph import QUEUED, RUNNING
from orchestrators.venue import author_of, refuse, reply, venue_of

CANCELLABLE = (status.QUEUED, status.RUNNING, status.WAITING)
WORKFLOWS = ("implement", "remediate")


async def _target(wctx: WorkerContext, subject: str) -> RunRow | None:
    for row in await runs.listing(wctx.sm, limit=200):
        if row.subject == subject and row.kind in WORKFLOWS and row.status in CANCELLABLE:
            return row
    return None


async def _phase(wctx: WorkerContext, run_id: str) -> str:
    detail = await runs.detail(wctx.sm, run_id)
    return next((p["name"] for p in detail["phases"] if p["status"] != "done"), "the end")


async def run_cancel(wctx: WorkerContext, run: RunRow) -> Outcome:
    target = await _target(wctx, run.subject)
    if target is None:
        return await refuse(
            wctx, run, "/cancel", "there is no queued, running or waiting run here to cancel."
        )
    who = author_of(run).called()
    phase = await _phase(wctx, target.id)
    if not await runs.settle(wctx.sm, target.id, status.CANCELLED, wctx.name, f"cancelled by {who}"):
        return await refuse(
            wctx, run, "/cancel", f"run {target.id[:12]} finished before it could be cancelled."
        )
    ended = await _stop(wctx, target.id)
    stopped = await _stop_tasks(wctx, target.id, who)
    state = f"it was {target.status} at {phase}"
    agents = f"; {len(ended)} agent process(es) ended" if ended else ""
    text = f"Cancelled run {target.id[:12]} ({state}{agents}). Nothing was pushed."
    if stopped is not None:  # a multi-repository ticket: its task runs stop too, and it is over
        text = f"{text} {stopped} {venue_of(run).again}"
        await reply(wctx, run, text)
        return Outcome(status.SUCCEEDED, f"cancelled run {target.id} at {phase}")
    await reply(wctx, run, f"{text} Reply /retry to resume from {phase}.")
    return Outcome(status.SUCCEEDED, f"cancelled run {target.id} at {phase}")


async def _stop(wctx: WorkerContext, run_id: str) -> list[int]:
    """A running job is aborted by its worker (arq's abort set); its agent processes are ended here too."""
    await wctx.queue.redis.zadd(abort_jobs_ss, {run_id: timestamp_ms()})
    return list(await kill_stragglers(agent_root(run_id)))


async def _stop_tasks(wctx: WorkerContext, graph_run_id: str, who: str) -> str | None:
    """Cancel a graph's queued and running task runs the same way, fail their tasks and free every task's
    worktree; what was stopped (None: the run is no graph)."""
    rows = await tasks.of_graph(wctx.sm, graph_run_id)
    if not rows:
        return None
    stopped = []
    for row in rows:
        active = row.status in (QUEUED, RUNNING) and row.run_id is not None
        if active and await runs.settle(
            wctx.sm, str(row.run_id), status.CANCELLED, wctx.name, f"cancelled by {who}"
        ):
            await _stop(wctx, str(row.run_id))
            stopped.append(row.task_id)
    await graph.reconcile(wctx, graph_run_id)
    await graph.free_worktrees(wctx, graph_run_id)
    parent = await runs.by_id(wctx.sm, graph_run_id)
    if parent is not None:  # the live graph shows the stopped tasks as failed
        await graph.show_graph(wctx, parent)
    if not stopped:
        return "No task of its graph was running."
    return f"Its running task(s) {', '.join(stopped)} were stopped too."
