"""The async engine for SQLite or PostgreSQL, with SQLite tuned for a concurrent inbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

from bot.redact import Redactor


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything Baton stores is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "busy_timeout=10000", "synchronous=NORMAL", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


# What GitLab and Jira sent stays as sent (dedup and replay need it, and it is theirs already); every
# other stored text — run input and reasons, phase outputs with the repository's command output,
# activity, effects, proposals — is redacted on its way into the database.
UNREDACTED_TABLES = frozenset({"deliveries"})


def _clean(redactor: Redactor, parameters: Any) -> Any:
    if isinstance(parameters, dict):
        return {k: redactor.redact(v) if isinstance(v, str) else v for k, v in parameters.items()}
    if isinstance(parameters, list | tuple):
        return type(parameters)(redactor.redact(v) if isinstance(v, str) else v for v in parameters)
    return parameters


def _redacting(redactor: Redactor) -> Callable[..., tuple[str, Any]]:
    def before_cursor_execute(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        if not (getattr(context, "isinsert", False) or getattr(context, "isupdate", False)):
            return statement, parameters
        table = getattr(getattr(getattr(context, "compiled", None), "statement", None), "table", None)
        if getattr(table, "name", None) in UNREDACTED_TABLES:
            return statement, parameters
        if executemany:
            return statement, [_clean(redactor, p) for p in parameters]
        return statement, _clean(redactor, parameters)

    return before_cursor_execute


def create_engine(url: str, redactor: Redactor | None = None) -> AsyncEngine:
    """Build the engine for an async URL (`sqlite+aiosqlite://…` or `postgresql+asyncpg://…`); with a
    `redactor`, every text written (but webhook deliveries) passes through it first."""
    engine = _engine(url)
    if redactor is not None:
        event.listen(engine.sync_engine, "before_cursor_execute", _redacting(redactor), retval=True)
    return engine


def _engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 10},
    )


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
