"""One statement that commits by itself, on a Core connection: the worker's per-run writes and lookups.

`bot.store.engine.autocommit` does the same through an ORM session. For one statement the session adds
nothing but its own set-up and tear-down, about 0.15 ms of CPU per statement here (measured on
PostgreSQL, 2,000 statements each way), and a short run of the worker makes five of them (its claim,
the effect ledger's lookup, record and result, its finish: bench/scaleout.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker


def engine_of(sm: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine the sessions of `sm` are bound to."""
    bind = sm.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise TypeError(f"the sessionmaker is bound to {type(bind).__name__}, not an AsyncEngine")
    return bind


@asynccontextmanager
async def statement(sm: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncConnection]:
    """A connection for ONE statement, committed inside it (no BEGIN ... COMMIT): on SQLite the write
    lock is taken and released within the statement, on PostgreSQL it is one round trip. Two statements
    here are two commits."""
    async with engine_of(sm).connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")
