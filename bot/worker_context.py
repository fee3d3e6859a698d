"""What every job receives: settings and the resources built once in the worker's on_startup."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.queue import Queue
from config.settings import Settings


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    sm: async_sessionmaker[AsyncSession]
    queue: Queue
    name: str
