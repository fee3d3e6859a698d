"""What every job receives: settings and the resources the worker's wiring builds once at start-up.

The shell (`shell/worker.py`, `shell/wiring.py`) builds these and calls in; orchestrators depend on this
module, never on the shell (tests/test_layering.py keeps it so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.agent.runner import Prestarted
from bot.containment.host import Containment
from bot.holds import Holds, LocalHolds
from bot.queue import Queue
from config.projects import ProjectMap
from config.settings import Settings
from config.skills import SkillManifest
from orchestrators.ports import Git, GitLab, Jira, Knowledge, Ledger


@dataclass(frozen=True)
class AgentEndpoint:
    base_url: str
    api_key: SecretStr
    model: str | None
    timeout_s: float
    environ: dict[str, str]  # PATH/LANG/TZ source for the agent (nothing else reaches it)
    containment: Containment  # the OS sandbox every agent call and repository command runs in


@dataclass(frozen=True)
class Clients:
    """The outside world as workflows see it: ports (orchestrators/ports.py), not the adapters."""

    gitlab: GitLab  # bot/clients/gitlab.py GitLabClient in the worker
    jira: Jira  # bot/clients/jira.py JiraClient
    workspace: Git  # bot/git/workspace.py Workspace
    ledger: Ledger  # bot/store/effects.py StoreEffectLedger
    knowledge: Knowledge  # bot/knowledge Knowledge, or orchestrators.knowledge.Unavailable saying why not
    projects: ProjectMap
    agent: AgentEndpoint
    gitlab_token: SecretStr
    skills: SkillManifest

    def close(self) -> None:
        self.gitlab.close()


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    sm: async_sessionmaker[AsyncSession]
    queue: Queue
    name: str
    clients: Clients | None = None  # GitLab, Jira, git workspace, agent: built once in on_startup
    holds: Holds = field(default_factory=LocalHolds)  # budget holds of running calls (RedisHolds in a worker)
    # CLIs started ahead of a run's next calls, by run id and profile (orchestrators/agents.py `prestart`)
    prestarted: dict[tuple[str, str], Prestarted] = field(default_factory=dict)

    def need_clients(self) -> Clients:
        if self.clients is None:
            raise RuntimeError("this worker has no GitLab/Jira clients configured")
        return self.clients
