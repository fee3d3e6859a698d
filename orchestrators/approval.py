"""Who may approve: the bot never, the requester only if configured, then allowlists and groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.clients.jira import JiraClient
from config.projects import Project
from config.settings import Settings


def names_latest(latest_id: str, latest_sha: str, args: str) -> bool:
    """`/approve` alone means the latest proposal; `/approve <id|sha>` must name it (a full id, or at
    least 7 characters of its commit SHA). An older proposal's id or SHA is refused, so nobody ships a
    change they did not look at."""
    ref = args.strip().split(maxsplit=1)[0].lower() if args.strip() else ""
    return not ref or latest_id == ref or (len(ref) >= 7 and latest_sha.startswith(ref))


def same_person(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Cloud accounts by accountId, Data Center accounts by name or key."""
    return any(a.get(k) and a.get(k) == b.get(k) for k in ("account_id", "name", "key"))


def is_bot(who: Mapping[str, Any], settings: Settings) -> bool:
    bot = {"account_id": settings.jira_bot_account_id, "name": settings.jira_bot_name}
    return same_person(who, bot)


def account(who: Mapping[str, Any]) -> str:
    return str(who.get("account_id") or who.get("name") or "")


async def refusal(
    jira: JiraClient,
    settings: Settings,
    project: Project,
    who: Mapping[str, Any],
    requester: Mapping[str, Any],
) -> str | None:
    """None if `who` may approve on this project now, else the reason (checked at execution time)."""
    if is_bot(who, settings):
        return "Baton never approves its own proposals."
    if not account(who):
        return "I could not tell who you are from this comment."
    if same_person(who, requester) and not project.requester_may_approve:
        return "the person who asked for this work cannot approve it (requester_may_approve is off)."
    approvers = project.approvers
    if account(who) in approvers.jira_users or who.get("name") in approvers.jira_users:
        return None
    for group in approvers.jira_groups:
        if await jira.user_in_group(account(who), group):
            return None
    allowed = (
        ", ".join([*(f"group {g}" for g in approvers.jira_groups), *approvers.jira_users])
        or "nobody (none configured)"
    )
    return f"only these may approve on {project.jira_project}: {allowed}."
