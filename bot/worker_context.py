"""What every job receives: settings and the resources built once in the worker's on_startup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.queue import Queue
from config.settings import Settings

if TYPE_CHECKING:
    from bot.wiring import Clients


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    sm: async_sessionmaker[AsyncSession]
    queue: Queue
    name: str
    clients: Clients | None = None  # GitLab, Jira, git workspace, agent: built once in on_startup

    def need_clients(self) -> Clients:
        if self.clients is None:
            raise RuntimeError("this worker has no GitLab/Jira clients configured")
        return self.clients
