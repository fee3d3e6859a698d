"""The demo world: a bot, one person per role, and `demo/calculator` with a tiny tested Python package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.sandbox.gitlab_sim import repo
from bot.sandbox.gitlab_sim.model import DEVELOPER, GUEST, MAINTAINER, REPORTER, Project, User
from bot.sandbox.gitlab_sim.state import GitLabState

BOT_USERNAME = "baton-bot"
DEMO_PROJECT = "demo/calculator"

CALCULATOR_FILES = {
    "README.md": "# calculator\n\nA tiny calculator for Baton's demo. Test it with `python -m pytest`.\n",
    "pyproject.toml": (
        '[project]\nname = "calculator"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n\n'
        '[tool.pytest.ini_options]\npythonpath = ["."]\ntestpaths = ["tests"]\n'
    ),
    "calculator.py": (
        '"""A tiny calculator."""\n\n\n'
        "def add(a: float, b: float) -> float:\n    return a + b\n\n\n"
        "def sub(a: float, b: float) -> float:\n    return a - b\n"
    ),
    "tests/test_calculator.py": (
        "from calculator import add, sub\n\n\n"
        "def test_add() -> None:\n    assert add(2, 3) == 5\n\n\n"
        "def test_sub() -> None:\n    assert sub(5, 3) == 2\n"
    ),
}


@dataclass(frozen=True)
class Demo:
    """What `seed_demo` created; tokens are on the users (pass them on, never print them)."""

    bot: User
    maintainer: User
    developer: User
    reporter: User
    guest: User
    project: Project
    repos_root: Path  # serve it with git: GitLabServer(state, git_root=demo.repos_root, git_token=...)


def seed_demo(state: GitLabState, root: Path) -> Demo:
    """Create the demo users and `demo/calculator` (bare repo under `root`); registers no hooks."""
    repos_root = root / "repos"
    repo_path = repos_root / f"{DEMO_PROJECT}.git"
    repo.init_bare(repo_path)
    repo.commit_files(
        repo_path,
        "main",
        CALCULATOR_FILES,
        "Add calculator with tests",
        author=("Mia Maintainer", "maintainer@example.com"),
    )
    project = state.add_project(DEMO_PROJECT, repo_path)
    people = {
        "bot": (state.add_user(BOT_USERNAME, name="Baton", bot=True), DEVELOPER),
        "maintainer": (state.add_user("maintainer", name="Mia Maintainer"), MAINTAINER),
        "developer": (state.add_user("developer", name="Dev Eloper"), DEVELOPER),
        "reporter": (state.add_user("reporter", name="Rey Porter"), REPORTER),
        "guest": (state.add_user("guest", name="Gus Guest"), GUEST),
    }
    for user, level in people.values():
        state.add_member(project, user, level)
    return Demo(project=project, repos_root=repos_root, **{role: user for role, (user, _) in people.items()})
