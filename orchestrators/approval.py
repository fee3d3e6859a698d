"""Who may approve: the bot never, the requester only if configured, then allowlists and groups."""

from __future__ import annotations

from bot.triggers import Person
from config.projects import Project
from config.settings import Settings
from orchestrators.ports import Groups


def names_latest(latest_id: str, latest_sha: str, args: str) -> bool:
    """`/approve` alone means the latest proposal; `/approve <id|sha>` must name it (a full id, or at
    least 7 characters of its commit SHA). An older proposal's id or SHA is refused, so nobody ships a
    change they did not look at."""
    ref = args.strip().split(maxsplit=1)[0].lower() if args.strip() else ""
    return not ref or latest_id == ref or (len(ref) >= 7 and latest_sha.startswith(ref))


def same_person(a: Person, b: Person | None) -> bool:
    """Cloud accounts by accountId, Data Center accounts by name or key."""
    pairs = ((a.account_id, b.account_id), (a.name, b.name), (a.key, b.key)) if b else ()
    return any(x and x == y for x, y in pairs)


def is_bot(who: Person, settings: Settings) -> bool:
    return same_person(who, Person(account_id=settings.jira_bot_account_id, name=settings.jira_bot_name))


def account(who: Person) -> str:
    return who.account_id or who.name or ""


async def refusal(
    jira: Groups,
    settings: Settings,
    project: Project,
    who: Person,
    requester: Person | None,
) -> str | None:
    """None if `who` may approve on this project now, else the reason (checked at execution time)."""
    if is_bot(who, settings):
        return "Baton never approves its own proposals."
    if not account(who):
        return "I could not tell who you are from this comment."
    if same_person(who, requester) and not project.requester_may_approve:
        return "the person who asked for this work cannot approve it (requester_may_approve is off)."
    approvers = project.approvers
    if account(who) in approvers.jira_users or who.name in approvers.jira_users:
        return None
    for group in approvers.jira_groups:
        if await jira.user_in_group(account(who), group):
            return None
    allowed = (
        ", ".join([*(f"group {g}" for g in approvers.jira_groups), *approvers.jira_users])
        or "nobody (none configured)"
    )
    return f"only these may approve on {project.jira_project}: {allowed}."
