"""The phase engine: a run is a sequence of named phases whose outputs are persisted before the next.

A crashed or failed run resumes at its first unfinished phase; `retry(phase=…)` re-runs one phase
and everything after it; a phase may jump back to an earlier one (the implement → validate → review
loop) at most `max_rounds` times, after which the run stops for a human.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clients.retry import RetryableError
from bot.store import status
from bot.store.engine import as_utc, utcnow
from bot.store.runs import RunRow, add_activity
from bot.store.tables import Phase
from orchestrators import Outcome
from orchestrators.redraw import Redraw
from orchestrators.resources import WorkerContext

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"

M = TypeVar("M", bound=BaseModel)


class PhaseOutputError(RuntimeError):
    """A phase's stored output is missing or does not fit its model; the message names the field."""


def read_output(outputs: Mapping[str, Mapping[str, Any]], name: str, model: type[M]) -> M:
    """The stored output of phase `name` as `model`, or `PhaseOutputError` saying what is wrong."""
    data = outputs.get(name)
    if data is None:
        raise PhaseOutputError(f"phase {name} has no output; reply /retry {name}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "the output"
        reason = str(err["msg"]).removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PhaseOutputError(
            f"the stored output of phase {name} is not a valid {model.__name__}: "
            f"{where}: {reason}{more}; reply /retry {name}"
        ) from None


@dataclass(frozen=True)
class PhaseContext:
    """What a phase sees: the worker's resources, the run, and the phases' outputs.

    `outputs` holds the finished phases; `previous` the last output of phases that were sent back
    to pending by a jump (e.g. the failing test output that made validate return to implement).
    Phases read them typed, through `output` and `previous_output` (see `orchestrators.outputs`).
    """

    wctx: WorkerContext
    run: RunRow
    outputs: Mapping[str, Mapping[str, Any]]
    attempt: int
    previous: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def output(self, name: str, model: type[M]) -> M:
        """The finished phase `name`'s output, validated as `model`."""
        return read_output(self.outputs, name, model)

    def previous_output(self, name: str, model: type[M]) -> M | None:
        """The output phase `name` had before a jump sent it back to pending (None: it had none)."""
        return read_output(self.previous, name, model) if name in self.previous else None


@dataclass(frozen=True)
class PhaseResult:
    """A phase's JSON output, and optionally a jump back (`goto`) or the end of the run (`stop`)."""

    output: Mapping[str, Any] = field(default_factory=dict)
    goto: str | None = None
    stop: Outcome | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


PhaseFn = Callable[[PhaseContext], Awaitable[PhaseResult]]


@dataclass(frozen=True)
class PhaseState:
    """One phase as progress observers see it."""

    name: str
    status: str
    attempts: int
    duration_s: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float


Observer = Callable[[WorkerContext, RunRow, list[PhaseState]], Awaitable[None]]


class PhaseFailed(RuntimeError):
    """A phase raised; the run fails at that phase and can be retried from it."""


class Deferred(RuntimeError):
    """A phase hit a transient outage (GitLab/Jira 5xx, 429, timeout): try the run again later.

    The phase goes back to pending, so the retried job resumes exactly there.
    """

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Workflow:
    name: str
    phases: tuple[tuple[str, PhaseFn], ...]
    max_rounds: int = 3
    observer: Observer | None = None  # told after every phase start and finish (the status comment)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.phases]


async def _rows(session: AsyncSession, run_id: str) -> dict[str, Phase]:
    result = await session.execute(select(Phase).where(Phase.run_id == run_id))
    return {phase.name: phase for phase in result.scalars()}


async def prepare(sm: async_sessionmaker[AsyncSession], workflow: Workflow, run_id: str) -> None:
    """Create the run's phase rows (pending) once; later calls leave progress untouched."""
    async with sm.begin() as session:
        existing = await _rows(session, run_id)
        for position, name in enumerate(workflow.names):
            if name not in existing:
                session.add(Phase(run_id=run_id, name=name, position=position, status=PENDING, attempts=0))


async def reset_from(
    sm: async_sessionmaker[AsyncSession], workflow: Workflow, run_id: str, name: str
) -> None:
    """Mark `name` and every later phase pending (for `/retry <phase>` and for jumps back)."""
    if name not in workflow.names:
        raise ValueError(f"{workflow.name} has no phase {name!r}; phases: {', '.join(workflow.names)}")
    later = workflow.names[workflow.names.index(name) :]
    async with sm.begin() as session:
        await session.execute(
            update(Phase)
            .where(Phase.run_id == run_id, Phase.name.in_(later))
            .values(status=PENDING, error=None)
        )


async def _begin(
    sm: async_sessionmaker[AsyncSession], run_id: str, name: str
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    async with sm.begin() as session:
        rows = await _rows(session, run_id)
        phase = rows[name]
        phase.status, phase.started_at, phase.finished_at = RUNNING, utcnow(), None
        phase.attempts += 1
        outputs = {n: dict(p.output or {}) for n, p in rows.items() if p.status == DONE}
        previous = {n: dict(p.output) for n, p in rows.items() if p.status != DONE and p.output}
        phase.input = outputs
        return phase.attempts, outputs, previous


async def states(sm: async_sessionmaker[AsyncSession], workflow: Workflow, run_id: str) -> list[PhaseState]:
    async with sm() as session:
        rows = await _rows(session, run_id)
    return [_state(rows[name]) for name in workflow.names if name in rows]


def _state(phase: Phase) -> PhaseState:
    duration = None
    if phase.started_at and phase.finished_at:
        duration = (as_utc(phase.finished_at) - as_utc(phase.started_at)).total_seconds()
    return PhaseState(
        phase.name,
        phase.status,
        phase.attempts,
        duration,
        phase.input_tokens,
        phase.output_tokens,
        phase.cost_usd,
    )


async def _notify(workflow: Workflow, wctx: WorkerContext, run: RunRow) -> None:
    if workflow.observer is not None:
        await workflow.observer(wctx, run, await states(wctx.sm, workflow, run.id))


async def _finish(
    sm: async_sessionmaker[AsyncSession],
    run_id: str,
    name: str,
    result: PhaseResult | None,
    error: str | None,
    charged: PhaseResult | None = None,
) -> None:
    """Record the phase done with `result`, or failed with `error` (and what it cost anyway: `charged`)."""
    async with sm.begin() as session:
        phase = (await _rows(session, run_id))[name]
        phase.finished_at = utcnow()
        if result is None:
            phase.status, phase.error = FAILED, error
            await add_activity(session, run_id, "baton", "phase-failed", f"{name} failed: {error}")
            result = charged or PhaseResult()
        else:
            phase.status, phase.error, phase.output = DONE, None, dict(result.output)
        _add_usage(phase, result)


def _add_usage(phase: Phase, spent: PhaseResult) -> None:
    phase.input_tokens += spent.input_tokens
    phase.output_tokens += spent.output_tokens
    phase.cost_usd += spent.cost_usd


async def _charge(
    sm: async_sessionmaker[AsyncSession], run_id: str, name: str, charged: PhaseResult | None
) -> None:
    """Add what a cancelled phase's agent calls cost to it, its status untouched."""
    if charged is None:
        return
    async with sm.begin() as session:
        _add_usage((await _rows(session, run_id))[name], charged)


def _charged(exc: BaseException) -> PhaseResult | None:
    """What a failed phase cost anyway: the `usage` an agent failure carries (orchestrators/agents.py)."""
    spent = getattr(exc, "usage", None)
    if not isinstance(spent, Mapping) or not spent:
        return None
    return PhaseResult(
        input_tokens=int(spent.get("input_tokens", 0)),
        output_tokens=int(spent.get("output_tokens", 0)),
        cost_usd=float(spent.get("cost_usd", 0.0)),
    )


async def _defer(sm: async_sessionmaker[AsyncSession], run_id: str, name: str, reason: str) -> None:
    async with sm.begin() as session:
        phase = (await _rows(session, run_id))[name]
        phase.status, phase.error, phase.finished_at = PENDING, f"deferred: {reason}"[:2000], utcnow()
        await add_activity(session, run_id, "baton", "phase-deferred", f"{name} deferred: {reason}"[:500])


async def _attempts(sm: async_sessionmaker[AsyncSession], run_id: str, name: str) -> int:
    async with sm() as session:
        return (await _rows(session, run_id))[name].attempts


async def _next_pending(sm: async_sessionmaker[AsyncSession], workflow: Workflow, run_id: str) -> str | None:
    async with sm() as session:
        rows = await _rows(session, run_id)
    return next((name for name in workflow.names if rows[name].status != DONE), None)


SENT_BACK = "sent-back"  # the activity that keeps a round's output when its phase sent the change back


async def _sent_back(
    sm: async_sessionmaker[AsyncSession], run_id: str, source: str, target: str, output: Mapping[str, Any]
) -> None:
    """Keep the output of a round that sent the change back (the next round overwrites the phase's
    output): what failed before it passed is what the learning loop learns from (orchestrators/learn.py)."""
    async with sm.begin() as session:
        message = f"{source} sent the change back to {target}"
        await add_activity(session, run_id, "baton", SENT_BACK, message, phase=source, output=dict(output))


async def _jump(
    wctx: WorkerContext, workflow: Workflow, run_id: str, source: str, target: str
) -> Outcome | None:
    """Go back to `target` unless its round budget is spent; then the run waits for a human."""
    if await _attempts(wctx.sm, run_id, target) >= workflow.max_rounds:
        return Outcome(
            status.WAITING,
            f"needs-human: {source} still failing after {workflow.max_rounds} rounds",
            needs_human=True,
        )
    await reset_from(wctx.sm, workflow, run_id, target)
    return None


async def execute(workflow: Workflow, wctx: WorkerContext, run: RunRow) -> Outcome:
    """Run the workflow from its first unfinished phase to the end (or to a stop)."""
    await prepare(wctx.sm, workflow, run.id)
    shown = Redraw(lambda: _notify(workflow, wctx, run))  # drawn beside the phases (orchestrators/redraw.py)
    try:
        return await _phases(workflow, wctx, run, shown)
    finally:
        await shown.close()


async def _phases(workflow: Workflow, wctx: WorkerContext, run: RunRow, shown: Redraw) -> Outcome:
    functions = dict(workflow.phases)
    while (name := await _next_pending(wctx.sm, workflow, run.id)) is not None:
        attempt, outputs, previous = await _begin(wctx.sm, run.id, name)
        shown.ask()
        try:
            result = await functions[name](PhaseContext(wctx, run, outputs, attempt, previous))
        except asyncio.CancelledError as exc:  # /cancel: the phase stays as it is, but is charged its calls
            await asyncio.shield(_charge(wctx.sm, run.id, name, _charged(exc)))
            raise
        except RetryableError as exc:
            await _defer(wctx.sm, run.id, name, str(exc))
            shown.ask()
            await shown.settle()
            raise Deferred(f"phase {name} deferred: {exc}", exc.retry_after) from exc
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            await _finish(wctx.sm, run.id, name, None, reason, _charged(exc))
            shown.ask()
            await shown.settle()
            raise PhaseFailed(f"phase {name} failed: {reason}") from exc
        await _finish(wctx.sm, run.id, name, result, None)
        shown.ask()
        if result.stop is not None:
            await shown.settle()
            return result.stop
        if result.goto is not None:
            await _sent_back(wctx.sm, run.id, name, result.goto, result.output)
            stopped = await _jump(wctx, workflow, run.id, name, result.goto)
            if stopped is not None:
                await shown.settle()
                return stopped
    await shown.settle()
    return Outcome(status.SUCCEEDED, f"{workflow.name} finished")
