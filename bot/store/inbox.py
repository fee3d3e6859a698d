"""The durable inbox: a delivery and the run it starts are committed in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import triggers
from bot.store import status
from bot.store.engine import utcnow
from bot.store.tables import Activity, Delivery, Run
from bot.triggers import ReplyRequest
from handlers.actions import Action, Enqueue, Ignore, Reply

ENQUEUED, REPLIED, IGNORED, DUPLICATE, JOINED = "enqueued", "replied", "ignored", "duplicate", "joined"


@dataclass(frozen=True)
class Incoming:
    """A verified, parsed delivery, ready to be recorded."""

    source: str
    dedup_key: str
    event: str
    payload: dict[str, Any]
    actor: str = "unknown"


@dataclass(frozen=True)
class Recorded:
    """What the inbox did with a delivery; `new_run` says whether a job must be enqueued."""

    outcome: str
    run_id: str | None = None
    delivery_id: int | None = None
    reason: str | None = None

    @property
    def new_run(self) -> bool:
        return self.outcome in (ENQUEUED, REPLIED)


def new_run_id() -> str:
    return uuid.uuid4().hex


def run_values(action: Enqueue | Reply, delivery_id: int, run_id: str, now: datetime) -> dict[str, Any]:
    """The columns of the queued run a delivery starts."""
    if isinstance(action, Enqueue):
        kind, payload = action.kind, triggers.dump(action.input)
    else:
        kind, payload = "reply", triggers.dump(ReplyRequest(target=action.target, text=action.text))
    return {
        "id": run_id,
        "kind": kind,
        "subject": action.subject,
        "origin": action.origin,
        "status": status.QUEUED,
        "input": payload,
        "attempts": 0,
        "delivery_id": delivery_id,
        "created_at": now,
        "updated_at": now,
    }


def received_values(incoming: Incoming, run: dict[str, Any]) -> dict[str, Any]:
    """The activity row that says which delivery started the run (`run`: `run_values`)."""
    return {
        "run_id": run["id"],
        "delivery_id": run["delivery_id"],
        "at": run["created_at"],
        "actor": incoming.actor[:255],
        "action": "received",
        "message": f"{incoming.source} {incoming.event} started {run['kind']} on {run['subject']}",
    }


async def _insert(session: AsyncSession, incoming: Incoming, action: Action) -> Recorded:
    outcome = IGNORED if isinstance(action, Ignore) else ENQUEUED if isinstance(action, Enqueue) else REPLIED
    reason = action.reason if isinstance(action, Ignore) else None
    delivery = Delivery(
        source=incoming.source,
        dedup_key=incoming.dedup_key,
        event=incoming.event[:64],
        outcome=outcome,
        reason=reason,
        payload=None if isinstance(action, Ignore) else incoming.payload,
        received_at=utcnow(),
    )
    session.add(delivery)
    await session.flush()
    if isinstance(action, Ignore):
        return Recorded(IGNORED, delivery_id=delivery.id, reason=reason)
    values = run_values(action, delivery.id, new_run_id(), utcnow())
    delivery.run_id = values["id"]
    session.add(Run(**values))
    session.add(Activity(**received_values(incoming, values)))
    await session.flush()
    return Recorded(outcome, run_id=values["id"], delivery_id=delivery.id)


async def _existing_delivery(session: AsyncSession, incoming: Incoming) -> Delivery | None:
    query = select(Delivery).where(
        Delivery.source == incoming.source, Delivery.dedup_key == incoming.dedup_key
    )
    return (await session.execute(query)).scalar_one_or_none()


async def _join(
    sm: async_sessionmaker[AsyncSession], incoming: Incoming, action: Enqueue | Reply
) -> Recorded:
    """A new delivery of something that already started a run (same origin): record it, start nothing."""
    async with sm.begin() as session:
        run_id = (await session.execute(select(Run.id).where(Run.origin == action.origin))).scalar_one()
        delivery = Delivery(
            source=incoming.source,
            dedup_key=incoming.dedup_key,
            event=incoming.event[:64],
            outcome=JOINED,
            reason=f"same origin as run {run_id}",
            run_id=run_id,
            received_at=utcnow(),
        )
        session.add(delivery)
        await session.flush()
        return Recorded(JOINED, run_id=run_id, delivery_id=delivery.id)


async def _after_conflict(
    sm: async_sessionmaker[AsyncSession], incoming: Incoming, action: Action
) -> Recorded:
    async with sm() as session:
        existing = await _existing_delivery(session, incoming)
    if existing is not None:
        return Recorded(DUPLICATE, run_id=existing.run_id, delivery_id=existing.id)
    if isinstance(action, Ignore):
        raise RuntimeError("ignored delivery conflicted without an existing delivery")
    try:
        return await _join(sm, incoming, action)
    except IntegrityError:
        async with sm() as session:
            existing = await _existing_delivery(session, incoming)
        if existing is None:
            raise
        return Recorded(DUPLICATE, run_id=existing.run_id, delivery_id=existing.id)


async def record(sm: async_sessionmaker[AsyncSession], incoming: Incoming, action: Action) -> Recorded:
    """Commit the delivery (and its run) exactly once per dedup key and per origin."""
    try:
        async with sm.begin() as session:
            return await _insert(session, incoming, action)
    except IntegrityError:
        return await _after_conflict(sm, incoming, action)
