"""A run's claim and its finish as ONE statement each on PostgreSQL (bot/store/runs.py uses them there).

A claim (and a finish) changes the run and adds its activity row atomically. Done as a transaction
that is BEGIN, UPDATE, INSERT, COMMIT: four round trips to the database, each an event-loop hop and a
wake-up of the server process. A data-modifying CTE does both changes in one statement, which commits
by itself (bot/store/oneshot.py): one round trip, and still all or nothing. Every short run of the
worker makes one claim and one finish, so on a 2-CPU machine shared with the database this is CPU the
workers and the database no longer spend (bench/scaleout.py).

SQLite has no data-modifying CTE; there runs.py keeps its two statements, the UPDATE first, so the
write lock is held for one statement (tests/bot/test_worker_writes.py).

The statements are built once, with bound parameters: building and hashing a statement per call was
a visible part of a short run's CPU. The columns keep their types, so the redacted ones (the activity's
message and data, the run's error) pass through the engine's redactor as on any other write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store import status
from bot.store.oneshot import engine_of, statement
from bot.store.tables import Activity, Run

_runs, _activity = Run.__table__.c, Activity.__table__.c
_RUN_ID = bindparam("the_run", type_=_runs.id.type)
_NOW = bindparam("now", type_=_runs.updated_at.type)
_ACTOR = bindparam("by", type_=_activity.actor.type)
_MESSAGE = bindparam("text", type_=_activity.message.type)

_claimed = (
    update(Run)
    .where(Run.id == _RUN_ID, Run.status.in_(status.ACTIVE))
    .values(status=status.RUNNING, attempts=Run.attempts + 1, updated_at=_NOW)
    .returning(*_runs)
    .cte("claimed")
)
_claim_logged = (
    insert(Activity)
    .from_select(
        ["run_id", "at", "actor", "action", "message", "data"],
        select(
            _claimed.c.id,
            _NOW,
            _ACTOR,
            literal("claimed", _activity.action.type),
            _MESSAGE,
            literal(None, _activity.data.type),
        ),
    )
    .cte("logged")
)
CLAIM = select(_claimed).add_cte(_claim_logged)
"""Claim run `run_id` if it is queued or running (compare-and-set), logging `actor`'s `message`; the
claimed row, or no row."""

_NEW_STATUS = bindparam("new_status", type_=_runs.status.type)
_finished = (
    update(Run)
    .where(Run.id == _RUN_ID, Run.status == status.RUNNING)
    .values(status=_NEW_STATUS, error=bindparam("reason", type_=_runs.error.type), updated_at=_NOW)
    .cte("finished")
)
FINISH = (
    insert(Activity)
    .values(
        run_id=_RUN_ID,
        at=_NOW,
        actor=_ACTOR,
        action=bindparam("act", type_=_activity.action.type),
        message=_MESSAGE,
        data=bindparam("extra", type_=_activity.data.type),
    )
    .add_cte(_finished)
)
"""Move run `run_id` from running to `new_status` and log it (the activity is added whatever the run's
status was, as runs.finish always did)."""


async def claim(
    sm: async_sessionmaker[AsyncSession], run_id: str, actor: str, message: str, now: datetime
) -> Row[Any] | None:
    params = {"the_run": run_id, "now": now, "by": actor, "text": message}
    async with statement(sm) as conn:
        return (await conn.execute(CLAIM, params)).first()


async def finish(
    sm: async_sessionmaker[AsyncSession],
    run_id: str,
    new_status: str,
    error: str | None,
    actor: str,
    message: str,
    data: dict[str, Any] | None,
    now: datetime,
) -> None:
    params = {
        "the_run": run_id,
        "new_status": new_status,
        "reason": error,
        "now": now,
        "by": actor,
        "act": new_status,
        "text": message,
        "extra": data,
    }
    async with statement(sm) as conn:
        await conn.execute(FINISH, params)


def on_postgresql(sm: async_sessionmaker[AsyncSession]) -> bool:
    """True when the sessions of `sm` talk to PostgreSQL."""
    return engine_of(sm).dialect.name == "postgresql"
