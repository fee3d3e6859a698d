"""The async engine for SQLite or PostgreSQL, with SQLite tuned for a concurrent inbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

from bot.redact import Redactor
from bot.store import redacted


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything Baton stores is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(ingest: bool) -> Callable[[Any, Any], None]:
    pragmas = (
        "journal_mode=WAL",
        f"busy_timeout={0 if ingest else BUSY_TIMEOUT_MS}",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        *(("wal_autocheckpoint=0",) if ingest else ()),  # the inbox checkpoints off its commits' path
    )

    def apply(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return apply


def create_engine(url: str, redactor: Redactor | None = None, *, ingest: bool = False) -> AsyncEngine:
    """Build the engine for an async URL (`sqlite+aiosqlite://…` or `postgresql+asyncpg://…`). With a
    `redactor`, the free-text columns (run input and errors, phase input/output/errors, the activity
    trail) pass through it on every write (see bot/store/redacted.py); without one they are stored as
    they are. SQLite runs in WAL mode with `synchronous=NORMAL`: a commit survives a crash of any Baton
    process, while an operating-system crash or power cut may lose the last commits (PostgreSQL, with
    `synchronous_commit=on`, keeps those too). An `ingest` engine is the inbox's group commit's
    (`bot/store/group.py`): on SQLite no busy timeout (its writer polls for the lock itself) and no
    automatic checkpoint after a commit (the writer starts one beside its commits); on
    PostgreSQL a small pool without a ping per checkout (one writer; a connection a restart broke fails
    one batch with 503 and the pool reconnects)."""
    engine = _engine(url, ingest)
    if redactor is not None:
        redacted.install(engine.sync_engine.dialect, redactor)
    return engine


def _engine(url: str, ingest: bool) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(ingest))
        return engine
    if ingest:
        return create_async_engine(
            url,
            pool_size=2,
            max_overflow=2,
            pool_timeout=5,
            connect_args={"timeout": 5, "command_timeout": 10},
        )
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 10},
    )


def sqlite_writer_engine(engine: AsyncEngine) -> Engine | None:
    """A synchronous engine on the same SQLite file as the inbox's `ingest` engine, for its writer thread
    (`bot/store/sqlite_writer.py`): the same tables, types and redactor, so the rows are the same; the
    ingest pragmas (no busy timeout, no automatic checkpoint). None for PostgreSQL and in-memory SQLite
    (another connection would not see the same database)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    writer = create_sync_engine(url.set(drivername="sqlite"), connect_args={"timeout": 10})
    event.listen(writer, "connect", _sqlite_pragmas(ingest=True))
    redactor = redacted.redactor_of(engine.sync_engine.dialect)
    if redactor is not None:
        redacted.install(writer.dialect, redactor)
    return writer


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def autocommit(sm: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for ONE write statement that commits by itself (no BEGIN ... COMMIT around it).

    On SQLite the write lock is then taken and released inside the statement's step in aiosqlite's
    thread, instead of being held from the statement until a COMMIT several event-loop hops later (the
    inbox's writer in `baton serve` waits for that lock); on PostgreSQL it is one round trip instead of
    three. Only for a single statement: two statements here are two commits.
    """
    async with sm() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
