"""What a handler may know besides the event: who the bot is and the configured trigger and design labels."""

from __future__ import annotations

from dataclasses import dataclass, field

from config.skills import SkillManifest, default_skills


@dataclass(frozen=True)
class BotIdentity:
    """The bot's own accounts, so its own notes and comments never trigger anything."""

    gitlab_user_id: int | None = None
    gitlab_username: str | None = None
    jira_account_id: str | None = None
    jira_name: str | None = None


@dataclass(frozen=True)
class HandlerContext:
    bot: BotIdentity = field(default_factory=BotIdentity)
    trigger_label: str = "ai-implement"
    design_label: str = "ai-design"
    skills: SkillManifest = field(default_factory=default_skills)
