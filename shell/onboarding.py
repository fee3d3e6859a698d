"""`baton doctor` and `baton hooks install`: check a real (or sandbox) instance and register webhooks."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.clients.gitlab import AccessLevel, GitLabClient, GitLabError, GitLabForbidden, GitLabProblem
from bot.clients.jira import JiraClient, JiraProblem, client_from_settings
from bot.containment.host import ContainmentUnavailable, describe
from bot.effects import EffectLedger
from bot.queue import Queue, connect
from bot.store.engine import create_engine
from bot.store.migrate import check_current
from config.projects import ProjectConfigError, ProjectMap, load_projects
from config.settings import Settings
from config.skills import SkillError
from shell.services import default_redis_url
from shell.wiring import load_manifest

# note and MR events (commands, new commits, merges) and pipeline events (CI analysis of Baton's MRs)
GITLAB_EVENTS = {
    "note_events": True, "merge_requests_events": True, "pipeline_events": True, "push_events": False
}  # fmt: skip
JIRA_EVENTS = ["jira:issue_updated", "comment_created", "comment_updated"]
CHECK_TIMEOUT_S = 15.0
SANDBOX_FIX = (
    "install bubblewrap (apt-get install bubblewrap) and allow it to create namespaces; "
    "unset BATON_ALLOW_UNCONTAINED outside development"
)
SKILLS_FIX = "fix BATON_SKILLS_FILE (its fields: config/skills.yaml); name a known workflow as orchestrator"


@dataclass(frozen=True)
class Check:
    """One line of `baton doctor`: what was checked, whether it holds, and how to fix it if not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


async def _guard(name: str, fix: str, body: Callable[[], Awaitable[str]]) -> Check:
    """Run one check with a deadline; any failure becomes a failed line (by type, never a secret)."""
    try:
        return Check(name, True, await asyncio.wait_for(body(), CHECK_TIMEOUT_S))
    except (GitLabProblem, JiraProblem, ProjectConfigError, ContainmentUnavailable, SkillError) as exc:
        return Check(name, False, str(exc)[:300], fix)
    except Exception as exc:  # reachability: whatever the driver raised, report its kind
        return Check(name, False, f"{type(exc).__name__}", fix)


def load_project_map(settings: Settings) -> ProjectMap:
    path = settings.projects_path
    if not path.exists():
        raise ProjectConfigError(f"{path} not found")
    return load_projects(path.read_text())


def _skills(settings: Settings) -> str:
    """The skill manifest as `serve` and `worker` load it: readable, valid, every workflow known."""
    try:
        manifest = load_manifest(settings)
    except OSError as exc:
        raise SkillError(f"cannot read BATON_SKILLS_FILE {settings.skills_file}: {exc.strerror}") from None
    source = settings.skills_file or "the packaged config/skills.yaml"
    return f"{len(manifest.skills)} command(s) from {source}"


async def _store(settings: Settings) -> str:
    engine = create_engine(settings.async_database_url)
    try:
        await check_current(engine)
    finally:
        await engine.dispose()
    return f"{engine.dialect.name} schema at head"


async def _redis(settings: Settings) -> str:
    queue = Queue(connect(default_redis_url(settings)))
    try:
        await queue.ping()
        return f"reachable, {await queue.depth()} job(s) queued"
    finally:
        await queue.close()


def _agent(settings: Settings) -> str:
    from claude_agent_sdk import __file__ as sdk_file

    bundled = Path(sdk_file).parent / "_bundled" / "claude"
    cli = str(bundled) if bundled.exists() else shutil.which("claude")
    if cli is None:
        raise FileNotFoundError("Claude Code CLI not found (claude-agent-sdk ships it; reinstall Baton)")
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=30, check=True)
    if settings.anthropic_api_key is None:
        raise LookupError(f"CLI {version.stdout.strip()} found, but BATON_ANTHROPIC_API_KEY is not set")
    where = settings.anthropic_base_url or "the Anthropic API"
    return f"CLI {version.stdout.strip()}, key set, model server {where}"


async def _gitlab(client: GitLabClient, projects: ProjectMap, hook_url: str) -> str:
    me = await client.bot_user()
    notes = []
    for project in projects.projects:
        level = await client.member_access_level(project.gitlab_project, me.id)
        if level < AccessLevel.DEVELOPER:
            raise GitLabError(
                f"bot @{me.username} is not a Developer of {project.gitlab_project} (access {level})"
            )
        try:
            hooks = [h for h in await client.project_hooks(project.gitlab_project) if h.url == hook_url]
        except GitLabForbidden:  # listing hooks needs Maintainer; a Developer bot cannot see them
            notes.append(f"{project.gitlab_project}: Developer, webhooks not visible to the bot")
            continue
        if not hooks:
            raise GitLabError(
                f"{project.gitlab_project}: no webhook to {hook_url} (run `baton hooks install`)"
            )
        ci = (
            "" if hooks[0].pipeline_events else " without pipeline events (failed pipelines are not analyzed)"
        )
        notes.append(f"{project.gitlab_project}: access {level}, webhook registered{ci}")
    return f"bot @{me.username}; " + "; ".join(notes)


async def _jira(client: JiraClient, projects: ProjectMap) -> str:
    me = await client.bot_account()
    return f"bot {me.display_name}; projects {', '.join(p.jira_project for p in projects.projects)}"


def _sandbox(settings: Settings) -> str:
    from shell.wiring import sandbox_for  # the worker's own construction, so doctor checks what runs

    containment = sandbox_for(settings)
    if not containment.enabled:
        raise ContainmentUnavailable(describe(containment))
    return describe(containment)


async def doctor(settings: Settings, ledger: EffectLedger) -> list[Check]:
    """Every check, in the order a newcomer should fix them."""
    checks = [
        await _guard("store", "run `baton migrate`; check BATON_DATABASE_URL", lambda: _store(settings)),
        await _guard("redis", "start redis-server or set BATON_REDIS_URL", lambda: _redis(settings)),
        await _guard("agent", "set BATON_ANTHROPIC_API_KEY", lambda: asyncio.to_thread(_agent, settings)),
        await _guard("sandbox", SANDBOX_FIX, lambda: asyncio.to_thread(_sandbox, settings)),
        await _guard("skills", SKILLS_FIX, lambda: asyncio.to_thread(_skills, settings)),
    ]
    projects_check = await _guard(
        "projects", f"write {settings.projects_path} (see config/projects.example.yaml)",
        lambda: asyncio.to_thread(lambda: f"{len(load_project_map(settings).projects)} project(s)"),
    )  # fmt: skip
    checks.append(projects_check)
    if not projects_check.ok:
        return checks
    projects = load_project_map(settings)
    if settings.gitlab_url and settings.gitlab_token:
        gitlab = GitLabClient.from_settings(settings, ledger)
        hook_url = f"{settings.webhook_base_url}/webhooks/gitlab"
        fix = "check BATON_GITLAB_URL/TOKEN (scope api), make the bot a Developer, run `baton hooks install`"
        checks.append(await _guard("gitlab", fix, lambda: _gitlab(gitlab, projects, hook_url)))
        gitlab.close()
    if settings.jira_url and settings.jira_token:
        jira = client_from_settings(settings, ledger)
        fix = "check BATON_JIRA_URL/USER/TOKEN; the bot needs Browse and Add Comments"
        checks.append(await _guard("jira", fix, lambda: _jira(jira, projects)))
    return checks


async def install_gitlab_hooks(settings: Settings, ledger: EffectLedger) -> list[str]:
    """Register Baton's webhook on every mapped GitLab project that lacks it; returns what was done."""
    if not (settings.gitlab_url and settings.gitlab_token and settings.gitlab_webhook_secret):
        needed = "BATON_GITLAB_URL, BATON_GITLAB_TOKEN, BATON_GITLAB_WEBHOOK_SECRET"
        return [f"GitLab is not configured (set {needed})"]
    client = GitLabClient.from_settings(settings, ledger)
    url = f"{settings.webhook_base_url}/webhooks/gitlab"
    secret = settings.gitlab_webhook_secret.get_secret_value()
    done = []
    try:
        for project in load_project_map(settings).projects:
            existing = [h for h in await client.project_hooks(project.gitlab_project) if h.url == url]
            if existing:
                done.append(f"{project.gitlab_project}: already registered (hook {existing[0].id})")
                continue
            hook = await client.add_project_hook(project.gitlab_project, url, secret, GITLAB_EVENTS)
            done.append(f"{project.gitlab_project}: registered hook {hook.id} -> {url}")
    finally:
        client.close()
    return done


def jira_webhook_instructions(settings: Settings) -> str:
    """Jira webhooks are registered by an admin; this is what to enter (the secret is not printed)."""
    url = f"{settings.webhook_base_url}/webhooks/jira"
    return (
        "Jira: as a Jira admin, open Settings → System → WebHooks → Create a WebHook and enter\n"
        f"  URL:    {url}\n"
        "  Secret: the value of BATON_JIRA_WEBHOOK_SECRET\n"
        f"  Events: Issue updated; Comment created; Comment updated ({', '.join(JIRA_EVENTS)})\n"
        "  JQL:    project in (<your mapped projects>) — optional, narrows the traffic"
    )
