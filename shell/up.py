"""`baton up`: everything a newcomer needs in one process tree (store, Redis, server, worker)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.text import Text

from bot.sandbox.demo.scenario import ScenarioError
from bot.sandbox.stack import SandboxPorts, SandboxStack, baton_environment
from bot.store.engine import create_engine
from bot.store.migrate import upgrade
from config.settings import Settings, SettingsError, check_dashboard, check_secrets
from shell import redis_local

ROLES = ("serve", "worker")


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings.async_database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def _child_env(
    settings: Settings,
    redis_url: str,
    sandbox: dict[str, Any] | None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = dict(os.environ if environ is None else environ)
    env["BATON_REDIS_URL"] = redis_url
    env["BATON_STATE_DIR"] = str(settings.state_dir)
    if sandbox is not None:
        env.update(baton_environment(sandbox))
    return env


def base_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.port}"


def start_sandbox(settings: Settings, console: Console) -> tuple[SandboxStack, dict[str, Any]]:
    stack = SandboxStack(
        settings.state_dir,
        base_url(settings),
        SandboxPorts.from_base(settings.sandbox_port),
        settings.sandbox_scenario,
    )
    config = stack.start()
    console.print(
        f"sandbox: GitLab {config['gitlab']['url']}  Jira {config['jira']['url']}  "
        f"model {config['model']['url']}"
    )
    console.print("  `baton sandbox --print-config` prints every URL, token and secret as JSON")
    return stack, config


def _stop(children: list[subprocess.Popen[bytes]], wait_s: float) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    for child in children:
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def dashboard_access(settings: Settings) -> tuple[dict[str, str], str | None]:
    """The dashboard settings the children get, and the URL to print. Configured on: its URL (sign in
    with BATON_DASHBOARD_TOKEN). Unset in sandbox mode: on, with a token generated for this start (or the
    configured one), and a URL that signs in. Otherwise off: no URL."""
    base = f"{base_url(settings)}/dashboard/"
    if settings.dashboard == "token":
        return {}, base
    if settings.dashboard is not None or not settings.sandbox_mode:
        return {}, None
    if settings.dashboard_token is not None:
        with contextlib.suppress(SettingsError):  # a usable token of one's own is kept
            check_dashboard(settings.model_copy(update={"dashboard": "token"}))
            return {"BATON_DASHBOARD": "token"}, base
    generated = secrets.token_urlsafe(24)
    return {"BATON_DASHBOARD": "token", "BATON_DASHBOARD_TOKEN": generated}, f"{base}?token={generated}"


def _banner(console: Console, settings: Settings, dashboard: str | None) -> None:
    base = base_url(settings)
    console.print(f"[bold green]Baton is starting[/bold green] on {base}")
    if dashboard:
        console.print(f"  dashboard  {dashboard}", soft_wrap=True)
    else:
        console.print("  dashboard  off (BATON_DASHBOARD=token with BATON_DASHBOARD_TOKEN turns it on)")
    console.print(f"  readiness  {base}/readyz    metrics {base}/metrics")
    console.print(f"  webhooks   {base}/webhooks/gitlab   {base}/webhooks/jira")
    console.print(f"  state      {settings.async_database_url}")
    if settings.sandbox_mode:
        console.print(
            "  [yellow]sandbox mode[/yellow]: no GitLab/Jira configured; Baton talks to local simulators. "
            "Try: add the label ai-implement to DEMO-1 through the Jira simulator (see README)."
        )
    console.print("  runs       `baton runs` / `baton show RUN` in another terminal")
    console.print("  Ctrl-C stops everything")


@dataclass
class Started:
    """What `start_all` started: redis-server (if its own), the sandbox, and the `serve`/`worker` children."""

    children: list[subprocess.Popen[bytes]]
    redis_process: subprocess.Popen[bytes] | None = None
    stack: SandboxStack | None = None
    sandbox: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)
    dashboard_url: str | None = None  # where the dashboard is (in sandbox mode, a link that signs in)

    def stop(self, wait_s: float) -> None:
        """Stop the children (SIGTERM, then SIGKILL after `wait_s`), then Redis, then the sandbox."""
        _stop(self.children, wait_s)
        if self.redis_process is not None:
            _stop([self.redis_process], 5)
        if self.stack is not None:
            self.stack.stop()

    def exited(self) -> list[tuple[str, int]]:
        """The children that are no longer running, as `(role, exit code)`."""
        pairs = zip(ROLES, self.children, strict=False)
        return [(role, child.returncode) for role, child in pairs if child.poll() is not None]


def _spawn(role: str, env: dict[str, str], log_dir: Path | None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "shell.cli", role]
    if log_dir is None:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{role}.log").open("ab") as log:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def start_all(
    settings: Settings,
    console: Console,
    *,
    environ: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> Started:
    """Migrate, start Redis (unless configured) and the sandbox (in sandbox mode), then `serve` + `worker`.

    The children get `environ` (default: this process's environment) plus what was started; with
    `log_dir` their output goes to `<log_dir>/serve.log` and `worker.log` instead of this terminal.
    Whatever started is stopped again if a later part fails.
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_migrate(settings))
    started = Started(children=[])
    try:
        redis_url = settings.redis_url
        if redis_url is None:
            started.redis_process, redis_url = redis_local.start(settings.state_dir / "redis")
            console.print(f"started redis-server at {redis_url} (data in {settings.state_dir / 'redis'})")
        if settings.sandbox_mode:
            started.stack, started.sandbox = start_sandbox(settings, console)
        started.env = _child_env(settings, redis_url, started.sandbox, environ)
        dashboard_env, started.dashboard_url = dashboard_access(settings)
        started.env.update(dashboard_env)
        for role in ROLES:
            started.children.append(_spawn(role, started.env, log_dir))
    except BaseException:
        started.stop(5)
        raise
    return started


def run_up(settings: Settings, console: Console) -> int:
    """Start everything and supervise it until Ctrl-C/SIGTERM or a child exits; returns an exit code."""
    try:
        check_secrets(settings)
    except SettingsError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        return 2
    try:
        started = start_all(settings, console)
    except ScenarioError as exc:
        console.print(Text(f"sandbox scenario error: {exc}", style="red"))
        return 2
    children = started.children
    _banner(console, settings, started.dashboard_url)
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        started.stop(settings.shutdown_wait_s + 5)
    failed = [child.returncode for child in children if child.returncode not in (0, -signal.SIGTERM, None)]
    return 0 if stopping or not failed else 1
