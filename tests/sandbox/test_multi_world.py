"""The multi-repository sandbox world (#13), through the real clients: the stack seeded from
scenarios/multi.yaml serves demo/catalog, demo/pricing, demo/inventory and demo/storefront (python-gitlab:
project, members, Baton's hook; git over HTTP: the scenario's files on main), DEMO-1 carries the four
components in Jira's shape (the jira client, REST and JQL), and each task script's edits apply to its
repository and leave its tests passing. Seeding stays cheap."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gitlab
import pytest
from jira import JIRA

from bot.git.askpass import askpass_env, install_script
from bot.sandbox.demo.scenario import DemoScenario, load_demo_scenario
from bot.sandbox.jira_sim.demo import DEMO_COMPONENTS
from bot.sandbox.scenario import Script, select_script
from bot.sandbox.stack import DEFAULT_SCENARIO, SandboxPorts, SandboxStack
from tests.support.multi import MULTI, TASKS, apply_script, body

BATON_URL = "http://127.0.0.1:9"  # nothing listens: webhooks are not what these tests look at
LEVELS = {"baton-bot": 30, "maintainer": 40, "developer": 30, "reporter": 20, "guest": 10}
GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxStack, dict[str, Any]]]:
    stack = SandboxStack(tmp_path_factory.mktemp("multi"), BATON_URL, SandboxPorts.from_base(0), MULTI)
    config = stack.start()
    try:
        yield stack, config
    finally:
        stack.stop()


def world() -> DemoScenario:
    return load_demo_scenario(MULTI)


def gl(config: dict[str, Any], role: str = "bot") -> gitlab.Gitlab:
    token = config["gitlab"]["tokens"][role]
    return gitlab.Gitlab(
        config["gitlab"]["url"], private_token=token, timeout=5, retry_transient_errors=False
    )


def test_the_config_lists_every_seeded_project_and_demo_components(
    multi: tuple[SandboxStack, dict[str, Any]],
) -> None:
    _, config = multi
    assert config["gitlab"]["projects"] == ["demo/calculator", *TASKS.values()]
    assert config["jira"]["components"] == list(DEMO_COMPONENTS)


@pytest.mark.parametrize("path", ["demo/calculator", *TASKS.values()])
def test_each_project_has_the_demo_members_and_batons_hook(
    multi: tuple[SandboxStack, dict[str, Any]], path: str
) -> None:
    stack, config = multi
    client = gl(config, "maintainer")
    project = client.projects.get(path)
    assert (project.path_with_namespace, project.default_branch) == (path, "main")
    for username, level in LEVELS.items():
        user = next(u for u in stack.gitlab_state.users.values() if u.username == username)
        assert project.members_all.get(user.id).access_level == level, username
    (hook,) = project.hooks.list()
    assert hook.url == f"{BATON_URL}/webhooks/gitlab"
    assert hook.note_events and hook.merge_requests_events


@pytest.mark.parametrize("path", list(TASKS.values()))
def test_each_service_repository_holds_the_scenario_files_on_main(
    multi: tuple[SandboxStack, dict[str, Any]], path: str, tmp_path: Path
) -> None:
    _, config = multi
    project = gl(config).projects.get(path)
    head = project.branches.get("main").commit["id"]
    remote = f"{config['gitlab']['url']}/{path}.git"
    token = config["gitlab"]["tokens"]["bot"]
    env = {**GIT_ENV, **askpass_env(install_script(tmp_path / "bin"), remote, token, "baton-bot")}
    clone = tmp_path / "clone"
    done = subprocess.run(
        ["git", "clone", "--quiet", "--", remote, str(clone)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rev = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert rev.stdout.strip() == head
    files = world().repositories[path].files
    found = {str(p.relative_to(clone)) for p in clone.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert found == set(files)
    for name, text in files.items():
        assert (clone / name).read_text() == text, name


def test_demo_1_carries_the_four_components_in_jiras_shape(
    multi: tuple[SandboxStack, dict[str, Any]],
) -> None:
    _, config = multi
    jira = JIRA(
        config["jira"]["url"],
        basic_auth=(config["jira"]["bot_user"], config["jira"]["tokens"]["bot"]),
        max_retries=0,
        timeout=5,
    )
    issue = jira.issue("DEMO-1")
    components = issue.fields.components
    assert [c.name for c in components] == ["catalog", "pricing", "inventory", "storefront"]
    assert len({c.id for c in components}) == 4 and all(c.id.isdigit() for c in components)
    raw = issue.raw["fields"]["components"]
    assert all(set(c) == {"self", "id", "name"} and c["self"].endswith(f"/component/{c['id']}") for c in raw)
    assert jira.issue("DEMO-2").fields.components == []
    found = jira.search_issues("project = DEMO AND component = pricing")
    assert [i.key for i in found] == ["DEMO-1"]


def test_the_default_scenario_seeds_placeholder_services_and_no_components(tmp_path: Path) -> None:
    """The sandbox's mapping names every service repository, so each exists whatever the scenario; one the
    scenario does not declare holds a README only, and the ticket has no components."""
    stack = SandboxStack(tmp_path, BATON_URL, SandboxPorts.from_base(0), DEFAULT_SCENARIO)
    config = stack.start()
    try:
        services = ["demo/catalog", "demo/pricing", "demo/inventory", "demo/storefront"]
        assert config["gitlab"]["projects"] == ["demo/calculator", *services]
        assert [p.path_with_namespace for p in stack.gitlab_state.projects.values()] == [
            "demo/calculator",
            *services,
        ]
        for path in services:
            listing = subprocess.run(
                ["git", "-C", str(stack.demo.repos_root / f"{path}.git"), "ls-tree", "--name-only", "main"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert listing.stdout.split() == ["README.md"]
        assert stack.jira_state.issue("DEMO-1").components == []
    finally:
        stack.stop()


def script_for(task: str) -> Script:
    chosen = select_script(world().model, body(f"Baton task: {task} in {TASKS[task]}"))
    assert chosen is not None
    return chosen[1]


def pytest_in(path: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(argv, cwd=path, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_task_script_edits_its_repository_and_its_tests_pass(task: str, tmp_path: Path) -> None:
    repository = world().repositories[TASKS[task]]
    for path, text in repository.files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert pytest_in(tmp_path).returncode == 0, "the seeded repository's own tests pass"
    commands = apply_script(tmp_path, script_for(task))
    assert commands == ["python -m pytest -q"]
    assert '"python -m pytest -q"' in repository.files[".baton.yml"]
    after = pytest_in(tmp_path)
    assert after.returncode == 0, after.stdout[-3000:]
    assert " passed" in after.stdout
