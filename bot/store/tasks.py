"""The tasks of a multi-repository ticket's graph (`graph_tasks`): created once from the approved plan,
started by compare-and-set (pending → queued with the task's run, so two schedulers never start a task
twice), finished with their result, reset by /retry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store import status
from bot.store.engine import as_utc, utcnow
from bot.store.inbox import new_run_id
from bot.store.runs import add_activity
from bot.store.tables import GraphTask, Phase, Run

TASK_KIND = "task"


@dataclass(frozen=True)
class TaskRow:
    graph_run_id: str
    task_id: str
    repository: str
    spec: dict[str, Any]
    status: str
    run_id: str | None
    attempts: int
    result: dict[str, Any] | None
    error: str | None
    started: datetime | None
    finished: datetime | None
    cost_usd: float = 0.0
    tokens: int = 0

    @property
    def duration_s(self) -> float | None:
        return (self.finished - self.started).total_seconds() if self.started and self.finished else None


def _row(task: GraphTask, cost: float = 0.0, tokens: int = 0) -> TaskRow:
    return TaskRow(
        task.graph_run_id, task.task_id, task.repository, dict(task.spec), task.status, task.run_id,
        task.attempts, dict(task.result) if task.result else None, task.error,
        as_utc(task.started_at) if task.started_at else None,
        as_utc(task.finished_at) if task.finished_at else None, cost, tokens,
    )  # fmt: skip


async def create(
    sm: async_sessionmaker[AsyncSession], graph_run_id: str, specs: Iterable[dict[str, Any]]
) -> bool:
    """The graph's task rows, all pending; False (and nothing written) when the graph already has tasks."""
    async with sm.begin() as session:
        count = await session.scalar(select(func.count()).where(GraphTask.graph_run_id == graph_run_id))
        if count:
            return False
        for position, spec in enumerate(specs):
            session.add(
                GraphTask(
                    graph_run_id=graph_run_id, task_id=str(spec["id"]), position=position,
                    repository=str(spec["repository"]), spec=dict(spec), status="pending", attempts=0,
                )
            )  # fmt: skip
        return True


async def of_graph(sm: async_sessionmaker[AsyncSession], graph_run_id: str) -> list[TaskRow]:
    """The graph's tasks in plan order, with the cost and tokens all their runs spent so far."""
    async with sm() as session:
        rows = list(
            (
                await session.execute(
                    select(GraphTask)
                    .where(GraphTask.graph_run_id == graph_run_id)
                    .order_by(GraphTask.position)
                )
            ).scalars()
        )
        spent: dict[str, tuple[float, int]] = {}
        if rows:  # every attempt's run (origin graph:<graph>:<task>:<attempt>), failed ones too
            query = (
                select(
                    Run.origin, func.sum(Phase.cost_usd), func.sum(Phase.input_tokens + Phase.output_tokens)
                )
                .join(Phase, Phase.run_id == Run.id)
                .where(Run.kind == TASK_KIND, Run.origin.like(f"graph:{graph_run_id}:%"))
                .group_by(Run.origin)
            )
            for origin, cost, tokens in await session.execute(query):
                task_id = str(origin).split(":")[2]
                before = spent.get(task_id, (0.0, 0))
                spent[task_id] = (before[0] + float(cost or 0), before[1] + int(tokens or 0))
    return [_row(r, *spent.get(r.task_id, (0.0, 0))) for r in rows]


async def by_run(sm: async_sessionmaker[AsyncSession], run_id: str) -> TaskRow | None:
    """The task whose current run is `run_id`."""
    async with sm() as session:
        found = (
            await session.execute(select(GraphTask).where(GraphTask.run_id == run_id))
        ).scalar_one_or_none()
    return _row(found) if found else None


async def start(
    sm: async_sessionmaker[AsyncSession], graph_run_id: str, task_id: str, parent: Mapping[str, Any]
) -> str | None:
    """pending → queued by compare-and-set, with a new `task` run (the parent's subject and input) or,
    on a retry, its earlier run reopened; the run id to enqueue, or None when another scheduler won."""
    now = utcnow()
    async with sm.begin() as session:
        task = (
            await session.execute(
                select(GraphTask).where(GraphTask.graph_run_id == graph_run_id, GraphTask.task_id == task_id)
            )
        ).scalar_one()
        attempt = task.attempts + 1  # read before the update, which refreshes the loaded row
        won = await session.execute(
            update(GraphTask)
            .where(GraphTask.id == task.id, GraphTask.status == "pending")
            .values(
                status="queued",
                attempts=GraphTask.attempts + 1,
                error=None,
                started_at=None,
                finished_at=None,
            )
        )
        if won.rowcount != 1:  # type: ignore[attr-defined]
            return None
        run_id = new_run_id()
        session.add(
            Run(
                id=run_id, kind=TASK_KIND, subject=str(parent["subject"]),
                origin=f"graph:{graph_run_id}:{task_id}:{attempt}", status=status.QUEUED,
                input=dict(parent["input"]), attempts=0, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        await session.execute(update(GraphTask).where(GraphTask.id == task.id).values(run_id=run_id))
        await add_activity(
            session, graph_run_id, "baton", "task-started", f"task {task_id} queued as run {run_id}"
        )
        return run_id


async def mark(
    sm: async_sessionmaker[AsyncSession],
    graph_run_id: str,
    task_ids: Iterable[str],
    new_status: str,
    *,
    only_from: tuple[str, ...] = (),
    of_run: str | None = None,
    **values: Any,
) -> int:
    """Set the tasks' status (and `values`: result, error, started_at, finished_at); with `only_from`, only
    tasks in one of those statuses change; with `of_run`, only a task whose current run that is (an old
    attempt replayed never overwrites the current one). How many changed."""
    query = update(GraphTask).where(
        GraphTask.graph_run_id == graph_run_id, GraphTask.task_id.in_(list(task_ids))
    )
    if only_from:
        query = query.where(GraphTask.status.in_(only_from))
    if of_run is not None:
        query = query.where(GraphTask.run_id == of_run)
    async with sm.begin() as session:
        result = await session.execute(query.values(status=new_status, **values))
        return int(result.rowcount)  # type: ignore[attr-defined]


async def begin(sm: async_sessionmaker[AsyncSession], run_id: str) -> None:
    """The task's run started working (queued → running, start time once)."""
    async with sm.begin() as session:
        await session.execute(
            update(GraphTask).where(GraphTask.run_id == run_id, GraphTask.status == "queued")
            .values(status="running", started_at=utcnow())
        )  # fmt: skip


def shown(row: TaskRow) -> dict[str, Any]:
    """One task as `baton show` prints it (and its --json carries)."""
    return {
        "task": row.task_id,
        "repository": row.repository,
        "status": row.status,
        "depends_on": list(row.spec.get("depends_on", [])),
        "run": row.run_id,
        "attempts": row.attempts,
        "started": row.started.isoformat() if row.started else None,
        "finished": row.finished.isoformat() if row.finished else None,
        "duration_s": row.duration_s,
        "cost_usd": row.cost_usd,
        "error": row.error,
    }


async def wait_again(
    sm: async_sessionmaker[AsyncSession], graph_run_id: str, actor: str, message: str
) -> bool:
    """A graph whose parent failed after its tasks (review, propose) waits on its tasks again (a task is
    redone); False when the parent had not failed."""
    async with sm.begin() as session:
        result = await session.execute(
            update(Run).where(Run.id == graph_run_id, Run.status == status.FAILED)
            .values(status=status.WAITING, error=None, updated_at=utcnow())
        )  # fmt: skip
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await add_activity(session, graph_run_id, actor, status.WAITING, message)
        return True
