"""A per-run launcher for the Claude Code CLI: new session, explicit environment, inside the sandbox."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.agent.env import SDK_PROTOCOL

LAUNCHER_TEMPLATE = '''#!{python} -IS
"""Baton agent launcher: own session, explicit environment, then exec the (confined) Claude Code CLI."""
import json, os, sys
os.setsid()
with open({pid_file!r}, "w") as handle:
    handle.write(str(os.getpid()))
env = json.loads({env_json!r})
env.update({{k: v for k, v in os.environ.items() if k in {passthrough!r}}})
argv = json.loads({argv_json!r})
os.execve(argv[0], [*argv, *sys.argv[1:]], env)
'''


@dataclass(frozen=True)
class Launcher:
    """One run's launcher (the `cli_path`), its pid file, and the environment entry (`marker`) that
    every process of the run inherits, so stragglers can be found and ended."""

    path: Path
    pid_file: Path
    marker: bytes

    def pid(self) -> int | None:
        """The launcher's pid (it execs the sandbox, then the CLI): also its process group and session."""
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None


def bundled_cli() -> Path:
    """The Claude Code binary that ships inside claude-agent-sdk."""
    import claude_agent_sdk

    return Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"


def render_launcher(
    argv: Sequence[str], env: dict[str, str], pid_file: Path, python: str = sys.executable
) -> str:
    """The launcher script text. `argv` starts the CLI (bubblewrap's argv ending in the CLI's path);
    the SDK's arguments are appended. It holds no secret: the model key never leaves the relay."""
    return LAUNCHER_TEMPLATE.format(
        python=python,
        pid_file=str(pid_file),
        env_json=json.dumps(env),
        passthrough=tuple(SDK_PROTOCOL),
        argv_json=json.dumps(list(argv)),
    )


def write_launcher(run_dir: Path, argv: Sequence[str], env: dict[str, str]) -> Launcher:
    """Write the launcher into the worker's private run dir (never visible inside the sandbox)."""
    launcher = Launcher(
        path=run_dir / "launch-claude",
        pid_file=run_dir / "cli.pid",
        marker=f"TMPDIR={env['TMPDIR']}".encode(),
    )
    fd = os.open(launcher.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(render_launcher(argv, env, launcher.pid_file))
    return launcher
