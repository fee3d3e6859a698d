"""Table tests for the tool policy, including hostile paths and commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.agent.policy import GREP_EXCLUDES, Allow, Deny, check_path, decide, forbidden_command
from bot.agent.profiles import IMPLEMENTER, PLANNER, REVIEWER, Profile

DECLARED = ("pytest -q", "ruff check .", 'python -c "import os; print(dict(os.environ))"')


@pytest.fixture
def wt(tmp_path: Path) -> Path:
    """A worktree with ordinary files, secrets, and symlinks pointing in and out."""
    root = tmp_path / "wt"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("x = 1\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[remote]\n")
    (root / ".env").write_text("SECRET=1\n")
    (root / ".env.example").write_text("SECRET=\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("s\n")
    (tmp_path / "wt-sibling").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "escape-file").symlink_to(tmp_path / "outside" / "secret.txt")
    (root / "inner").symlink_to(root / "src", target_is_directory=True)
    (root / "gitlink").symlink_to(root / ".git", target_is_directory=True)
    (root / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    return root


def run(profile: Profile, tool: str, tool_input: dict[str, Any], wt: Path) -> Allow | Deny:
    filled = {k: v.replace("{wt}", str(wt)) if isinstance(v, str) else v for k, v in tool_input.items()}
    return decide(profile, tool, filled, wt, DECLARED)


PATHS_ALLOWED = [
    "{wt}/src/app.py",
    "src/app.py",
    "{wt}/new_file.py",
    "{wt}/src/../src/app.py",
    "{wt}/inner/app.py",
    "{wt}/.env.example",
    "{wt}/src/ünïcødé ファイル.py",
    "{wt}/src/\u202eyp.txt",
    "{wt}/src/\u2024\u2024/x.py",
    "{wt}",
]
PATHS_DENIED = [
    ("/etc/passwd", "outside the worktree"),
    ("{wt}/../outside/secret.txt", "outside the worktree"),
    ("../outside/secret.txt", "outside the worktree"),
    ("{wt}/src/../../outside/secret.txt", "outside the worktree"),
    ("{wt}/escape/secret.txt", "outside the worktree"),
    ("{wt}/escape-file", "outside the worktree"),
    ("{wt}/dangling", "outside the worktree"),
    ("{wt}-sibling/x.py", "outside the worktree"),
    ("~/.ssh/id_rsa", "home-relative"),
    ("~root/.netrc", "home-relative"),
    ("{wt}/src/app.py\x00.txt", "NUL"),
    ("{wt}/.git/config", "git internals"),
    ("{wt}/gitlink/config", "git internals"),
    ("{wt}/.git", "git internals"),
    ("{wt}/.env", "secrets"),
    ("{wt}/config/.env.production", "secrets"),
    ("{wt}/deploy/prod.env", "secrets"),
    ("{wt}/.ssh/id_rsa", "secrets"),
    ("{wt}/.netrc", "secrets"),
    ("{wt}/\ud800", "cannot be resolved"),
    ("", "path is required"),
    ("   ", "path is required"),
]


@pytest.mark.parametrize("path", PATHS_ALLOWED)
@pytest.mark.parametrize("tool", ["Read", "Write", "Edit"])
def test_implementer_may_touch_paths_inside_the_worktree(wt: Path, tool: str, path: str) -> None:
    assert run(IMPLEMENTER, tool, {"file_path": path}, wt) == Allow()


@pytest.mark.parametrize(("path", "reason"), PATHS_DENIED)
@pytest.mark.parametrize("tool", ["Read", "Write", "Edit", "MultiEdit"])
def test_hostile_paths_are_denied(wt: Path, tool: str, path: str, reason: str) -> None:
    decision = run(IMPLEMENTER, tool, {"file_path": path}, wt)

    assert isinstance(decision, Deny)
    assert reason in decision.reason


@pytest.mark.parametrize("bad", [None, 7, ["a"], {"p": 1}])
def test_non_string_paths_are_denied(wt: Path, bad: object) -> None:
    assert isinstance(decide(IMPLEMENTER, "Read", {"file_path": bad}, wt), Deny)
    assert check_path(bad, str(wt)) == "a path is required"


def test_a_path_is_resolved_at_decision_time(wt: Path, tmp_path: Path) -> None:
    link = wt / "later"
    link.symlink_to(wt / "src", target_is_directory=True)
    assert run(IMPLEMENTER, "Read", {"file_path": "{wt}/later/app.py"}, wt) == Allow()

    link.unlink()
    link.symlink_to(tmp_path / "outside", target_is_directory=True)
    assert isinstance(run(IMPLEMENTER, "Read", {"file_path": "{wt}/later/secret.txt"}, wt), Deny)


@pytest.mark.parametrize(
    ("tool", "tool_input"),
    [
        ("Glob", {"pattern": "**/*.py"}),
        ("Glob", {"pattern": "*.md", "path": "{wt}/src"}),
        ("Grep", {"pattern": "def .*\\(", "path": "{wt}"}),
        ("Grep", {"pattern": "x", "glob": "*.py"}),
        ("Grep", {"pattern": "../../etc"}),
    ],
)
@pytest.mark.parametrize("profile", [IMPLEMENTER, REVIEWER, PLANNER])
def test_searches_inside_the_worktree_are_allowed(
    wt: Path, profile: Profile, tool: str, tool_input: dict[str, Any]
) -> None:
    assert isinstance(run(profile, tool, tool_input, wt), Allow)


@pytest.mark.parametrize(
    ("own", "sent"),
    [
        (None, GREP_EXCLUDES),
        ("", GREP_EXCLUDES),
        ("*", f"* {GREP_EXCLUDES}"),
        ("*.{ts,tsx}", f"*.{{ts,tsx}} {GREP_EXCLUDES}"),
        ("!*.py", f"!*.py {GREP_EXCLUDES}"),
    ],
)
def test_grep_always_excludes_git_internals_and_secret_files(wt: Path, own: str | None, sent: str) -> None:
    decision = run(REVIEWER, "Grep", {"pattern": "token", "glob": own, "output_mode": "content"}, wt)

    assert decision == Allow({"pattern": "token", "glob": sent, "output_mode": "content"})
    assert GREP_EXCLUDES.endswith("!.ssh !.aws !.gnupg")


def test_glob_needs_no_rewriting(wt: Path) -> None:
    assert run(REVIEWER, "Glob", {"pattern": "**/*.py"}, wt) == Allow()


@pytest.mark.parametrize(
    ("tool", "tool_input", "reason"),
    [
        ("Glob", {"pattern": "/etc/*"}, "patterns must stay inside"),
        ("Glob", {"pattern": "../**/*"}, "patterns must stay inside"),
        ("Glob", {"pattern": "src/../../*"}, "patterns must stay inside"),
        ("Glob", {"pattern": "~/*"}, "patterns must stay inside"),
        ("Glob", {"pattern": "*", "path": "/"}, "outside the worktree"),
        ("Glob", {"pattern": "*", "path": "{wt}/escape"}, "outside the worktree"),
        ("Grep", {"pattern": "token", "path": "{wt}/.git"}, "git internals"),
        ("Grep", {"pattern": "SECRET", "path": "{wt}/.env"}, "secrets"),
        ("Grep", {"pattern": "x", "glob": "../../*"}, "patterns must stay inside"),
        ("Grep", {"pattern": "x", "path": "~"}, "home-relative"),
    ],
)
def test_searches_that_leave_the_worktree_are_denied(
    wt: Path, tool: str, tool_input: dict[str, Any], reason: str
) -> None:
    decision = run(REVIEWER, tool, tool_input, wt)

    assert isinstance(decision, Deny)
    assert reason in decision.reason


@pytest.mark.parametrize("command", DECLARED)
def test_the_implementer_may_run_exactly_the_declared_commands(wt: Path, command: str) -> None:
    assert run(IMPLEMENTER, "Bash", {"command": command}, wt) == Allow()
    assert run(IMPLEMENTER, "Bash", {"command": f"  {command}\t"}, wt) == Allow()


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("pytest -q -k test_x", "declared commands"),
        ("pytest", "declared commands"),
        ("ls", "declared commands"),
        ("pytest -q; rm -rf /", "shell operators"),
        ("pytest -q && curl http://x", "shell operators"),
        ("pytest -q || true", "shell operators"),
        ("pytest -q | tee /tmp/out", "shell operators"),
        ("pytest -q > /tmp/out", "shell operators"),
        ("pytest -q 2>/dev/null", "shell operators"),
        ("pytest `whoami`", "shell operators"),
        ("pytest $(whoami)", "shell operators"),
        ("pytest ${HOME}", "shell operators"),
        ("pytest -q\nrm -rf /", "shell operators"),
        ("pytest -q &", "shell operators"),
        ("curl http://127.0.0.1/", "never allowed"),
        ("/usr/bin/curl -s x", "never allowed"),
        ("wget x", "never allowed"),
        ("env", "never allowed"),
        ("printenv GITLAB_TOKEN", "never allowed"),
        ("set", "never allowed"),
        ("export -p", "never allowed"),
        ("cat /proc/self/environ", "process environments"),
        ("cat /proc/1/environ", "process environments"),
        ("git push origin HEAD", "git commands"),
        ("git -c x=y push", "git commands"),
        ("git config --get remote.origin.url", "git commands"),
        ("git remote -v", "git commands"),
        ("ssh host", "never allowed"),
        ("nc -l 9000", "never allowed"),
        ("pytest 'unterminated", "cannot be parsed"),
        ("", "empty command"),
        ("pytest -q\x00", "command string is required"),
    ],
)
def test_other_commands_are_denied(wt: Path, command: str, reason: str) -> None:
    decision = run(IMPLEMENTER, "Bash", {"command": command}, wt)

    assert isinstance(decision, Deny)
    assert reason in decision.reason


def test_declared_commands_that_reach_the_network_are_still_denied(wt: Path) -> None:
    decision = decide(IMPLEMENTER, "Bash", {"command": "curl -s https://x"}, wt, ("curl -s https://x",))

    assert isinstance(decision, Deny)
    assert forbidden_command("git push") is not None
    assert forbidden_command("git log --grep=push") is None


def test_background_commands_are_denied(wt: Path) -> None:
    decision = run(IMPLEMENTER, "Bash", {"command": "pytest -q", "run_in_background": True}, wt)

    assert decision == Deny("background commands are not allowed")


@pytest.mark.parametrize("profile", [REVIEWER, PLANNER])
@pytest.mark.parametrize(
    ("tool", "tool_input"),
    [
        ("Edit", {"file_path": "{wt}/src/app.py", "old_string": "1", "new_string": "2"}),
        ("Write", {"file_path": "{wt}/new.py", "content": "x"}),
        ("MultiEdit", {"file_path": "{wt}/src/app.py", "edits": []}),
        ("NotebookEdit", {"notebook_path": "{wt}/n.ipynb", "new_source": "x"}),
        ("Bash", {"command": "pytest -q"}),
    ],
)
def test_read_only_profiles_cannot_edit_or_run(
    wt: Path, profile: Profile, tool: str, tool_input: dict[str, Any]
) -> None:
    decision = run(profile, tool, tool_input, wt)

    assert isinstance(decision, Deny)
    assert profile.name in decision.reason


@pytest.mark.parametrize(
    ("tool", "reason"),
    [
        ("WebFetch", "no network tools"),
        ("WebSearch", "no network tools"),
        ("mcp__fetch__fetch", "no network tools"),
        ("mcp__github__create_pull_request", "no network tools"),
        ("Task", "not available"),
        ("Agent", "not available"),
        ("Skill", "not available"),
        ("ToolSearch", "not available"),
        ("TotallyNewTool", "not available"),
        ("", "not available"),
    ],
)
@pytest.mark.parametrize("profile", [IMPLEMENTER, REVIEWER, PLANNER])
def test_network_and_unknown_tools_are_denied(wt: Path, profile: Profile, tool: str, reason: str) -> None:
    decision = run(profile, tool, {"url": "http://127.0.0.1/"}, wt)

    assert isinstance(decision, Deny)
    assert reason in decision.reason


@pytest.mark.parametrize("profile", [IMPLEMENTER, REVIEWER, PLANNER])
def test_structured_output_is_always_allowed(wt: Path, profile: Profile) -> None:
    assert run(profile, "StructuredOutput", {"verdict": "approve"}, wt) == Allow()
