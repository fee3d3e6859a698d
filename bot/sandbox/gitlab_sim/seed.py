"""The demo world: a bot, one person per role, `demo/calculator` with a tiny tested Python package, and
whatever other demo projects a scenario asks for (`seed_project`, same members)."""

from __future__ import annotations

from collections.abc import Mapping
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


SEED_AUTHOR = ("Mia Maintainer", "maintainer@example.com")


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

    @property
    def people(self) -> tuple[tuple[User, int], ...]:
        """Every demo person with the access level they have on each demo project."""
        return (
            (self.bot, DEVELOPER),
            (self.maintainer, MAINTAINER),
            (self.developer, DEVELOPER),
            (self.reporter, REPORTER),
            (self.guest, GUEST),
        )


def _repository(state: GitLabState, repos_root: Path, path: str, files: Mapping[str, str]) -> Project:
    repo_path = repos_root / f"{path}.git"
    repo.init_bare(repo_path)
    repo.import_files(repo_path, "main", files, "Initial commit", author=SEED_AUTHOR)
    return state.add_project(path, repo_path)


def seed_demo(state: GitLabState, root: Path, files: Mapping[str, str] | None = None) -> Demo:
    """Create the demo users and `demo/calculator` (bare repo under `root`, `files` or the calculator's
    as its first commit on `main`); registers no hooks."""
    repos_root = root / "repos"
    project = _repository(state, repos_root, DEMO_PROJECT, CALCULATOR_FILES if files is None else files)
    demo = Demo(
        bot=state.add_user(BOT_USERNAME, name="Baton", bot=True),
        maintainer=state.add_user("maintainer", name="Mia Maintainer"),
        developer=state.add_user("developer", name="Dev Eloper"),
        reporter=state.add_user("reporter", name="Rey Porter"),
        guest=state.add_user("guest", name="Gus Guest"),
        project=project,
        repos_root=repos_root,
    )
    for user, level in demo.people:
        state.add_member(project, user, level)
    return demo


def seed_project(state: GitLabState, demo: Demo, path: str, files: Mapping[str, str]) -> Project:
    """Another demo project (`files` its first commit on `main`) with the same members as the calculator."""
    project = _repository(state, demo.repos_root, path, files)
    for user, level in demo.people:
        state.add_member(project, user, level)
    return project
