"""The task graph of a multi-repository ticket, pure: the planner's plan parsed and checked, and the
scheduler's decisions (what starts now, what is blocked, when the graph is complete) as functions of
the tasks' states. No I/O; orchestrators/graph.py carries the decisions out."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_TASKS = 12
MAX_GOAL = 2000
MAX_CRITERION = 500
MAX_CRITERIA = 10
TASK_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,15}")

PENDING, QUEUED, RUNNING, DONE, FAILED, BLOCKED = "pending", "queued", "running", "done", "failed", "blocked"
ACTIVE = (QUEUED, RUNNING)
MAX_PARALLEL = 4
"""At most this many tasks of one graph run at once (each is a job on the queue; any worker takes it)."""


class PlanRefused(ValueError):
    """The planner's answer is not a usable task graph; the message says what is wrong."""


class TaskSpec(BaseModel):
    """One task as planned: a repository, a goal, how to tell it is done, what it waits for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    repository: str = Field(max_length=255)
    goal: str = Field(min_length=1, max_length=MAX_GOAL)
    acceptance: tuple[str, ...] = Field(default=(), max_length=MAX_CRITERIA)
    depends_on: tuple[str, ...] = Field(default=(), max_length=MAX_TASKS)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not TASK_ID_RE.fullmatch(value):
            raise ValueError(
                f"task id {value[:40]!r} is not 1-16 letters, digits, - or _ (starting a letter)"
            )
        return value

    @field_validator("acceptance")
    @classmethod
    def _criteria(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(item) > MAX_CRITERION for item in value):
            raise ValueError(f"an acceptance criterion is longer than {MAX_CRITERION} characters")
        return value


class PlanAnswer(BaseModel):
    """What the planner returns through the StructuredOutput tool (checked again by `parse_plan`)."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[dict[str, Any]]


@dataclass(frozen=True)
class Plan:
    """A checked task graph: tasks in the planner's order, every dependency known, no cycle."""

    tasks: tuple[TaskSpec, ...]

    def get(self, task_id: str) -> TaskSpec:
        return next(t for t in self.tasks if t.id == task_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tasks)

    def dump(self) -> list[dict[str, Any]]:
        return [t.model_dump(mode="json") for t in self.tasks]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "task"
    return f"{where}: {str(err['msg']).removeprefix('Value error, ')}"


def parse_plan(data: object, repositories: Iterable[str]) -> Plan:
    """The planner's answer as a `Plan`, or `PlanRefused`: known repositories only (any case), unique ids,
    no unknown or self dependency, no cycle, one task per repository, at most `MAX_TASKS` tasks, bounded
    text."""
    tasks_raw = data.get("tasks") if isinstance(data, Mapping) else None
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise PlanRefused("the plan has no task list")
    if len(tasks_raw) > MAX_TASKS:
        raise PlanRefused(f"the plan has {len(tasks_raw)} tasks; at most {MAX_TASKS} are allowed")
    known = {r.casefold(): r for r in repositories}
    tasks: list[TaskSpec] = []
    for index, raw in enumerate(tasks_raw):
        try:
            task = TaskSpec.model_validate(raw)
        except ValidationError as exc:
            raise PlanRefused(f"task {index + 1}: {_first_error(exc)}") from None
        repository = known.get(task.repository.strip().casefold())
        if repository is None:
            names = ", ".join(sorted(known.values()))
            raise PlanRefused(f"task {task.id}: repository {task.repository[:80]!r} is not one of {names}")
        tasks.append(task.model_copy(update={"repository": repository}))
    _check_edges(tasks)
    return Plan(tuple(tasks))


def _check_edges(tasks: Sequence[TaskSpec]) -> None:
    ids = [t.id for t in tasks]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise PlanRefused(f"task id {duplicate} is used twice")
    for task in tasks:
        if task.id in task.depends_on:
            raise PlanRefused(f"task {task.id} depends on itself")
        unknown = [d for d in task.depends_on if d not in ids]
        if unknown:
            raise PlanRefused(f"task {task.id} depends on unknown task {unknown[0][:40]!r}")
    cycle = find_cycle({t.id: t.depends_on for t in tasks})
    if cycle:
        raise PlanRefused(f"the tasks depend on each other in a cycle: {' -> '.join(cycle)}")
    repos = [t.repository for t in tasks]  # one branch and worktree per repository and ticket
    shared = next((r for r in repos if repos.count(r) > 1), None)
    if shared is not None:
        raise PlanRefused(f"repository {shared[:80]!r} has two tasks; give each repository one task")


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str]:
    """A dependency cycle as a path (first node repeated at the end), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in edges:
        if node not in state and (found := visit(node)):
            return found
    return []


def order(plan: Plan) -> list[str]:
    """The task ids in dependency order (a task after everything it depends on; ties: plan order)."""
    placed: list[str] = []
    while len(placed) < len(plan.tasks):
        placed.append(
            next(t.id for t in plan.tasks if t.id not in placed and set(t.depends_on) <= set(placed))
        )
    return placed


def dependants(plan: Plan, task_id: str) -> list[str]:
    """Every task that needs `task_id`, directly or through others, in plan order."""
    found: set[str] = {task_id}
    changed = True
    while changed:
        changed = False
        for task in plan.tasks:
            if task.id not in found and found & set(task.depends_on):
                found.add(task.id)
                changed = True
    return [t.id for t in plan.tasks if t.id in found and t.id != task_id]


@dataclass(frozen=True)
class Decision:
    """What the scheduler does next: tasks to start, tasks a failure blocks, and whether all are done."""

    start: tuple[str, ...] = ()
    block: tuple[str, ...] = ()
    complete: bool = False
    stuck: bool = False  # nothing runs or can start and not everything is done (a failure stops the rest)


def decide(plan: Plan, states: Mapping[str, str], limit: int = MAX_PARALLEL) -> Decision:
    """Deterministic: start pending tasks whose dependencies are all done, in plan order, while fewer
    than `limit` run; block pending tasks that wait on a failed or blocked one."""
    status = {t.id: states.get(t.id, PENDING) for t in plan.tasks}
    block = [
        t.id
        for t in plan.tasks
        if status[t.id] == PENDING and any(status[d] in (FAILED, BLOCKED) for d in t.depends_on)
    ]
    for task_id in block:
        status[task_id] = BLOCKED
    # a task blocked just now blocks its own dependants too
    for task_id in list(block):
        for later in dependants(plan, task_id):
            if status[later] == PENDING:
                status[later] = BLOCKED
                block.append(later)
    running = sum(1 for s in status.values() if s in ACTIVE)
    ready = [
        t.id for t in plan.tasks if status[t.id] == PENDING and all(status[d] == DONE for d in t.depends_on)
    ]
    start = ready[: max(limit - running, 0)]
    complete = all(s == DONE for s in status.values())
    stuck = not complete and running == 0 and not any(s == PENDING for s in status.values())
    return Decision(tuple(start), tuple(block), complete, stuck)


def retry_resets(plan: Plan, states: Mapping[str, str], task_id: str) -> list[str]:
    """The tasks `/retry <task>` sets pending again: the task and every dependant that is not running (a
    failed task's dependants are blocked; a finished task redone changes what its done dependants built on).
    Tasks that do not depend on it stay as they are."""
    later = [t for t in dependants(plan, task_id) if states.get(t) in (BLOCKED, DONE, FAILED)]
    return [task_id, *later]
