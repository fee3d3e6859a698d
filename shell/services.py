"""The resources one process holds (store, queue, metrics), built once and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.queue import Queue, connect
from bot.redact import Redactor
from bot.store.engine import create_engine, sessionmaker
from bot.store.group import GroupCommitter
from config.settings import Settings
from config.skills import SkillManifest
from handlers.context import BotIdentity, HandlerContext
from shell.metrics import Metrics


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sm: async_sessionmaker[AsyncSession]
    queue: Queue
    metrics: Metrics
    handler_context: HandlerContext
    inbox: GroupCommitter  # the webhooks' one writer (group commit, its own engine on SQLite)

    async def close(self) -> None:
        await self.inbox.close()
        await self.queue.close()
        await self.inbox.engine.dispose()
        await self.engine.dispose()


def default_redis_url(settings: Settings) -> str:
    return settings.redis_url or "redis://127.0.0.1:6379/0"


def handler_context(settings: Settings, skills: SkillManifest) -> HandlerContext:
    """What the pure handlers know: the bot's identities, the trigger label and the skill manifest
    loaded at start-up (`shell.wiring.load_manifest`)."""
    bot = BotIdentity(
        gitlab_user_id=settings.gitlab_bot_user_id,
        gitlab_username=settings.gitlab_bot_username,
        jira_account_id=settings.jira_bot_account_id,
        jira_name=settings.jira_bot_name,
    )
    return HandlerContext(
        bot=bot, trigger_label=settings.trigger_label, design_label=settings.design_label, skills=skills
    )


def build(settings: Settings, skills: SkillManifest) -> Services:
    redactor = Redactor.from_settings(settings)
    engine = create_engine(settings.async_database_url, redactor)
    ingest = create_engine(settings.async_database_url, redactor, ingest=True)
    metrics = Metrics()
    return Services(
        settings=settings,
        engine=engine,
        sm=sessionmaker(engine),
        queue=Queue(connect(default_redis_url(settings))),
        metrics=metrics,
        handler_context=handler_context(settings, skills),
        inbox=GroupCommitter(ingest, on_batch=metrics.ingest_batch.observe),  # bot/store/group.py
    )
