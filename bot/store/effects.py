"""The effect ledger backed by the `effects` table (see bot.effects for the contract)."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.effects import EffectRecord
from bot.store.engine import autocommit, utcnow
from bot.store.tables import Effect


def _record(effect: Effect) -> EffectRecord:
    return EffectRecord(
        key=effect.key, kind=effect.kind, status=effect.status, external_id=effect.external_id
    )


class StoreEffectLedger:
    """Records each external write's key before it happens and its result after.

    Each record is one statement committed on its own (`autocommit`): durable when the call returns,
    as before, without holding SQLite's write lock across the event loop until a separate COMMIT. A
    lookup is one statement too (every external write starts with one): on PostgreSQL it is then one
    round trip instead of three (BEGIN, SELECT, ROLLBACK).
    """

    def __init__(self, sm: async_sessionmaker[AsyncSession]) -> None:
        self._sm = sm

    async def get(self, key: str) -> EffectRecord | None:
        async with autocommit(self._sm) as session:
            effect = (await session.execute(select(Effect).where(Effect.key == key))).scalar_one_or_none()
            return _record(effect) if effect else None

    async def begin(self, key: str, kind: str, run_id: str | None) -> EffectRecord:
        now = utcnow()
        try:
            async with autocommit(self._sm) as session:
                await session.execute(
                    insert(Effect).values(
                        key=key, kind=kind, status="pending", run_id=run_id, created_at=now, updated_at=now
                    )
                )
            return EffectRecord(key=key, kind=kind, status="pending", external_id=None)
        except IntegrityError:
            existing = await self.get(key)
            if existing is None:
                raise
            return existing

    async def complete(self, key: str, external_id: str) -> None:
        async with autocommit(self._sm) as session:
            await session.execute(
                update(Effect)
                .where(Effect.key == key)
                .values(status="done", external_id=external_id, updated_at=utcnow())
            )
