"""A per-run launcher for the Claude Code CLI: new session, explicit environment, key in a file."""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from bot.agent.env import SDK_PROTOCOL

LAUNCHER_TEMPLATE = '''#!{python} -IS
"""Baton agent launcher: own session, explicit environment, then exec the Claude Code CLI."""
import json, os, sys
os.setsid()
with open({pid_file!r}, "w") as handle:
    handle.write(str(os.getpid()))
env = json.loads({env_json!r})
env.update({{k: v for k, v in os.environ.items() if k in {passthrough!r}}})
os.execve({cli!r}, [{cli!r}, *sys.argv[1:]], env)
'''
KEY_HELPER_TEMPLATE = "#!/bin/sh\nexec cat -- {key_file}\n"


@dataclass(frozen=True)
class Launcher:
    """One run's launcher (the `cli_path`), its pid file, the key helper, and the environment entry
    (`marker`) that every process of the run inherits, so stragglers can be found and ended."""

    path: Path
    pid_file: Path
    key_helper: Path
    marker: bytes

    def pid(self) -> int | None:
        """The CLI's pid (also its process group and session id), once the launcher has run."""
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None


def bundled_cli() -> Path:
    """The Claude Code binary that ships inside claude-agent-sdk."""
    import claude_agent_sdk

    return Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"


def render_launcher(cli: Path, env: dict[str, str], pid_file: Path, python: str = sys.executable) -> str:
    """The launcher script text; it holds no secret (the key lives only in the helper's file)."""
    return LAUNCHER_TEMPLATE.format(
        python=python,
        pid_file=str(pid_file),
        env_json=json.dumps(env),
        passthrough=tuple(SDK_PROTOCOL),
        cli=str(cli),
    )


def _write_private(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_launcher(run_dir: Path, cli: Path, env: dict[str, str], api_key: SecretStr) -> Launcher:
    """Write the launcher, the API key file and its `apiKeyHelper` script into a private run dir."""
    key_file = run_dir / "api-key"
    _write_private(key_file, api_key.get_secret_value(), 0o600)
    helper = run_dir / "api-key-helper"
    _write_private(helper, KEY_HELPER_TEMPLATE.format(key_file=shlex.quote(str(key_file))), 0o700)
    launcher = Launcher(
        path=run_dir / "launch-claude",
        pid_file=run_dir / "cli.pid",
        key_helper=helper,
        marker=f"TMPDIR={env['TMPDIR']}".encode(),
    )
    _write_private(launcher.path, render_launcher(cli, env, launcher.pid_file), 0o700)
    return launcher
