"""The `baton` command line: up, serve, worker, migrate, runs, show, demo, wiki."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot import logs
from bot.containment.harden import no_dump
from bot.redact import Redactor
from bot.store import runs as run_queries
from bot.store import tasks as task_queries
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import SchemaOutdated, check_current, upgrade
from config.settings import Settings, SettingsError, load_settings
from config.skills import SkillError, SkillManifest
from shell.wiki_cli import wiki_app

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Baton: tickets to Claude Code, with approval."
)
console = Console(soft_wrap=True)  # URLs and ids stay on one line when the output is not a terminal
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def settings_or_exit(check: bool = True) -> Settings:
    try:
        return load_settings(os.environ, check=check)
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def manifest_or_exit(settings: Settings) -> SkillManifest:
    """The skill manifest, loaded once as Baton starts and checked against the workflow table: a skill
    naming an unknown workflow (or an unreadable BATON_SKILLS_FILE) stops the start, saying which."""
    from shell.wiring import load_manifest

    try:
        return load_manifest(settings)
    except (SkillError, OSError) as exc:
        err.print(Text.assemble(("configuration error: ", "red"), str(exc)))
        raise typer.Exit(2) from None


def with_store(settings: Settings, body: Callable[[Any], Awaitable[T]]) -> T:
    """Run `body(sessionmaker)` against the configured store, failing cleanly if it is unusable."""

    async def main() -> T:
        engine = create_engine(settings.async_database_url, Redactor.from_settings(settings))
        try:
            await check_current(engine)
            return await body(sessionmaker(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except SchemaOutdated as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    except run_queries.RunNotFound as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except OSError as exc:
        err.print(f"[red]state store unavailable:[/red] {type(exc).__name__}")
        raise typer.Exit(3) from None


@app.command()
def migrate() -> None:
    """Create or upgrade the state store's schema."""
    settings = settings_or_exit(check=False)

    async def main() -> None:
        engine = create_engine(settings.async_database_url, Redactor.from_settings(settings))
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())
    console.print("schema is up to date")


@app.command()
def serve() -> None:
    """Run the webhook server (uvicorn) on BATON_HOST:BATON_PORT."""
    import uvicorn

    from shell.app import create_app

    settings = settings_or_exit()
    skills = manifest_or_exit(settings)
    logs.configure(settings.log_level, redactor=Redactor.from_settings(settings))
    no_dump()  # the webhook secrets live in its environment and memory
    with_store(settings, lambda _sm: asyncio.sleep(0))
    uvicorn.run(
        create_app(settings, skills=skills),
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=False,
        access_log=False,
    )


@app.command()
def worker() -> None:
    """Run an arq worker that executes runs and sweeps the ones the queue lost."""
    import logging
    import time

    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from shell.worker import create_worker

    settings = settings_or_exit()
    skills = manifest_or_exit(settings)
    logs.configure(settings.log_level, redactor=Redactor.from_settings(settings))
    no_dump()  # its environment and memory hold the tokens: closed even to processes of its own uid
    with_store(settings, lambda _sm: asyncio.sleep(0))
    while True:  # a Redis restart must not take the worker down: reconnect and carry on
        try:
            create_worker(settings, skills=skills).run()
            return
        except (RedisConnectionError, RedisTimeoutError, ConnectionError) as exc:
            log = logging.getLogger("baton.worker")
            log.warning("lost Redis (%s); reconnecting in 2 s", type(exc).__name__)
            time.sleep(2)


@app.command()
def up() -> None:
    """Migrate, start Redis if none is configured, and run the server and a worker together."""
    from shell.up import run_up

    settings = settings_or_exit(check=False)
    manifest_or_exit(settings)  # refused here, before anything starts, rather than by both children
    raise typer.Exit(run_up(settings, console))


@app.command()
def sandbox(
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print URLs, tokens and secrets as JSON.")
    ] = False,
) -> None:
    """Run the local GitLab/Jira simulators and the scripted model (`baton up` starts them too)."""
    import signal
    import threading

    from bot.sandbox.stack import SandboxPorts, current_config
    from shell.up import base_url, start_sandbox

    settings = settings_or_exit(check=False)
    baton_url = base_url(settings)
    if print_config:
        config = current_config(settings.state_dir, baton_url, SandboxPorts.from_base(settings.sandbox_port))
        sys.stdout.write(json.dumps(config, indent=2) + "\n")
        return
    stack, _config = start_sandbox(settings, console)
    console.print(f"webhooks go to {baton_url}; Ctrl-C stops")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


def _with_ledger(settings: Settings, body: Callable[[Any], Awaitable[T]]) -> T:
    from bot.store.effects import StoreEffectLedger

    async def main() -> T:
        engine = create_engine(settings.async_database_url, Redactor.from_settings(settings))
        try:
            return await body(StoreEffectLedger(sessionmaker(engine)))
        finally:
            await engine.dispose()

    return asyncio.run(main())


@app.command()
def doctor() -> None:
    """Check the store, Redis, the agent, the project mapping, GitLab and Jira; say what to fix."""
    from shell.onboarding import doctor as run_checks

    settings = settings_or_exit()
    checks = _with_ledger(settings, lambda ledger: run_checks(settings, ledger))
    table = Table("check", "", "detail", "how to fix")
    for check in checks:
        mark = Text("ok", style="green") if check.ok else Text("FAIL", style="red")
        table.add_row(Text(check.name), mark, Text(check.detail), Text("" if check.ok else check.fix))
    console.print(table)
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


hooks_app = typer.Typer(no_args_is_help=True, help="Webhook registration.")
app.add_typer(hooks_app, name="hooks")
app.add_typer(wiki_app, name="wiki")


@hooks_app.command("install")
def hooks_install() -> None:
    """Register Baton's webhook on every mapped GitLab project; print the Jira webhook to create."""
    from shell.onboarding import install_gitlab_hooks, jira_webhook_instructions

    settings = settings_or_exit()
    for line in _with_ledger(settings, lambda ledger: install_gitlab_hooks(settings, ledger)):
        console.print(Text(line))
    console.print(Text(jira_webhook_instructions(settings)))


@app.command("runs")
def list_runs(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many runs, newest first.")] = 50,
    state: Annotated[str | None, typer.Option("--status", help="Only runs in this status.")] = None,
) -> None:
    """List runs: id, kind, subject, status, created, updated."""
    settings = settings_or_exit(check=False)
    rows = with_store(settings, lambda sm: run_queries.listing(sm, limit, state))
    if as_json:
        sys.stdout.write(json.dumps([row.summary() for row in rows], indent=2) + "\n")
        return
    table = Table("id", "kind", "subject", "status", "created", "updated")
    for row in rows:
        cells = (row.id[:12], row.kind, row.subject, row.status, _ts(row.created), _ts(row.updated))
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table if rows else "no runs yet")


@app.command()
def retry(
    run: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    phase: Annotated[
        str | None, typer.Option(help="Re-run from this phase (default: the first unfinished).")
    ] = None,
) -> None:
    """Put a failed or waiting run back in the queue, from its failed phase or from --phase."""
    from redis.exceptions import RedisError

    from bot.queue import Queue, connect
    from orchestrators.engine import reset_from
    from orchestrators.implement import WORKFLOW
    from shell.services import default_redis_url

    settings = settings_or_exit(check=False)

    async def body(sm: Any) -> str:
        run_id = await run_queries.resolve_id(sm, run)
        detail = await run_queries.detail(sm, run_id)
        start = phase or next(
            (p["name"] for p in detail["phases"] if p["status"] != "done"), WORKFLOW.names[0]
        )
        await reset_from(sm, WORKFLOW, run_id, start)
        if not await run_queries.reopen(sm, run_id, "cli", f"baton retry from {start}"):
            raise run_queries.RunNotFound(
                f"run {run_id[:12]} is {detail['status']}; only a stopped run can be retried"
            )
        queue = Queue(connect(default_redis_url(settings)))
        try:
            await queue.enqueue_run(run_id)
        except (OSError, RedisError):
            console.print("Redis is unreachable; the sweeper will enqueue the run when it is back.")
        finally:
            await queue.close()
        return f"run {run_id[:12]} queued again from {start}"

    try:
        console.print(Text(with_store(settings, body)))
    except ValueError as exc:
        err.print(Text(str(exc)))
        raise typer.Exit(1) from None


@app.command()
def show(
    run: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one run: its phases (status, duration, tokens, cost), the wiki facts its brief used, and its
    activity."""
    settings = settings_or_exit(check=False)

    async def body(sm: Any) -> dict[str, Any]:
        run_id = await run_queries.resolve_id(sm, run)
        graph = [task_queries.shown(t) for t in await task_queries.of_graph(sm, run_id)]
        return {**await run_queries.detail(sm, run_id), **({"graph": graph} if graph else {})}

    detail = with_store(settings, body)
    if as_json:
        sys.stdout.write(json.dumps(detail, indent=2) + "\n")
        return
    _print_detail(detail)


def _ts(value: Any) -> str:
    return str(value.strftime("%Y-%m-%d %H:%M:%S"))


def _mechanics(phase: dict[str, Any]) -> str:
    """Baton's own steps in the phase, e.g. `fetch 0.12 · workspace 0.31 · brief 0.02`."""
    steps = phase.get("mechanics_s") or {}
    return " · ".join(f"{name} {seconds:.2f}" for name, seconds in steps.items()) or "-"


def _print_detail(detail: dict[str, Any]) -> None:
    headline = f"{detail['id']}  {detail['kind']} on {detail['subject']}  [{detail['status']}]"
    console.print(Text(headline, style="bold"))
    console.print(
        Text(f"created {detail['created']}  updated {detail['updated']}  attempts {detail['attempts']}")
    )
    if detail["error"]:
        console.print(Text(f"error: {detail['error']}", style="red"))
    phases = Table(
        "phase", "status", "attempts", "duration", "agent", "repo cmd", "mechanical", "tokens in/out", "cost"
    )
    for p in detail["phases"]:
        duration = f"{p['duration_s']:.1f}s" if p["duration_s"] is not None else "-"
        tokens = f"{p['input_tokens']}/{p['output_tokens']}"
        inside = [f"{p.get(key) or 0:.2f}s" if p.get(key) else "-" for key in ("agent_s", "commands_s")]
        cells = (p["name"], p["status"], str(p["attempts"]), duration, *inside, _mechanics(p))
        phases.add_row(*(Text(cell) for cell in (*cells, tokens, f"${p['cost_usd']:.4f}")))
    console.print(phases if detail["phases"] else "no phases recorded")
    if detail.get("graph"):
        graph = Table("task", "repository", "status", "depends on", "duration", "cost")
        for t in detail["graph"]:
            duration = f"{t['duration_s']:.1f}s" if t["duration_s"] is not None else "-"
            row = (t["task"], t["repository"], t["status"], ",".join(t["depends_on"]), duration)
            graph.add_row(*(Text(str(cell)) for cell in (*row, f"${t['cost_usd']:.4f}")))
        console.print(graph)
    if detail.get("knowledge"):
        facts = Table("team knowledge in the brief", "status", "kind", "title")
        for f in detail["knowledge"]:
            facts.add_row(*(Text(f[key]) for key in ("path", "status", "kind", "title")))
        console.print(facts)
    activity = Table("at", "actor", "action", "message")
    for a in detail["activity"]:
        activity.add_row(*(Text(a[key]) for key in ("at", "actor", "action", "message")))
    console.print(activity)


@app.command()
def demo(
    scenario: Annotated[
        Path | None,
        typer.Option("--scenario", help="Scenario file (docs/scenarios.md); default: the multiply demo."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds the whole demo may take before it fails.")
    ] = 300.0,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep everything running after the last step, until Ctrl-C.")
    ] = False,
) -> None:
    """Play a ticket end to end in the sandbox: label, status, proposal, /approve, MR; exit 1 on a miss."""
    from bot.sandbox.demo.command import run_demo

    raise typer.Exit(run_demo(scenario, timeout, Console(soft_wrap=True), keep=keep))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
