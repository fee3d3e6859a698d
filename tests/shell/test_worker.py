"""The worker in-process against real Redis and the store: claim, outcome, sweep, lease, shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from sqlalchemy import update

from bot import triggers
from bot.clients.gitlab import GitLabNotFound
from bot.store import inbox, runs, status
from bot.store.engine import utcnow
from bot.store.tables import Run
from bot.triggers import TicketLabelled
from handlers.actions import Enqueue
from orchestrators import Orchestrator, Outcome
from orchestrators.engine import PhaseFailed
from orchestrators.registry import WORKFLOWS
from orchestrators.resources import WorkerContext
from shell.services import Services
from shell.worker import create_worker, failure_reason, over_cap, sweep_once

Body = Callable[[WorkerContext, runs.RunRow], Awaitable[Outcome]]


async def new_run(services: Services, kind: str = "probe", enqueue: bool = True) -> str:
    action = Enqueue(
        kind=kind,
        subject="jira:DEMO-1",
        origin=f"test:{utcnow().timestamp()}:{kind}",
        input=TicketLabelled(issue_key="DEMO-1", issue_id="10001"),
    )
    incoming = inbox.Incoming("jira", f"key-{utcnow().timestamp()}", "jira:issue_updated", {}, "jira:tester")
    recorded = await inbox.record(services.sm, incoming, action)
    assert recorded.run_id is not None
    if enqueue:
        assert await services.queue.enqueue_run(recorded.run_id)
    return recorded.run_id


@pytest.fixture
def table() -> dict[str, Orchestrator]:
    """The workflow table this test's worker is handed: Baton's own, plus what the test registers."""
    return dict(WORKFLOWS)


@pytest.fixture
async def worker(services: Services, table: dict[str, Orchestrator]) -> AsyncIterator[Worker]:
    settings = services.settings.model_copy(update={"shutdown_wait_s": 1})
    w = create_worker(settings, workflows=table, handle_signals=False)
    task = asyncio.create_task(w.async_run())
    yield w
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await w.close()


async def wait_status(services: Services, run_id: str, wanted: str, timeout_s: float = 15) -> runs.RunRow:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        row = await runs.get(services.sm, run_id)
        if row.status == wanted:
            return row
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run stayed {row.status}, wanted {wanted}")
        await asyncio.sleep(0.05)


def register(table: dict[str, Orchestrator], kind: str, body: Body) -> None:
    table[kind] = body


async def test_orchestrator_outcome_is_recorded(
    services: Services, worker: Worker, table: dict[str, Orchestrator]
) -> None:
    seen: list[str] = []

    async def probe(wctx: WorkerContext, run: runs.RunRow) -> Outcome:
        seen.append(run.id)
        return Outcome(status.WAITING, "proposal posted; waiting for /approve")

    register(table, "probe", probe)
    run_id = await new_run(services)
    row = await wait_status(services, run_id, status.WAITING)
    assert seen == [run_id] and row.attempts == 1
    detail = await runs.detail(services.sm, run_id)
    assert [a["action"] for a in detail["activity"]] == ["received", "claimed", "waiting"]


async def test_orchestrator_exception_fails_the_run_with_the_reason(
    services: Services, worker: Worker, table: dict[str, Orchestrator]
) -> None:
    async def broken(wctx: WorkerContext, run: runs.RunRow) -> Outcome:
        raise RuntimeError("the repository has no tests")

    register(table, "probe", broken)
    row = await wait_status(services, await new_run(services), status.FAILED)
    assert row.error == "RuntimeError: the repository has no tests"


async def test_a_run_whose_input_is_no_trigger_fails_at_claim_and_never_starts(
    services: Services, worker: Worker, table: dict[str, Orchestrator]
) -> None:
    started: list[str] = []

    async def probe(wctx: WorkerContext, run: runs.RunRow) -> Outcome:
        started.append(run.id)
        return Outcome(status.SUCCEEDED, "ran")

    register(table, "probe", probe)
    run_id = await new_run(services, enqueue=False)
    async with services.sm.begin() as session:  # a row written by another version, or tampered with
        await session.execute(
            update(Run).where(Run.id == run_id).values(input={"trigger": "thread_command", "mr_iid": "x"})
        )
    assert await services.queue.enqueue_run(run_id)
    row = await wait_status(services, run_id, status.FAILED)
    assert started == []
    assert row.error is not None and row.error.startswith("the run's input is not a trigger")
    assert "project_id" in row.error or "mr_iid" in row.error


async def test_outcome_flags_are_recorded_with_the_run(
    services: Services, worker: Worker, table: dict[str, Orchestrator]
) -> None:
    async def asks(wctx: WorkerContext, run: runs.RunRow) -> Outcome:
        return Outcome(status.WAITING, "needs-info: 2 question(s) posted", needs_info=True)

    register(table, "probe", asks)
    run_id = await new_run(services)
    await wait_status(services, run_id, status.WAITING)
    last = (await runs.detail(services.sm, run_id))["activity"][-1]
    assert (last["action"], last["data"]) == ("waiting", {"needs_info": True})


async def test_unknown_kind_fails_clearly(services: Services, worker: Worker) -> None:
    row = await wait_status(services, await new_run(services, kind="teleport"), status.FAILED)
    assert row.error == "this version of Baton has no 'teleport' workflow yet"


async def test_finished_runs_are_not_run_again(
    services: Services, worker: Worker, table: dict[str, Orchestrator]
) -> None:
    calls: list[str] = []

    async def once(wctx: WorkerContext, run: runs.RunRow) -> Outcome:
        calls.append(run.id)
        return Outcome(status.SUCCEEDED, "done")

    register(table, "probe", once)
    run_id = await new_run(services)
    await wait_status(services, run_id, status.SUCCEEDED)
    assert await services.queue.enqueue_run(run_id)  # a stray duplicate job (at-least-once delivery)
    await asyncio.sleep(1.0)
    assert calls == [run_id]


async def test_sweeper_re_enqueues_runs_lost_by_a_redis_flush(
    services: Services, redis_server: object
) -> None:
    lost = await new_run(services)
    never_enqueued = await new_run(services, enqueue=False)
    redis_server.flush()  # type: ignore[attr-defined]
    assert not await services.queue.has_job(lost)
    recovered = await sweep_once(services.sm, services.queue, grace=timedelta(0))
    assert recovered == 2
    assert await services.queue.has_job(lost) and await services.queue.has_job(never_enqueued)
    assert await sweep_once(services.sm, services.queue, grace=timedelta(0)) == 0  # idempotent


async def test_sweeper_leaves_fresh_and_waiting_runs_alone(services: Services) -> None:
    fresh = await new_run(services, enqueue=False)
    waiting = await new_run(services, enqueue=False)
    async with services.sm.begin() as session:
        await session.execute(update(Run).where(Run.id == waiting).values(status=status.WAITING))
    assert await sweep_once(services.sm, services.queue, grace=timedelta(minutes=5)) == 0
    assert not await services.queue.has_job(fresh) and not await services.queue.has_job(waiting)


async def test_sweeper_releases_a_dead_workers_claim(services: Services) -> None:
    run_id = await new_run(services)
    async with services.sm.begin() as session:
        stale = utcnow() - timedelta(minutes=5)
        await session.execute(
            update(Run).where(Run.id == run_id).values(status=status.RUNNING, updated_at=stale)
        )
    await services.queue.redis.set(in_progress_key_prefix + run_id, b"1")
    assert (
        await sweep_once(services.sm, services.queue, grace=timedelta(minutes=10), lease=timedelta(minutes=1))
        == 1
    )
    assert not await services.queue.redis.exists(in_progress_key_prefix + run_id)
    assert await services.queue.has_job(run_id)


async def test_sigterm_requeues_a_run_that_does_not_finish_in_time(
    services: Services, worker: Worker, table: dict[str, Orchestrator]
) -> None:
    started = asyncio.Event()

    async def slow(wctx: WorkerContext, run: runs.RunRow) -> Outcome:
        started.set()
        await asyncio.sleep(60)
        return Outcome(status.SUCCEEDED, "unreachable")

    register(table, "probe", slow)
    run_id = await new_run(services)
    await asyncio.wait_for(started.wait(), 15)
    worker.handle_sig_wait_for_completion(signal.SIGTERM)
    row = await wait_status(services, run_id, status.QUEUED, timeout_s=10)
    assert row.attempts == 1
    assert await services.queue.has_job(run_id)  # arq kept the job for the next worker
    detail = await runs.detail(services.sm, run_id)
    assert detail["activity"][-1]["action"] == "requeued"


async def test_sigterm_lets_a_short_run_finish(
    services: Services, worker: Worker, table: dict[str, Orchestrator]
) -> None:
    started = asyncio.Event()

    async def short(wctx: WorkerContext, run: runs.RunRow) -> Outcome:
        started.set()
        await asyncio.sleep(0.3)
        return Outcome(status.SUCCEEDED, "finished during shutdown")

    register(table, "probe", short)
    run_id = await new_run(services)
    await asyncio.wait_for(started.wait(), 15)
    worker.handle_sig_wait_for_completion(signal.SIGTERM)
    await wait_status(services, run_id, status.SUCCEEDED, timeout_s=10)


async def test_a_transient_outage_defers_the_run_instead_of_failing_it(
    services: Services, worker: Worker, table: dict[str, Orchestrator]
) -> None:
    from bot.clients.retry import RetryableError

    calls: list[int] = []

    async def flaky(wctx: WorkerContext, run: runs.RunRow) -> Outcome:
        calls.append(run.attempts)
        if len(calls) == 1:
            raise RetryableError("GitLab answered 503", retry_after=0.5)
        return Outcome(status.SUCCEEDED, "done after the outage")

    register(table, "probe", flaky)
    run_id = await new_run(services)
    row = await wait_status(services, run_id, status.SUCCEEDED, timeout_s=20)
    assert calls == [1, 2] and row.attempts == 2
    actions = [a["action"] for a in (await runs.detail(services.sm, run_id))["activity"]]
    assert actions == ["received", "claimed", "requeued", "claimed", "succeeded"]


@pytest.mark.parametrize(
    ("attempts", "cap", "over"),
    [
        (1, 12, False),  # the first pick-up
        (12, 12, False),  # the last one allowed
        (13, 12, True),  # one more than the cap: given up, not run
        (40, 12, True),
        (1, 1, False),
        (2, 1, True),
        (1, 0, False),  # a cap below 1 still lets a run be tried once
        (2, 0, True),
    ],
)
def test_attempt_cap(attempts: int, cap: int, over: bool) -> None:
    assert over_cap(attempts, cap) is over


def test_a_gitlab_404_names_the_project_even_behind_a_phase_failure() -> None:
    row = runs.RunRow(
        "r1", "remediate", "gitlab:ghost/gone!1", status.RUNNING, 1, None,
        triggers.parse({"project_id": 999, "project_path": "ghost/gone", "mr_iid": 1, "note_id": 2}),
        utcnow(), utcnow(),
    )  # fmt: skip
    try:
        try:
            raise GitLabNotFound("GET merge request: HTTP 404 404 Project Not Found", 404)
        except GitLabNotFound as inner:
            raise PhaseFailed("phase assemble failed: GitLabNotFound: ...") from inner
    except PhaseFailed as exc:
        reason = failure_reason(row, exc)
    assert reason.startswith("GitLab answered 404 for project ghost/gone: phase assemble failed")
    assert "not retried" in reason
    assert failure_reason(row, RuntimeError("boom")) == "RuntimeError: boom"


@pytest.fixture
async def capped_worker(services: Services, table: dict[str, Orchestrator]) -> AsyncIterator[Worker]:
    settings = services.settings.model_copy(update={"shutdown_wait_s": 1, "max_run_attempts": 3})
    w = create_worker(settings, workflows=table, handle_signals=False)
    task = asyncio.create_task(w.async_run())
    yield w
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await w.close()


async def test_a_run_picked_up_more_often_than_the_cap_is_failed_with_the_reason(
    services: Services, capped_worker: Worker, table: dict[str, Orchestrator]
) -> None:
    calls: list[str] = []

    async def probe(wctx: WorkerContext, run: runs.RunRow) -> Outcome:
        calls.append(run.id)
        return Outcome(status.SUCCEEDED, "unreachable")

    register(table, "probe", probe)
    run_id = await new_run(services, enqueue=False)
    async with services.sm.begin() as session:  # three pick-ups that never reached an outcome
        await session.execute(update(Run).where(Run.id == run_id).values(attempts=3))
        await runs.add_activity(session, run_id, "w1", "requeued", "lease expired; worker w1 stopped beating")
    assert await services.queue.enqueue_run(run_id)
    row = await wait_status(services, run_id, status.FAILED)
    assert calls == [] and row.attempts == 4
    assert row.error is not None and row.error.startswith("gave up after 3 attempts without an outcome")
    assert "BATON_MAX_RUN_ATTEMPTS=3" in row.error and "lease expired" in row.error


async def test_a_run_deferred_again_and_again_fails_at_the_cap(
    services: Services, capped_worker: Worker, table: dict[str, Orchestrator]
) -> None:
    from bot.clients.retry import RetryableError

    calls: list[int] = []

    async def down(wctx: WorkerContext, run: runs.RunRow) -> Outcome:
        calls.append(run.attempts)
        raise RetryableError("GitLab answered 503", retry_after=0.1)

    register(table, "probe", down)
    row = await wait_status(services, await new_run(services), status.FAILED, timeout_s=20)
    assert calls == [1, 2, 3] and row.attempts == 3
    assert row.error == "gave up after 3 tries: GitLab answered 503"


async def test_a_persons_retry_starts_the_attempt_count_afresh(services: Services) -> None:
    run_id = await new_run(services, enqueue=False)
    async with services.sm.begin() as session:
        await session.execute(
            update(Run).where(Run.id == run_id).values(status=status.FAILED, attempts=12, error="x")
        )
    assert await runs.reopen(services.sm, run_id, "alice", "/retry")
    row = await runs.get(services.sm, run_id)
    assert (row.status, row.attempts, row.error) == (status.QUEUED, 0, None)
