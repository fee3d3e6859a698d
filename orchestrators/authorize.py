"""Who may use a command, as data (config/skills.yaml), checked by the worker before any workflow runs.

GitLab: the member's access level on the project (or the skill's user allowlist), and whether the
MR author may use it on their own MR. Jira: the skill's group/user allowlist when it sets one (who
may approve a ticket's proposal is per project, in config/projects.yaml). Every trigger counts toward
a per-person, per-MR/ticket rate limit.
"""

from __future__ import annotations

from datetime import timedelta

from bot.store import runs
from bot.store.runs import RunRow
from bot.triggers import ThreadCommand, TicketCommand
from config.projects import ACCESS_LEVELS
from config.skills import Skill, SkillManifest
from orchestrators.resources import WorkerContext
from orchestrators.venue import author_of, venue_of

RATE_LIMIT = 3
RATE_WINDOW = timedelta(minutes=15)
LEVEL_NAMES = {level: name for name, level in ACCESS_LEVELS.items()}


def _level_name(level: int) -> str:
    return LEVEL_NAMES.get(level, "no access" if level <= 0 else str(level))


async def _gitlab(wctx: WorkerContext, command: ThreadCommand, skill: Skill) -> str | None:
    clients, author = wctx.need_clients(), command.author
    project, iid = command.project_id, command.mr_iid
    if author.username not in skill.gitlab_users:
        level = await clients.gitlab.member_access_level(project, author.id or 0)
        if level < skill.min_access_level:
            allowed = f"members with {skill.gitlab_min_access} access or higher"
            if skill.gitlab_users:
                allowed += " and " + ", ".join(f"@{u}" for u in skill.gitlab_users)
            return f"/{skill.name} is for {allowed}; you have {_level_name(level)} on this project."
    if not skill.self_service:
        mr = await clients.gitlab.merge_request(project, iid)
        if mr.author is not None and mr.author.id == author.id:
            return f"the author of a merge request cannot /{skill.name} Baton's proposals on it."
    return None


async def _jira(wctx: WorkerContext, command: TicketCommand, skill: Skill) -> str | None:
    if not (skill.jira_groups or skill.jira_users):
        return None
    who = command.author
    account = who.account_id or who.name or ""
    if account in skill.jira_users or who.name in skill.jira_users:
        return None
    for group in skill.jira_groups:
        if account and await wctx.need_clients().jira.user_in_group(account, group):
            return None
    allowed = ", ".join([*(f"group {g}" for g in skill.jira_groups), *skill.jira_users])
    return f"/{skill.name} is for {allowed}."


async def _rate_limited(wctx: WorkerContext, run: RunRow, manifest: SkillManifest) -> str | None:
    limited = {s.orchestrator for s in manifest.skills if s.rate_limited}
    author = author_of(run)
    recent = await runs.recent(wctx.sm, run.subject, RATE_WINDOW)
    mine = [r for r in recent if r.id != run.id and r.kind in limited and author_of(r).same_as(author)]
    if len(mine) >= RATE_LIMIT:
        return f"you started {len(mine)} runs here in the last 15 minutes (at most {RATE_LIMIT}); try later."
    return None


async def refusal(wctx: WorkerContext, run: RunRow, manifest: SkillManifest) -> tuple[Skill, str] | None:
    """(the skill, why not) when the command's author may not use it here; None when allowed.

    Only runs started by a person's command (they carry an `author`) are checked.
    """
    skill, command = manifest.for_orchestrator(run.kind), run.trigger
    if skill is None or not isinstance(command, TicketCommand | ThreadCommand):
        return None
    if venue_of(run).flavor not in skill.where:
        where = " and ".join(
            "GitLab merge requests" if w == "gitlab" else "Jira tickets" for w in skill.where
        )
        return skill, f"/{skill.name} works on {where} only."
    if isinstance(command, ThreadCommand):
        reason = await _gitlab(wctx, command, skill)
    else:
        reason = await _jira(wctx, command, skill)
    if reason is None and skill.rate_limited:
        reason = await _rate_limited(wctx, run, manifest)
    return (skill, reason) if reason else None
