"""The git runner: hardening flags, a minimal environment, redacted errors, timeouts that kill the group."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bot.git.errors import GitError, GitTimeout
from bot.git.runner import HARDENING, GitRunner, child_env, command_name, hardened_argv, redact
from tests.git.repos import git


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][:1] != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def make_repo(path: Path) -> Path:
    git("init", "--quiet", str(path))
    (path / "f").write_text("x\n")
    git("add", "f", cwd=path)
    git("commit", "--quiet", "-m", "init", cwd=path)
    return path


def test_hardening_flags_come_before_the_callers_arguments() -> None:
    argv = hardened_argv("git", ["status"])
    assert argv[-1] == "status"
    assert argv[1::2][: len(HARDENING)] == ("-c",) * len(HARDENING)
    assert "core.hooksPath=/dev/null" in argv
    assert "protocol.allow=never" in argv
    assert "credential.helper=" in argv


def test_child_env_inherits_nothing_but_path() -> None:
    env = child_env("/usr/bin", {"GIT_INDEX_FILE": "/tmp/i"})
    assert env["PATH"] == "/usr/bin"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert set(env) - {"PATH", "GIT_INDEX_FILE"} == {
        "LC_ALL",
        "LANG",
        "GIT_TERMINAL_PROMPT",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_CONFIG_GLOBAL",
        "GIT_ATTR_NOSYSTEM",
        "GIT_PROTOCOL_FROM_USER",
        "GCM_INTERACTIVE",
    }
    with pytest.raises(ValueError, match="NUL"):
        child_env("/usr/bin", {"X": "a\x00b"})


async def test_inherited_git_variables_cannot_redirect_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.hooksPath")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(tmp_path / "evil-hooks"))
    runner = GitRunner()
    assert (await runner.run(["rev-parse", "--absolute-git-dir"], cwd=repo)).text == str(repo / ".git")
    assert (await runner.run(["config", "core.hooksPath"], cwd=repo)).text == "/dev/null"


async def test_repository_hooks_never_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    marker = tmp_path / "hook-ran"
    hooks = repo / ".git" / "hooks"
    for hook in ("pre-commit", "commit-msg", "post-commit", "post-checkout"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (hooks / hook).chmod(0o755)
    git("config", "core.hooksPath", str(hooks), cwd=repo)
    runner = GitRunner()
    (repo / "g").write_text("y\n")
    await runner.run(["add", "g"], cwd=repo)
    env = {
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@b",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@b",
    }
    await runner.run(["commit", "--quiet", "-m", "x"], cwd=repo, env=env)
    await runner.run(["checkout", "--quiet", "-b", "other"], cwd=repo)
    assert not marker.exists()


async def test_ext_transport_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ext-ran"
    runner = GitRunner()
    with pytest.raises(GitError) as caught:
        await runner.run(["ls-remote", "--end-of-options", f"ext::sh -c touch% {marker}"], cwd=tmp_path)
    assert "transport 'ext' not allowed" in str(caught.value)
    assert not marker.exists()


async def test_errors_name_the_command_and_mask_secrets(tmp_path: Path) -> None:
    secret = "glpat-very-secret-123456"
    runner = GitRunner()
    with pytest.raises(GitError) as caught:
        await runner.run(["ls-remote", f"{tmp_path}/missing-{secret}"], cwd=tmp_path, secrets=[secret])
    assert caught.value.command == "ls-remote"
    assert caught.value.returncode == 128
    assert secret not in str(caught.value)
    assert secret not in caught.value.stderr
    assert "***" in str(caught.value)


async def test_check_false_returns_the_result(tmp_path: Path) -> None:
    result = await GitRunner().run(["rev-parse", "--verify", "--quiet", "nope"], cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert result.argv[0] == "git"


def test_redact_masks_url_credentials_and_longest_secret_first() -> None:
    text = "fatal: unable to access 'https://oauth2:glpat-abc@gitlab.example/x.git/': abcdef"
    masked = redact(text, ["abc", "abcdef"])
    assert "glpat" not in masked
    assert "abc" not in masked
    assert "https://***@gitlab.example" in masked


def test_command_name_skips_options() -> None:
    assert command_name(["--git-dir=/x", "fetch", "--prune"]) == "fetch"
    assert command_name(["--version"]) == "git"


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    fake_git = tmp_path / "slow-git"
    fake_git.write_text(f"#!/bin/sh\nsleep 30 &\necho $! > {pid_file}\nwait\n")
    fake_git.chmod(0o755)
    runner = GitRunner(git=str(fake_git), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(GitTimeout, match=r"git fetch timed out after 0\.5s"):
        await runner.run(["fetch"], cwd=tmp_path)
    assert time.monotonic() - started < 5
    child = int(pid_file.read_text())
    assert gone_within(child, 5)


async def test_observer_sees_every_argv(tmp_path: Path) -> None:
    seen: list[tuple[tuple[str, ...], Path | None]] = []
    runner = GitRunner(observer=lambda argv, cwd: seen.append((argv, cwd)))
    await runner.run(["--version"], cwd=tmp_path)
    assert seen == [(hardened_argv("git", ["--version"]), tmp_path)]
