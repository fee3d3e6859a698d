"""The agent's environment allowlist and the launcher that applies it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from bot.agent.cli_wrapper import bundled_cli, write_launcher
from bot.agent.env import build_agent_env

PARENT = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "BATON_GITLAB_TOKEN": "canary-1",
    "GITLAB_TOKEN": "canary-2",
    "JIRA_TOKEN": "canary-3",
    "ANTHROPIC_API_KEY": "canary-4",
    "AWS_SECRET_ACCESS_KEY": "canary-5",
    "CLAUDE_CODE_ENTRYPOINT": "sdk-py",
    "CLAUDE_AGENT_SDK_VERSION": "9.9.9",
}
FAKE_CLI = """import json, os, sys
print(json.dumps({"env": dict(os.environ), "argv": sys.argv, "pid": os.getpid(), "sid": os.getsid(0)}))
"""


def test_only_allowlisted_variables_are_kept(tmp_path: Path) -> None:
    env = build_agent_env(
        PARENT, home=tmp_path / "home", tmpdir=tmp_path / "tmp", base_url="http://127.0.0.1:1"
    )

    assert "canary" not in json.dumps(env)
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["LANG"] == "C.UTF-8"
    assert env["HOME"] == str(tmp_path / "home")
    assert env["CLAUDE_CONFIG_DIR"] == str(tmp_path / "home" / ".claude")
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1"
    assert env["DISABLE_TELEMETRY"] == "1"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert "ANTHROPIC_API_KEY" not in env
    assert "CLAUDE_CODE_ENTRYPOINT" not in env


def test_a_missing_path_gets_a_default(tmp_path: Path) -> None:
    env = build_agent_env({}, home=tmp_path, tmpdir=tmp_path, base_url="http://127.0.0.1:1")

    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"


def test_the_launcher_runs_the_cli_in_its_own_session_with_only_the_allowlist(tmp_path: Path) -> None:
    cli = tmp_path / "fake-cli"
    cli.write_text(f"#!{sys.executable}\n{FAKE_CLI}")
    cli.chmod(0o700)
    env = build_agent_env(
        PARENT, home=tmp_path / "home", tmpdir=tmp_path / "tmp", base_url="http://127.0.0.1:1"
    )
    launcher = write_launcher(tmp_path, cli, env, SecretStr("sk-secret-in-a-file"))

    done = subprocess.run(
        [str(launcher.path), "--output-format", "stream-json"],
        env={**os.environ, **PARENT},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )

    seen = json.loads(done.stdout)
    assert seen["argv"][1:] == ["--output-format", "stream-json"]
    assert seen["sid"] == seen["pid"] == launcher.pid()
    assert "canary" not in json.dumps(seen["env"])
    assert seen["env"]["CLAUDE_CODE_ENTRYPOINT"] == "sdk-py"
    assert seen["env"]["CLAUDE_AGENT_SDK_VERSION"] == "9.9.9"
    assert set(seen["env"]) - set(env) <= {"CLAUDE_CODE_ENTRYPOINT", "CLAUDE_AGENT_SDK_VERSION", "PWD"}
    assert launcher.marker == f"TMPDIR={tmp_path / 'tmp'}".encode()


def test_the_api_key_lives_only_in_a_private_file_read_by_the_helper(tmp_path: Path) -> None:
    env = build_agent_env({}, home=tmp_path, tmpdir=tmp_path, base_url="http://127.0.0.1:1")
    launcher = write_launcher(tmp_path, bundled_cli(), env, SecretStr('sk-it\'s a "key" $(x)'))

    assert "sk-it" not in launcher.path.read_text()
    assert "sk-it" not in launcher.key_helper.read_text()
    assert stat.S_IMODE((tmp_path / "api-key").stat().st_mode) == 0o600
    assert stat.S_IMODE(launcher.key_helper.stat().st_mode) == 0o700
    assert stat.S_IMODE(launcher.path.stat().st_mode) == 0o700
    printed = subprocess.run(
        [str(launcher.key_helper)], capture_output=True, text=True, check=True, timeout=10
    )
    assert printed.stdout == 'sk-it\'s a "key" $(x)'


def test_the_launcher_has_no_pid_before_it_runs(tmp_path: Path) -> None:
    env = build_agent_env({}, home=tmp_path, tmpdir=tmp_path, base_url="http://127.0.0.1:1")

    assert write_launcher(tmp_path, bundled_cli(), env, SecretStr("k")).pid() is None
    assert bundled_cli().is_file()
