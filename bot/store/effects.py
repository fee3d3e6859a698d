"""The effect ledger backed by the `effects` table (see bot.effects for the contract)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.effects import EffectRecord
from bot.store.engine import utcnow
from bot.store.oneshot import statement
from bot.store.tables import Effect

# Built once, with bound parameters: every external write of every run goes through all three.
_effects = Effect.__table__.c
_KEY, _NOW = bindparam("effect_key", type_=_effects.key.type), bindparam("at", type_=_effects.updated_at.type)
_BY_KEY = select(_effects.key, _effects.kind, _effects.status, _effects.external_id).where(
    _effects.key == _KEY
)
_BEGIN = insert(Effect).values(
    key=_KEY,
    kind=bindparam("effect_kind"),
    status="pending",
    run_id=bindparam("for_run"),
    created_at=_NOW,
    updated_at=_NOW,
)
_COMPLETE = (
    update(Effect)
    .where(Effect.key == _KEY)
    .values(status="done", external_id=bindparam("done_as"), updated_at=_NOW)
)


def _record(row: Any) -> EffectRecord:
    return EffectRecord(key=row.key, kind=row.kind, status=row.status, external_id=row.external_id)


class StoreEffectLedger:
    """Records each external write's key before it happens and its result after.

    Each record is one statement committed on its own (bot/store/oneshot.py): durable when the call
    returns, as before, without holding SQLite's write lock across the event loop until a separate
    COMMIT. A lookup is one statement too (every external write starts with one): on PostgreSQL it is
    then one round trip instead of three (BEGIN, SELECT, ROLLBACK).
    """

    def __init__(self, sm: async_sessionmaker[AsyncSession]) -> None:
        self._sm = sm

    async def get(self, key: str) -> EffectRecord | None:
        async with statement(self._sm) as conn:
            row = (await conn.execute(_BY_KEY, {"effect_key": key})).first()
        return _record(row) if row is not None else None

    async def begin(self, key: str, kind: str, run_id: str | None) -> EffectRecord:
        try:
            async with statement(self._sm) as conn:
                await conn.execute(
                    _BEGIN, {"effect_key": key, "effect_kind": kind, "for_run": run_id, "at": utcnow()}
                )
            return EffectRecord(key=key, kind=kind, status="pending", external_id=None)
        except IntegrityError:
            existing = await self.get(key)
            if existing is None:
                raise
            return existing

    async def complete(self, key: str, external_id: str) -> None:
        async with statement(self._sm) as conn:
            await conn.execute(_COMPLETE, {"effect_key": key, "done_as": external_id, "at": utcnow()})
