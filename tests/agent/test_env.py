"""The agent's environment allowlist and the launcher that applies it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from bot.agent.cli_wrapper import bundled_cli, render_launcher, write_launcher
from bot.agent.env import RELAY_BASE_URL, build_agent_env

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
TOKEN = "baton-relay-placeholder"


def agent_env(tmp_path: Path, parent: dict[str, str] = PARENT) -> dict[str, str]:
    return build_agent_env(
        parent, home=tmp_path / "home", tmpdir=tmp_path / "tmp", socket=tmp_path / "model.sock", token=TOKEN
    )


def test_only_allowlisted_variables_are_kept(tmp_path: Path) -> None:
    env = agent_env(tmp_path)

    assert "canary" not in json.dumps(env)
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["LANG"] == "C.UTF-8"
    assert env["HOME"] == str(tmp_path / "home")
    assert env["CLAUDE_CONFIG_DIR"] == str(tmp_path / "home" / ".claude")
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["ANTHROPIC_BASE_URL"] == RELAY_BASE_URL
    assert env["ANTHROPIC_UNIX_SOCKET"] == str(tmp_path / "model.sock")
    assert env["ANTHROPIC_API_KEY"] == TOKEN  # the relay's placeholder, never the parent's key
    assert env["DISABLE_TELEMETRY"] == "1"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert "CLAUDE_CODE_ENTRYPOINT" not in env


def test_a_missing_path_gets_a_default(tmp_path: Path) -> None:
    assert agent_env(tmp_path, {})["PATH"] == "/usr/local/bin:/usr/bin:/bin"


def test_the_launcher_runs_the_cli_in_its_own_session_with_only_the_allowlist(tmp_path: Path) -> None:
    cli = tmp_path / "fake-cli"
    cli.write_text(f"#!{sys.executable}\n{FAKE_CLI}")
    cli.chmod(0o700)
    env = agent_env(tmp_path)
    launcher = write_launcher(tmp_path, [str(cli), "--from-the-sandbox-argv"], env)

    done = subprocess.run(
        [str(launcher.path), "--output-format", "stream-json"],
        env={**os.environ, **PARENT},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )

    seen = json.loads(done.stdout)
    assert seen["argv"][1:] == ["--from-the-sandbox-argv", "--output-format", "stream-json"]
    assert seen["sid"] == seen["pid"] == launcher.pid()
    assert "canary" not in json.dumps(seen["env"])
    assert seen["env"]["CLAUDE_CODE_ENTRYPOINT"] == "sdk-py"
    assert seen["env"]["CLAUDE_AGENT_SDK_VERSION"] == "9.9.9"
    assert set(seen["env"]) - set(env) <= {"CLAUDE_CODE_ENTRYPOINT", "CLAUDE_AGENT_SDK_VERSION", "PWD"}
    assert launcher.marker == f"TMPDIR={tmp_path / 'tmp'}".encode()
    assert stat.S_IMODE(launcher.path.stat().st_mode) == 0o700


def test_hostile_argv_and_env_values_stay_data_in_the_launcher(tmp_path: Path) -> None:
    hostile = ["/bin/x", "'''; import os; os.system('id')  #"]
    text = render_launcher(hostile, {"TMPDIR": '"); x = ("'}, tmp_path)

    compile(text, "launcher", "exec")  # still valid Python: the values are JSON inside string literals
    assert text.count("os.system") == 1
    assert text.count("os.execve") == 1


def test_the_launcher_has_no_pid_before_it_runs(tmp_path: Path) -> None:
    assert write_launcher(tmp_path, [str(bundled_cli())], agent_env(tmp_path)).pid() is None
    assert bundled_cli().is_file()
