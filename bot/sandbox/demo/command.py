"""`baton demo`: play a scenario end to end in the sandbox, saying at each step what to look at.

A person labels the ticket; Baton acknowledges it and keeps one status comment; it proposes a change;
the approver replies `/approve`; Baton pushes the branch and opens the merge request. Everything runs
in `<state dir>/demo` with its own Redis, SQLite file and simulators; every wait is bounded by one
overall deadline, and the first step that does not happen stops everything with exit code 1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.text import Text

import config
from bot.sandbox.demo.multi import MultiDemo
from bot.sandbox.demo.scenario import TICKET_KEY, ScenarioError, load_demo_scenario
from bot.sandbox.demo.steps import Demo, DemoFailed
from bot.sandbox.stack import DEFAULT_SCENARIO
from config.settings import DEFAULT_STATE_DIR, load_settings
from shell.redis_local import RedisStartError, free_port
from shell.up import start_all

DEFAULT_TIMEOUT_S = 300.0
STOP_WAIT_S = 10.0
MARKER = ".baton-demo"
KEPT_SETTINGS = ("BATON_LOG_LEVEL",)
PROJECTS_FILE = Path(config.__file__).resolve().with_name("projects.example.yaml")  # shipped with the package


def demo_state_dir(environ: Mapping[str, str]) -> Path:
    """`<BATON_STATE_DIR or .baton>/demo`, emptied first (only when an earlier demo made it)."""
    root = Path(environ.get("BATON_STATE_DIR") or DEFAULT_STATE_DIR).resolve() / "demo"
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise ScenarioError(f"{root} exists and was not made by `baton demo`; move it away first")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).touch()
    return root


def demo_environ(base: Mapping[str, str], state_dir: Path, scenario: Path, port: int) -> dict[str, str]:
    """The demo processes' environment: none of the user's Baton settings but the log level."""
    env = {k: v for k, v in base.items() if not k.startswith("BATON_") or k in KEPT_SETTINGS}
    env.update(
        {
            "BATON_STATE_DIR": str(state_dir),
            "BATON_DATABASE_URL": f"sqlite:///{state_dir / 'baton.db'}",
            "BATON_HOST": "127.0.0.1",
            "BATON_PORT": str(port),
            "BATON_SANDBOX": "1",
            "BATON_SANDBOX_PORT": "0",
            "BATON_SANDBOX_SCENARIO": str(scenario),
            "BATON_PROJECTS_FILE": str(PROJECTS_FILE),
            "BATON_SHUTDOWN_WAIT_S": "5",
        }
    )
    return env


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _report_failure(console: Console, failure: DemoFailed) -> None:
    headline = f"FAILED at step {failure.step} ({failure.title}): {failure.reason}"
    console.print(Text(headline, style="bold red"), soft_wrap=True)
    console.print(Text("last seen:"))
    for line in failure.last_seen:
        console.print(Text(f"  {line}"), soft_wrap=True)


def _linger(console: Console) -> None:
    console.print(Text("everything keeps running so you can look around; Ctrl-C stops it"))
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()


def _play(demo: Demo, console: Console, keep: bool) -> int:
    try:
        demo.play()
        code = 0
    except DemoFailed as failure:
        _report_failure(console, failure)
        code = 1
    if keep:
        _linger(console)
    return code


def run_demo(
    scenario: Path | None,
    timeout_s: float,
    console: Console,
    *,
    keep: bool = False,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Start Baton and the sandbox in `<state dir>/demo`, play the scenario, stop everything; exit code."""
    base = os.environ if environ is None else environ
    path = (scenario or DEFAULT_SCENARIO).resolve()
    try:
        world = load_demo_scenario(path)
        state_dir = demo_state_dir(base)
    except ScenarioError as exc:
        console.print(Text(f"scenario error: {exc}", style="red"), soft_wrap=True)
        return 2
    env = demo_environ(base, state_dir, path, free_port())
    settings = load_settings(env)
    title = f"Baton demo: {path.name}, ticket {TICKET_KEY} {world.ticket.summary!r}"
    console.print(Text(title, style="bold"), soft_wrap=True)
    console.print(Text(f"  state in {state_dir} (kept afterwards for `baton show`)"), soft_wrap=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        started = start_all(settings, console, environ=env, log_dir=state_dir / "logs")
        try:
            several = world.several_repositories and not world.expect.needs_info
            demo = (MultiDemo if several else Demo)(world, settings, started, console, timeout_s)
            try:
                return _play(demo, console, keep)
            finally:
                demo.close()
        finally:
            started.stop(STOP_WAIT_S)
    except (RedisStartError, OSError, RuntimeError) as exc:
        console.print(Text(f"FAILED at step 0 (start): {exc}", style="bold red"), soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print(Text("interrupted; everything stopped", style="yellow"))
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
