"""The sandbox stack: GitLab and Jira simulators plus the scripted model, wired to Baton's webhooks.

`baton sandbox` runs it on its own; `baton up` runs it when no GitLab/Jira is configured. Its
credentials are generated once into `<state dir>/sandbox-secrets.json` (0600), so the configuration
can be printed (`baton sandbox --print-config`) before or while it runs.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.sandbox import gitlab_sim, jira_sim
from bot.sandbox.demo.scenario import (
    SERVICE_REPOSITORIES,
    TICKET_KEY,
    DemoScenario,
    Ticket,
    load_demo_scenario,
)
from bot.sandbox.jira_sim.demo import DEMO_APPROVER_TOKEN, DEMO_DEVELOPER_TOKEN
from bot.sandbox.model_server import ModelServer
from bot.sandbox.serve import ServerThread

SECRET_NAMES = (
    "GITLAB_WEBHOOK_SECRET",
    "JIRA_WEBHOOK_SECRET",
    "GITLAB_BOT_TOKEN",
    "GITLAB_MAINTAINER_TOKEN",
    "GITLAB_DEVELOPER_TOKEN",
    "GITLAB_REPORTER_TOKEN",
    "GITLAB_GUEST_TOKEN",
    "JIRA_BOT_TOKEN",
    "MODEL_API_KEY",
)
DEFAULT_SCENARIO = Path(__file__).with_name("scenarios") / "demo.yaml"
JIRA_BOT_EMAIL = "baton-bot@example.com"


def load_secrets(state_dir: Path) -> dict[str, str]:
    """The sandbox's credentials, generated once and kept 0600 under the state dir."""
    path = state_dir / "sandbox-secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if all(stored.get(name) for name in SECRET_NAMES):
        return stored
    values = {name: stored.get(name) or secrets.token_urlsafe(24) for name in SECRET_NAMES}
    values["GITLAB_BOT_TOKEN"] = (
        values["GITLAB_BOT_TOKEN"]
        if values["GITLAB_BOT_TOKEN"].startswith("glpat-")
        else ("glpat-" + values["GITLAB_BOT_TOKEN"])
    )
    state_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(values, indent=2))
    return values


@dataclass(frozen=True)
class SandboxPorts:
    gitlab: int
    jira: int
    model: int

    @classmethod
    def from_base(cls, base: int) -> SandboxPorts:
        return cls(base, base + 1, base + 2) if base else cls(0, 0, 0)


def sandbox_config(
    baton_url: str,
    ports: SandboxPorts,
    values: dict[str, str],
    host: str = "127.0.0.1",
    projects: list[str] | None = None,
) -> dict[str, Any]:
    """Everything a script needs to drive the sandbox, as one JSON-ready object; `projects` are the
    seeded GitLab projects (default: demo/calculator alone)."""
    gitlab = f"http://{host}:{ports.gitlab}"
    return {
        "baton": {
            "url": baton_url,
            "gitlab_webhook": f"{baton_url}/webhooks/gitlab",
            "jira_webhook": f"{baton_url}/webhooks/jira",
        },
        "gitlab": {
            "url": gitlab,
            "project": gitlab_sim.seed.DEMO_PROJECT,
            "projects": projects or [gitlab_sim.seed.DEMO_PROJECT],
            "git_url": f"{gitlab}/{gitlab_sim.seed.DEMO_PROJECT}.git",
            "bot_username": gitlab_sim.seed.BOT_USERNAME,
            "webhook_secret": values["GITLAB_WEBHOOK_SECRET"],
            "tokens": {
                role: values[f"GITLAB_{role.upper()}_TOKEN"]
                for role in ("bot", "maintainer", "developer", "reporter", "guest")
            },
        },
        "jira": {
            "url": f"http://{host}:{ports.jira}",
            "project": "DEMO",
            "components": list(jira_sim.demo.DEMO_COMPONENTS),
            "tickets": {"precise": "DEMO-1", "vague": "DEMO-2"},
            "bot_user": JIRA_BOT_EMAIL,
            "webhook_secret": values["JIRA_WEBHOOK_SECRET"],
            "tokens": {
                "bot": values["JIRA_BOT_TOKEN"],
                "approver": DEMO_APPROVER_TOKEN,
                "developer": DEMO_DEVELOPER_TOKEN,
            },
        },
        "model": {"url": f"http://{host}:{ports.model}", "api_key": values["MODEL_API_KEY"]},
    }


def baton_environment(config: dict[str, Any]) -> dict[str, str]:
    """The BATON_* variables that point Baton at a running sandbox."""
    gitlab, jira, model = config["gitlab"], config["jira"], config["model"]
    return {
        "BATON_SANDBOX": "1",
        "BATON_GITLAB_URL": gitlab["url"],
        "BATON_GITLAB_TOKEN": gitlab["tokens"]["bot"],
        "BATON_GITLAB_WEBHOOK_SECRET": gitlab["webhook_secret"],
        "BATON_GITLAB_BOT_USERNAME": gitlab["bot_username"],
        "BATON_JIRA_URL": jira["url"],
        "BATON_JIRA_USER": jira["bot_user"],
        "BATON_JIRA_TOKEN": jira["tokens"]["bot"],
        "BATON_JIRA_WEBHOOK_SECRET": jira["webhook_secret"],
        "BATON_JIRA_BOT_ACCOUNT_ID": jira_sim.demo.BOT_ACCOUNT_ID,
        "BATON_ANTHROPIC_BASE_URL": model["url"],
        "BATON_ANTHROPIC_API_KEY": model["api_key"],
    }


def seed_ticket(state: jira_sim.JiraState, ticket: Ticket) -> None:
    """Give the scenario's ticket to the demo's first issue (summary, description, labels)."""
    issue = state.issue(TICKET_KEY)
    with state.lock:
        issue.summary = ticket.summary
        issue.description = ticket.description
        issue.labels = list(ticket.labels)
    state.set_components(TICKET_KEY, ticket.components)


class SandboxStack:
    """Seeds the demo world from a scenario file and serves the three simulators until `stop()`.

    The scenario (default `scenarios/demo.yaml`, format in docs/scenarios.md) is read when the stack is
    built, so a bad file fails with `ScenarioError` before anything starts.
    """

    def __init__(
        self, state_dir: Path, baton_url: str, ports: SandboxPorts, scenario: Path | None = None
    ) -> None:
        self.root = state_dir / "sandbox"
        self.values = load_secrets(state_dir)
        self.baton_url = baton_url
        self.ports = ports
        self.scenario = scenario or DEFAULT_SCENARIO
        self.world: DemoScenario = load_demo_scenario(self.scenario)
        self.gitlab_state = gitlab_sim.GitLabState()
        self.jira_state = jira_sim.JiraState()
        self._servers: list[ServerThread] = []

    def _seed(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)  # simulators keep state in memory: start clean
        calculator = self.world.repository.files if self.world.repository else None
        demo = gitlab_sim.seed_demo(self.gitlab_state, self.root, calculator)
        services = [
            gitlab_sim.seed.seed_project(self.gitlab_state, demo, path, self._service_files(path))
            for path in SERVICE_REPOSITORIES.values()
        ]
        for role in ("bot", "maintainer", "developer", "reporter", "guest"):
            getattr(demo, role).token = self.values[f"GITLAB_{role.upper()}_TOKEN"]
        events = {
            "note_events": True, "merge_requests_events": True, "pipeline_events": True, "push_events": False
        }  # fmt: skip
        hook_url = f"{self.baton_url}/webhooks/gitlab"
        for project in (demo.project, *services):
            self.gitlab_state.add_hook(
                project, hook_url, token=self.values["GITLAB_WEBHOOK_SECRET"], events=events
            )
        jira_sim.seed_demo(self.jira_state, bot_token=self.values["JIRA_BOT_TOKEN"])
        seed_ticket(self.jira_state, self.world.ticket)
        self.projects = [demo.project.path_with_namespace, *(p.path_with_namespace for p in services)]
        self.jira_state.register_webhook(
            "baton",
            f"{self.baton_url}/webhooks/jira",
            ["jira:issue_updated", "comment_created", "comment_updated"],
            secret=self.values["JIRA_WEBHOOK_SECRET"],
        )
        self.demo = demo

    def _service_files(self, path: str) -> dict[str, str]:
        """A service repository's first commit: the scenario's files, else a placeholder README. Every
        service repository exists whatever the scenario, since the sandbox's project mapping
        (config/projects.example.yaml) maps DEMO's components to them and `baton doctor` checks each."""
        declared = self.world.repositories.get(path)
        if declared is not None:
            return dict(declared.files)
        readme = (
            f"# {path}\n\nA sandbox service repository; a scenario's `repositories` section gives it code.\n"
        )
        return {"README.md": readme}

    def start(self) -> dict[str, Any]:
        self._seed()
        gitlab = gitlab_sim.GitLabServer(
            self.gitlab_state,
            port=self.ports.gitlab,
            git_root=self.demo.repos_root,
            git_token=self.values["GITLAB_BOT_TOKEN"],
        )
        jira = ServerThread(jira_sim.create_jira_app(self.jira_state), port=self.ports.jira)
        model = ModelServer(self.world.model, api_key=self.values["MODEL_API_KEY"], port=self.ports.model)
        for server in (gitlab, jira, model):
            self._servers.append(server.start())
        self.model = model
        ports = SandboxPorts(gitlab.port, jira.port, model.port)
        config = sandbox_config(self.baton_url, ports, self.values, projects=self.projects)
        self.running_file.touch(mode=0o600)
        self.running_file.write_text(json.dumps(config, indent=2))
        return config

    @property
    def running_file(self) -> Path:
        return running_config_path(self.root.parent)

    def stop(self) -> None:
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        self.running_file.unlink(missing_ok=True)


def running_config_path(state_dir: Path) -> Path:
    """Where a running sandbox writes its configuration (removed when it stops)."""
    return state_dir / "sandbox.json"


def current_config(state_dir: Path, baton_url: str, ports: SandboxPorts) -> dict[str, Any]:
    """The running sandbox's configuration, or the one it will have when started."""
    path = running_config_path(state_dir)
    if path.exists():
        running: dict[str, Any] = json.loads(path.read_text())
        return running
    return sandbox_config(baton_url, ports, load_secrets(state_dir))
