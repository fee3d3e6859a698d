"""Who may use a command, as data (config/skills.yaml), checked by the worker before any workflow runs.

GitLab: the member's access level on the project (or the skill's user allowlist), and whether the
MR author may use it on their own MR. Jira: the skill's group/user allowlist when it sets one (who
may approve a ticket's proposal is per project, in config/projects.yaml). Every trigger counts toward
a per-person, per-MR/ticket rate limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from bot.store import runs
from bot.store.runs import RunRow
from config.projects import ACCESS_LEVELS
from config.skills import Skill, SkillManifest
from orchestrators.resources import WorkerContext

RATE_LIMIT = 3
RATE_WINDOW = timedelta(minutes=15)
LEVEL_NAMES = {level: name for name, level in ACCESS_LEVELS.items()}


def _level_name(level: int) -> str:
    return LEVEL_NAMES.get(level, "no access" if level <= 0 else str(level))


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return any(a.get(k) and a.get(k) == b.get(k) for k in ("id", "username", "account_id", "name"))


async def _gitlab(wctx: WorkerContext, run: RunRow, skill: Skill) -> str | None:
    clients, author = wctx.need_clients(), run.input.get("author") or {}
    project, iid = run.input["project_id"], int(run.input["mr_iid"])
    if author.get("username") not in skill.gitlab_users:
        level = await clients.gitlab.member_access_level(project, int(author.get("id") or 0))
        if level < skill.min_access_level:
            allowed = f"members with {skill.gitlab_min_access} access or higher"
            if skill.gitlab_users:
                allowed += " and " + ", ".join(f"@{u}" for u in skill.gitlab_users)
            return f"/{skill.name} is for {allowed}; you have {_level_name(level)} on this project."
    if not skill.self_service:
        mr = await clients.gitlab.merge_request(project, iid)
        if mr.author is not None and mr.author.id == author.get("id"):
            return f"the author of a merge request cannot /{skill.name} Baton's proposals on it."
    return None


async def _jira(wctx: WorkerContext, run: RunRow, skill: Skill) -> str | None:
    if not (skill.jira_groups or skill.jira_users):
        return None
    who = run.input.get("author") or {}
    account = str(who.get("account_id") or who.get("name") or "")
    if account in skill.jira_users or who.get("name") in skill.jira_users:
        return None
    for group in skill.jira_groups:
        if account and await wctx.need_clients().jira.user_in_group(account, group):
            return None
    allowed = ", ".join([*(f"group {g}" for g in skill.jira_groups), *skill.jira_users])
    return f"/{skill.name} is for {allowed}."


async def _rate_limited(wctx: WorkerContext, run: RunRow, manifest: SkillManifest) -> str | None:
    limited = {s.orchestrator for s in manifest.skills if s.rate_limited}
    author = run.input.get("author") or {}
    recent = await runs.recent(wctx.sm, run.subject, RATE_WINDOW)
    mine = [
        r
        for r in recent
        if r.id != run.id and r.kind in limited and _same(r.input.get("author") or {}, author)
    ]
    if len(mine) >= RATE_LIMIT:
        return f"you started {len(mine)} runs here in the last 15 minutes (at most {RATE_LIMIT}); try later."
    return None


async def refusal(wctx: WorkerContext, run: RunRow, manifest: SkillManifest) -> tuple[Skill, str] | None:
    """(the skill, why not) when the command's author may not use it here; None when allowed.

    Only runs started by a person's command (they carry an `author`) are checked.
    """
    skill = manifest.for_orchestrator(run.kind)
    if skill is None or not run.input.get("author"):
        return None
    gitlab = run.subject.startswith("gitlab:")
    if ("gitlab" if gitlab else "jira") not in skill.where:
        where = " and ".join(
            "GitLab merge requests" if w == "gitlab" else "Jira tickets" for w in skill.where
        )
        return skill, f"/{skill.name} works on {where} only."
    reason = await (_gitlab(wctx, run, skill) if gitlab else _jira(wctx, run, skill))
    if reason is None and skill.rate_limited:
        reason = await _rate_limited(wctx, run, manifest)
    return (skill, reason) if reason else None
