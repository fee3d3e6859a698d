"""Building the resources a worker hands its jobs (orchestrators.resources): GitLab, Jira, the git
workspace, the team's knowledge store, the agent's endpoint and its OS sandbox."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clients.gitlab import GitLabClient
from bot.clients.jira import client_from_settings
from bot.containment.host import Containment, ContainmentUnavailable, describe, host_containment
from bot.git.workspace import GitAuthor, Workspace
from bot.knowledge import knowledge_for
from bot.store.effects import StoreEffectLedger
from config.projects import load_projects
from config.settings import Settings
from config.skills import SkillManifest, skills_from
from orchestrators import Orchestrator
from orchestrators.knowledge import Unavailable
from orchestrators.ports import Knowledge
from orchestrators.registry import WORKFLOWS
from orchestrators.resources import AgentEndpoint, Clients

ANTHROPIC_API = "https://api.anthropic.com"
log = logging.getLogger("baton.wiring")


def load_manifest(settings: Settings, workflows: Mapping[str, Orchestrator] = WORKFLOWS) -> SkillManifest:
    """The skill manifest in force (BATON_SKILLS_FILE, else the packaged one), loaded once when Baton
    starts and refused (SkillError, naming the skill, the unknown workflow and the known ones) when a
    skill's `orchestrator` is not in the worker's workflow table; a missing file raises OSError."""
    manifest = skills_from(settings.skills_file)
    manifest.check_workflows(workflows.keys())
    return manifest


def sandbox_for(settings: Settings) -> Containment:
    """The OS sandbox for this worker, with Baton's state, config and home hidden from it; raises
    ContainmentUnavailable when bubblewrap cannot run here (unless running unconfined is allowed)."""
    private = [Path(settings.state_dir), Path(__file__).resolve().parent.parent / "config"]
    private += [p for p in (settings.projects_file, settings.skills_file) if p is not None]
    return host_containment(
        hidden=[p.resolve() for p in private],
        extra_paths=[p for p in settings.containment_paths.split(":") if p],
        allow_uncontained=settings.allow_uncontained,
        uid=settings.containment_uid,
        gid=settings.containment_gid,
        bwrap_program=settings.containment_bwrap,
    )


def containment_for(settings: Settings) -> Containment:
    """`sandbox_for`, or, when bubblewrap cannot run here, a containment that refuses agent work with
    the reason (logged now, and given as the failure of every run that needs it)."""
    try:
        containment = sandbox_for(settings)
    except ContainmentUnavailable as exc:
        log.error("agent work is refused on this worker: %s", exc)
        return Containment(bwrap=None, refusal=str(exc))
    log.info("sandbox: %s", describe(containment))
    return containment


def knowledge_of(settings: Settings) -> Knowledge:
    """The team's knowledge store (BATON_WIKI_DIR, BATON_KNOWLEDGE_INDEX), or, when it cannot be set
    up, a stand-in that says why whenever it is used: a missing wiki never stops the worker."""
    try:
        return knowledge_for(settings)
    except Exception as exc:
        log.error("the knowledge store is unavailable: %s", exc)
        return Unavailable(f"the knowledge store could not be set up: {type(exc).__name__}")


def build_clients(settings: Settings, sm: async_sessionmaker[AsyncSession], skills: SkillManifest) -> Clients:
    """All external clients, or a clear error naming what is missing; `skills` is the manifest loaded
    at start-up (`load_manifest`)."""
    missing = [
        name
        for name, value in (
            ("BATON_GITLAB_URL", settings.gitlab_url),
            ("BATON_GITLAB_TOKEN", settings.gitlab_token),
            ("BATON_JIRA_URL", settings.jira_url),
            ("BATON_JIRA_TOKEN", settings.jira_token),
            ("BATON_ANTHROPIC_API_KEY", settings.anthropic_api_key),
        )
        if not value
    ]
    if missing:
        raise RuntimeError(f"the worker needs {', '.join(missing)}")
    assert settings.gitlab_token is not None and settings.anthropic_api_key is not None
    ledger = StoreEffectLedger(sm)
    author = GitAuthor(settings.git_author_name, settings.git_author_email)
    projects_path = settings.projects_path
    return Clients(
        gitlab=GitLabClient.from_settings(settings, ledger),
        jira=client_from_settings(settings, ledger),
        workspace=Workspace(
            Path(settings.state_dir) / "workspace", author, pool_size=settings.workspace_pool
        ),
        ledger=ledger,
        knowledge=knowledge_of(settings),
        projects=load_projects(projects_path.read_text()),
        agent=AgentEndpoint(
            base_url=settings.anthropic_base_url or ANTHROPIC_API,
            api_key=settings.anthropic_api_key,
            model=settings.agent_model,
            timeout_s=settings.agent_timeout_s,
            environ={
                **{k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")},
                "PYTHONDONTWRITEBYTECODE": "1",  # the repo's checks leave no bytecode in the worktree
            },
            containment=containment_for(settings),
        ),
        gitlab_token=settings.gitlab_token,
        skills=skills,
    )
