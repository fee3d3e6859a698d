"""Run queries: claim and finish (worker), sweep candidates (sweeper), listings (CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import triggers
from bot.store import runs_pg, status
from bot.store.engine import as_utc, autocommit, utcnow
from bot.store.tables import Activity, Phase, Run

MECHANICAL_STEPS = ("fetch", "workspace", "brief", "commit", "post")  # orchestrators/clock.py


class RunNotFound(LookupError):
    """No run matches the id or prefix (or more than one does)."""


@dataclass(frozen=True)
class RunRow:
    id: str
    kind: str
    subject: str
    status: str
    attempts: int
    error: str | None
    trigger: triggers.AnyTrigger | triggers.Unreadable  # the run's input, validated on load
    created: datetime
    updated: datetime

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "status": self.status,
            "created": self.created.isoformat(),
            "updated": self.updated.isoformat(),
        }


def _row(run: Run | Row[Any]) -> RunRow:
    """A run as the orchestrators see it, from the ORM row or a statement's row (runs_pg.claim)."""
    return RunRow(
        id=run.id,
        kind=run.kind,
        subject=run.subject,
        status=run.status,
        attempts=run.attempts,
        error=run.error,
        trigger=triggers.parse(run.input),
        created=as_utc(run.created_at),
        updated=as_utc(run.updated_at),
    )


async def add_activity(
    session: AsyncSession, run_id: str | None, actor: str, action: str, message: str, **data: Any
) -> None:
    session.add(
        Activity(run_id=run_id, at=utcnow(), actor=actor, action=action, message=message, data=data or None)
    )


async def claim(sm: async_sessionmaker[AsyncSession], run_id: str, worker: str) -> RunRow | None:
    """Mark an active run as running (compare-and-set); None if it is waiting or finished.

    On PostgreSQL one statement (bot/store/runs_pg.py). Elsewhere two (the UPDATE returns the row): the
    write transaction ends right after the activity."""
    message = f"picked up by worker {worker}"
    if runs_pg.on_postgresql(sm):
        row = await runs_pg.claim(sm, run_id, worker, message, utcnow())
        return _row(row) if row is not None else None
    claimed = (
        update(Run)
        .where(Run.id == run_id, Run.status.in_(status.ACTIVE))
        .values(status=status.RUNNING, attempts=Run.attempts + 1, updated_at=utcnow())
        .returning(Run)
        .execution_options(synchronize_session=False)
    )
    async with sm.begin() as session:
        run = (await session.execute(claimed)).scalar_one_or_none()
        if run is None:
            return None
        await add_activity(session, run_id, worker, "claimed", message)
        return _row(run)


async def finish(
    sm: async_sessionmaker[AsyncSession],
    run_id: str,
    new_status: str,
    actor: str,
    message: str,
    **flags: bool,
) -> None:
    """Move a running run to `new_status` (waiting or terminal) and record why (and the outcome's
    flags, e.g. `needs_human`, in the activity's data). On PostgreSQL one statement (runs_pg.py)."""
    error = message if new_status == status.FAILED else None
    if runs_pg.on_postgresql(sm):
        await runs_pg.finish(sm, run_id, new_status, error, actor, message, flags or None, utcnow())
        return
    async with sm.begin() as session:
        await session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == status.RUNNING)
            .values(status=new_status, error=error, updated_at=utcnow())
        )
        await add_activity(session, run_id, actor, new_status, message, **flags)


async def requeue(sm: async_sessionmaker[AsyncSession], run_id: str, actor: str, message: str) -> None:
    """Give a running run back to the queue (shutdown, deferral)."""
    async with sm.begin() as session:
        await session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == status.RUNNING)
            .values(status=status.QUEUED, updated_at=utcnow())
        )
        await add_activity(session, run_id, actor, "requeued", message)


async def active_older_than(
    sm: async_sessionmaker[AsyncSession], grace: timedelta, limit: int = 500
) -> list[str]:
    """Runs that should be in the queue and were last touched before `now - grace`."""
    cutoff = utcnow() - grace
    query = (
        select(Run.id)
        .where(Run.status.in_(status.ACTIVE), Run.updated_at < cutoff)
        .order_by(Run.updated_at)
        .limit(limit)
    )
    async with sm() as session:
        return list((await session.execute(query)).scalars())


async def resolve_id(sm: async_sessionmaker[AsyncSession], ref: str) -> str:
    """A full run id from an id or a unique prefix of at least 4 characters."""
    ref = ref.strip().lower()
    if len(ref) < 4 or not ref.isalnum():
        raise RunNotFound(f"run id {ref[:40]!r} is too short or not hexadecimal (give at least 4 characters)")
    async with sm() as session:
        ids = list((await session.execute(select(Run.id).where(Run.id.startswith(ref)).limit(2))).scalars())
    if len(ids) != 1:
        raise RunNotFound(f"no run matches {ref!r}" if not ids else f"{ref!r} matches more than one run")
    return ids[0]


async def get(sm: async_sessionmaker[AsyncSession], run_id: str) -> RunRow:
    async with sm() as session:
        run = (await session.execute(select(Run).where(Run.id == run_id))).scalar_one_or_none()
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    return _row(run)


async def listing(
    sm: async_sessionmaker[AsyncSession], limit: int = 50, state: str | None = None
) -> list[RunRow]:
    query = select(Run).order_by(Run.created_at.desc(), Run.id).limit(limit)
    if state:
        query = query.where(Run.status == state)
    async with sm() as session:
        return [_row(run) for run in (await session.execute(query)).scalars()]


async def count_by_status(sm: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sm() as session:
        rows = await session.execute(select(Run.status, func.count()).group_by(Run.status))
        return {name: int(n) for name, n in rows}


async def detail(sm: async_sessionmaker[AsyncSession], run_id: str) -> dict[str, Any]:
    """Everything `baton show` prints: the run, its phases with timings and cost, the wiki facts its
    brief used, its activity."""
    run = await get(sm, run_id)
    async with sm() as session:
        phases = list(
            (
                await session.execute(select(Phase).where(Phase.run_id == run_id).order_by(Phase.position))
            ).scalars()
        )
        activity = (
            await session.execute(
                select(Activity).where(Activity.run_id == run_id).order_by(Activity.at, Activity.id)
            )
        ).scalars()
        return {
            **run.summary(),
            "attempts": run.attempts,
            "error": run.error,
            "input": run.trigger.model_dump(mode="json"),
            "phases": [_phase(p) for p in phases],
            "knowledge": _facts(phases),
            "activity": [
                {
                    "at": as_utc(a.at).isoformat(),
                    "actor": a.actor,
                    "action": a.action,
                    "message": a.message,
                    "data": dict(a.data or {}),
                }
                for a in activity
            ],
        }


def _facts(phases: list[Phase]) -> list[dict[str, str]]:
    """The wiki pages the run's brief used, with their status then (the assemble phase's `knowledge`)."""
    stored = next(((p.output or {}).get("knowledge") for p in phases if p.name == "assemble"), None)
    facts = stored if isinstance(stored, list) else []
    return [
        {key: str(fact.get(key) or "") for key in ("path", "status", "kind", "title")}
        for fact in facts
        if isinstance(fact, dict)
    ]


def _amount(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 10**9


def mechanics(stored: object) -> dict[str, float]:
    """A phase's `mechanics_ms` (Baton's own steps: orchestrators/clock.py) as seconds per step, in
    MECHANICAL_STEPS order; anything malformed is left out."""
    if not isinstance(stored, dict):
        return {}
    valid = {k: v for k, v in stored.items() if isinstance(k, str) and _amount(v)}
    ordered = [k for k in MECHANICAL_STEPS if k in valid] + sorted(
        k for k in valid if k not in MECHANICAL_STEPS
    )
    return {k: round(float(valid[k]) / 1000, 3) for k in ordered}


def _phase(phase: Phase) -> dict[str, Any]:
    started = as_utc(phase.started_at) if phase.started_at else None
    finished = as_utc(phase.finished_at) if phase.finished_at else None
    duration = (finished - started).total_seconds() if started and finished else None
    output = phase.output or {}
    agent_s = output.get("agent_ms", 0) / 1000 if isinstance(output.get("agent_ms"), int | float) else 0.0
    checks: list[Any] = output["checks"] if isinstance(output.get("checks"), list) else []
    commands_s = sum((float(c.get("duration_s") or 0) for c in checks if isinstance(c, dict)), 0.0)
    return {
        "name": phase.name,
        "status": phase.status,
        "attempts": phase.attempts,
        "duration_s": duration,
        "agent_s": round(agent_s, 3),
        "commands_s": round(commands_s, 3),
        "mechanics_s": mechanics(output.get("mechanics_ms")),
        "input_tokens": phase.input_tokens,
        "output_tokens": phase.output_tokens,
        "cost_usd": phase.cost_usd,
        "error": phase.error,
    }


async def touch(sm: async_sessionmaker[AsyncSession], run_id: str) -> None:
    """The worker's heartbeat on a running run (its lease): one statement, committed on its own."""
    async with autocommit(sm) as session:
        await session.execute(
            update(Run).where(Run.id == run_id, Run.status == status.RUNNING).values(updated_at=utcnow())
        )


async def running_stale(sm: async_sessionmaker[AsyncSession], lease: timedelta) -> list[str]:
    """Running runs whose worker stopped beating for longer than the lease (it died)."""
    cutoff = utcnow() - lease
    query = select(Run.id).where(Run.status == status.RUNNING, Run.updated_at < cutoff).limit(500)
    async with sm() as session:
        return list((await session.execute(query)).scalars())


async def others_open(sm: async_sessionmaker[AsyncSession], run: RunRow) -> list[str]:
    """Other runs of the same kind on the same subject that are queued, running or waiting."""
    query = select(Run.id).where(
        Run.subject == run.subject,
        Run.kind == run.kind,
        Run.id != run.id,
        Run.status.in_((*status.ACTIVE, status.WAITING)),
    )
    async with sm() as session:
        return list((await session.execute(query)).scalars())


async def earlier(sm: async_sessionmaker[AsyncSession], run: RunRow) -> list[str]:
    """Runs of the same kind on the same subject created before this one (whatever their status)."""
    query = select(Run.id, Run.created_at).where(
        Run.subject == run.subject, Run.kind == run.kind, Run.id != run.id
    )
    async with sm() as session:
        rows = (await session.execute(query)).all()
        return [rid for rid, created in rows if (as_utc(created), rid) < (run.created, run.id)]


async def by_id(sm: async_sessionmaker[AsyncSession], run_id: str) -> RunRow | None:
    async with sm() as session:
        run = (await session.execute(select(Run).where(Run.id == run_id))).scalar_one_or_none()
    return _row(run) if run else None


async def reopen(
    sm: async_sessionmaker[AsyncSession], run_id: str, actor: str, message: str, **extra: Any
) -> bool:
    """Put a waiting or finished run back in the queue (retry, revise); `extra` merges into its input."""
    async with sm.begin() as session:
        run = (await session.execute(select(Run).where(Run.id == run_id))).scalar_one_or_none()
        if run is None or run.status in status.ACTIVE:
            return False
        run.input = {**dict(run.input), **extra}
        run.status, run.error, run.updated_at = status.QUEUED, None, utcnow()
        run.attempts = 0  # a person asked again: the attempt cap (shell/worker.py) counts afresh
        await add_activity(session, run_id, actor, "reopened", message)
        return True


async def settle(
    sm: async_sessionmaker[AsyncSession], run_id: str, new_status: str, actor: str, message: str
) -> bool:
    """Finish a run that waits for a person (shipped, rejected, cancelled); False if it was not waiting."""
    async with sm.begin() as session:
        result = await session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status.in_((status.WAITING, *status.ACTIVE)))
            .values(
                status=new_status, updated_at=utcnow(), error=message if new_status == status.FAILED else None
            )
        )
        await add_activity(session, run_id, actor, new_status, message)
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def recent(sm: async_sessionmaker[AsyncSession], subject: str, window: timedelta) -> list[RunRow]:
    """The subject's runs created within `window` (for rate limits)."""
    since = utcnow() - window
    query = select(Run).where(Run.subject == subject, Run.created_at >= since).limit(500)
    async with sm() as session:
        return [_row(run) for run in (await session.execute(query)).scalars()]
