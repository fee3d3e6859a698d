"""The arq worker: runs jobs by run id, keeps a heartbeat, and sweeps runs the queue lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Retry, Worker, func

from bot.clients.gitlab import GitLabNotFound
from bot.clients.retry import RetryableError
from bot.holds import Holds, LocalHolds, RedisHolds
from bot.logs import bind
from bot.queue import RUN_JOB, Queue
from bot.redact import Redactor
from bot.store import runs, status
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import check_current
from bot.store.tasks import TASK_KIND
from bot.triggers import Unreadable
from config.settings import Settings
from config.skills import SkillManifest
from orchestrators import Orchestrator, authorize, graph
from orchestrators.engine import Deferred
from orchestrators.registry import WORKFLOWS
from orchestrators.resources import WorkerContext
from orchestrators.venue import refuse
from shell import services as services_module
from shell.wiring import build_clients, load_manifest

log = logging.getLogger("baton.worker")
LEASE = timedelta(seconds=60)
MAX_DEFER_S = 300.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def _heartbeat(wctx: WorkerContext, run_id: str) -> None:
    while True:
        await asyncio.sleep(max(wctx.settings.run_lease_s / 4, 0.5))
        await runs.touch(wctx.sm, run_id)


def _backoff(run: runs.RunRow, hint: float | None) -> float:
    """Seconds until a deferred run is tried again: the server's hint, else exponential up to 5 min."""
    if hint is not None and hint > 0:
        return min(hint, MAX_DEFER_S)
    return float(min(5 * 2 ** max(run.attempts - 1, 0), MAX_DEFER_S))


def over_cap(attempts: int, cap: int) -> bool:
    """True when a run was claimed more often than the cap allows: give it up instead of running it.

    Every claim counts (deferrals, crashes, expired leases, jobs that ended without an outcome), so a
    run can never be picked up forever; a person's /retry or /revise starts the count again.
    """
    return attempts > max(cap, 1)


def failure_reason(run: runs.RunRow, exc: BaseException) -> str:
    """Why a run failed, in words a person can act on; a GitLab 404 names the project."""
    text = f"{type(exc).__name__}: {exc}"
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, GitLabNotFound):
        seen = seen.__cause__ or seen.__context__
    if seen is not None:
        trigger = run.trigger
        project = getattr(trigger, "project_path", None) or getattr(trigger, "project_id", None)
        where = f" for project {project}" if project else ""
        text = (
            f"GitLab answered 404{where}: {exc}. The project (or its merge request) does not exist "
            "or the bot cannot see it; this is not retried."
        )
    return text[:2000]


async def _gave_up(wctx: WorkerContext, run: runs.RunRow, cap: int) -> str:
    """The reason for a run stopped by the attempt cap, with the last thing that happened to it."""
    activity = (await runs.detail(wctx.sm, run.id))["activity"]
    last = next((a for a in reversed(activity) if a["action"] != "claimed"), None)
    tail = f"; last: {last['action']}: {last['message']}" if last else ""
    return (
        f"gave up after {run.attempts - 1} attempts without an outcome (BATON_MAX_RUN_ATTEMPTS={cap}){tail}"
    )[:2000]


async def _execute(wctx: WorkerContext, run: runs.RunRow, workflows: Mapping[str, Orchestrator]) -> None:
    """Authorize, run the workflow `workflows` has for the run's kind and record its outcome; whatever
    happens, the run leaves `running`."""
    beat = asyncio.create_task(_heartbeat(wctx, run.id))
    cap = max(wctx.settings.max_run_attempts, 1)
    try:
        if isinstance(run.trigger, Unreadable):  # validated once, here: a run never starts on bad input
            message = f"the run's input is not a trigger this version understands ({run.trigger.error})"
            await runs.finish(wctx.sm, run.id, status.FAILED, wctx.name, message)
            log.warning(message)
            return
        if wctx.clients is not None and await _refused(wctx, run, wctx.clients.skills):
            return
        orchestrator = workflows.get(run.kind)
        if orchestrator is None:
            message = f"this version of Baton has no '{run.kind}' workflow yet"
            await runs.finish(wctx.sm, run.id, status.FAILED, wctx.name, message)
            log.warning(message)
            return
        outcome = await orchestrator(wctx, run)
    except (Deferred, RetryableError) as exc:
        if run.attempts >= cap:
            await runs.finish(
                wctx.sm, run.id, status.FAILED, wctx.name, f"gave up after {run.attempts} tries: {exc}"[:2000]
            )
            await _ended(wctx, run)
            return
        delay = _backoff(run, exc.retry_after)
        await runs.requeue(wctx.sm, run.id, wctx.name, f"{exc}; trying again in {delay:.0f} s")
        raise Retry(defer=delay) from exc
    except asyncio.CancelledError:
        await asyncio.shield(
            runs.requeue(wctx.sm, run.id, wctx.name, "worker stopping; run handed back to the queue")
        )
        raise
    except Exception as exc:
        log.exception("run failed")
        await runs.finish(wctx.sm, run.id, status.FAILED, wctx.name, failure_reason(run, exc))
        await _ended(wctx, run)
    else:
        await runs.finish(wctx.sm, run.id, outcome.status, wctx.name, outcome.message, **outcome.flags())
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await asyncio.shield(wctx.holds.release(run.id))  # its costs are recorded: its budget holds go


async def _ended(wctx: WorkerContext, run: runs.RunRow) -> None:
    """A graph's task run that the worker ended itself: the graph takes its next step (it never fails the
    worker: the step is taken again by the next task, /retry or /status)."""
    if run.kind != TASK_KIND or wctx.clients is None:
        return
    try:
        await graph.run_ended(wctx, run.id)
    except Exception:
        log.exception("the graph's step after its task run ended failed")


async def _refused(wctx: WorkerContext, run: runs.RunRow, skills: SkillManifest) -> bool:
    """Refuse a command its author may not use here: one reply saying who can, then done."""
    refused = await authorize.refusal(wctx, run, skills)
    if refused is None:
        return False
    skill, reason = refused
    outcome = await refuse(wctx, run, f"/{skill.name}", reason)
    await runs.finish(wctx.sm, run.id, outcome.status, wctx.name, outcome.message, **outcome.flags())
    return True


async def run_job(ctx: dict[str, Any], run_id: str) -> None:
    """The one job function: claim the run, hand it to its orchestrator, record the outcome."""
    wctx: WorkerContext = ctx["baton"]
    workflows: Mapping[str, Orchestrator] = ctx["workflows"]
    with bind(run_id=run_id, worker=wctx.name):
        run = await runs.claim(wctx.sm, run_id, wctx.name)
        if run is None:
            log.info("run is not active; nothing to do")
            return
        if over_cap(run.attempts, wctx.settings.max_run_attempts):
            reason = await _gave_up(wctx, run, wctx.settings.max_run_attempts)
            await runs.finish(wctx.sm, run_id, status.FAILED, wctx.name, reason)
            log.warning(reason)
            await _ended(wctx, run)
            return
        await _execute(wctx, run, workflows)


async def sweep_once(sm: Any, queue: Queue, grace: timedelta, lease: timedelta = LEASE) -> int:
    """Enqueue every active run that has no job (Redis was down or flushed); release dead claims.

    Returns how many runs were enqueued or released.
    """
    recovered = 0
    for run_id in await runs.active_older_than(sm, grace):
        if not await queue.has_job(run_id):
            recovered += int(await queue.enqueue_run(run_id))
    for run_id in await runs.running_stale(sm, lease):
        await queue.release(run_id)
        await runs.touch(sm, run_id)
        recovered += 1
    return recovered


async def sweep(ctx: dict[str, Any]) -> int:
    wctx: WorkerContext = ctx["baton"]
    grace, lease = (
        timedelta(seconds=wctx.settings.sweep_grace_s),
        timedelta(seconds=wctx.settings.run_lease_s),
    )
    count = await sweep_once(wctx.sm, wctx.queue, grace, lease)
    if count:
        log.info("sweeper recovered %d run(s)", count)
    return count


def _startup(
    settings: Settings, skills: SkillManifest, workflows: Mapping[str, Orchestrator]
) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["workflows"] = workflows
        engine = create_engine(settings.async_database_url, Redactor.from_settings(settings))
        await check_current(engine)
        ctx["engine"] = engine
        sm = sessionmaker(engine)
        clients = None
        try:
            clients = build_clients(settings, sm, skills)
        except (RuntimeError, OSError, ValueError) as exc:
            log.warning("no GitLab/Jira clients; runs that need them will fail: %s", exc)
        redis = ctx["redis"]  # budget holds shared by every worker (bot/holds.py); in process without Redis
        holds: Holds = RedisHolds(redis) if redis is not None else LocalHolds()
        ctx["baton"] = WorkerContext(settings, sm, Queue(ctx["redis"]), worker_name(), clients, holds)
        log.info("worker started", extra={"worker": ctx["baton"].name})

    return on_startup


async def on_shutdown(ctx: dict[str, Any]) -> None:
    if "baton" in ctx and ctx["baton"].clients is not None:
        ctx["baton"].clients.close()
    if "engine" in ctx:
        await ctx["engine"].dispose()


def _sweep_seconds(interval: int) -> set[int]:
    interval = min(max(interval, 1), 60)
    return set(range(0, 60, interval))


def create_worker(
    settings: Settings,
    *,
    skills: SkillManifest | None = None,
    workflows: Mapping[str, Orchestrator] = WORKFLOWS,
    handle_signals: bool = True,
) -> Worker:
    """An arq Worker for these settings (what `baton worker` runs): its jobs run the workflow
    `workflows` has for a run's kind, with the skill manifest `baton worker` loaded at start-up
    (`skills`; else it is loaded here). A manifest naming a workflow `workflows` lacks is refused now
    (SkillError), not when a run of it comes along."""
    if skills is None:
        skills = load_manifest(settings, workflows)
    else:
        skills.check_workflows(workflows.keys())
    redis = RedisSettings.from_dsn(services_module.default_redis_url(settings))
    redis.conn_timeout = 2
    redis.conn_retries = 30
    return Worker(
        functions=[func(run_job, name=RUN_JOB, max_tries=max(20, settings.max_run_attempts + 1))],
        cron_jobs=[
            cron(
                sweep,
                second=_sweep_seconds(settings.sweep_interval_s),
                run_at_startup=True,
                unique=True,
                timeout=60,
            )
        ],
        redis_settings=redis,
        on_startup=_startup(settings, skills, workflows),  # type: ignore[arg-type]
        on_shutdown=on_shutdown,
        job_timeout=settings.job_timeout_s,
        keep_result=0,
        job_completion_wait=settings.shutdown_wait_s,
        max_jobs=4,
        allow_abort_jobs=True,  # /cancel stops a running job
        poll_delay=0.05,
        handle_signals=handle_signals,
    )
