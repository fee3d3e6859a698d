"""A CLI started before its prompt (bot/agent/runner.py `Prestarted`), with the real CLI and sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.agent.process import alive
from bot.agent.result import AgentResult
from bot.agent.runner import Prestarted, run_agent
from bot.sandbox.model_server import ModelServer
from tests.agent.conftest import ServerFactory, git, make_request
from tests.agent.test_runner import HELLO_CHECK, Plan, processes_in, wait_for_processes

PROMPT = "BATON-PLAN the ticket"


async def waiting_planner(worktree: Path, server: ModelServer, **extra: Any) -> tuple[Prestarted, set[int]]:
    """A planner call prestarted in `worktree`, once its CLI's processes are up (their pids)."""
    warm = Prestarted(make_request("planner", "", worktree, server, output_model=Plan, **extra))
    return warm, await wait_for_processes(worktree, timeout_s=20.0)


async def test_a_prestarted_call_waits_for_its_prompt_then_answers_it(
    worktree: Path, model_server: ServerFactory
) -> None:
    server = model_server("plan.yaml")
    warm, started = await waiting_planner(worktree, server)
    await asyncio.sleep(0.5)  # the CLI is up; without a prompt it must not call the model

    assert started, "the CLI did not start before its prompt"
    assert server.log.messages() == []
    result = await warm.ask(PROMPT)

    assert result is not None and not result.is_error, result and result.error
    assert result.output(Plan).summary == "Add a hello module"
    assert result.worktree_changed is False
    first = server.log.messages()[0].body["messages"][0]
    assert PROMPT in str(first["content"])
    assert not processes_in(worktree)


async def test_a_prestarted_cli_tells_the_model_nothing_of_the_worktree_as_it_was_at_its_start(
    worktree: Path, model_server: ServerFactory
) -> None:
    """The CLI would put a git status snapshot (branch, changed files) taken at its start in the system
    prompt; a prestarted CLI's start is before its worktree is ready, so Baton turns that off."""
    server = model_server("plan.yaml")
    git(worktree, "checkout", "-q", "-b", "stale-branch-marker")
    (worktree / "LEFT-BY-AN-EARLIER-RUN.txt").write_text("x\n")
    warm, _ = await waiting_planner(worktree, server)
    await asyncio.sleep(1.0)  # the CLI is up (it would have taken its snapshot)
    (worktree / "LEFT-BY-AN-EARLIER-RUN.txt").unlink()
    git(worktree, "checkout", "-q", "-b", "the-runs-own-branch")

    result = await warm.ask(PROMPT)

    assert result is not None and not result.is_error, result and result.error
    sent = json.dumps(server.log.messages()[0].body)  # the system prompt and the first message
    assert PROMPT in sent and "Claude" in sent
    for stale in ("gitStatus", "Current branch", "stale-branch-marker", "LEFT-BY-AN-EARLIER", "the-runs-own"):
        assert stale not in sent


async def test_a_cli_started_while_its_worktree_is_reset_waits_to_be_placed(
    worktree: Path, model_server: ServerFactory
) -> None:
    """`placed=False` (a warm worktree arriving, bot/git/workspace.py): the CLI starts at once, but the
    worktree is not lent (its files stay the worker's) and no prompt is taken before `place()`; then
    the call is like any other, and sees what the reset wrote meanwhile."""
    server = model_server("implement_hello.yaml")
    request = make_request("implementer", "", worktree, server, declared_commands=(HELLO_CHECK,))
    assert request.containment.drop is not None  # the sandbox runs as another uid: lending is visible
    warm = Prestarted(request, placed=False)
    started = await wait_for_processes(worktree, timeout_s=20.0)
    await asyncio.sleep(0.5)

    assert started and warm.waiting
    assert (worktree / "README.md").stat().st_uid == os.geteuid()  # not lent while it is reset
    (worktree / "written-by-the-reset.txt").write_text("reset\n")
    assert warm.place()
    result = await warm.ask("BATON-IMPLEMENT-HELLO")

    assert result is not None and not result.is_error, result and result.error
    assert (worktree / "hello.py").exists() and (worktree / "README.md").read_text().startswith(
        "# demo (hello)"
    )
    assert (worktree / "README.md").stat().st_uid != os.geteuid()  # lent once placed
    assert not processes_in(worktree)


async def test_a_cli_whose_worktree_was_replaced_before_it_was_placed_is_not_used(
    worktree: Path, model_server: ServerFactory
) -> None:
    """A reset that failed puts a fresh checkout at the worktree's path: the CLI's sandbox still binds the
    old directory, so `place()` refuses it, and it ends without a prompt."""
    server = model_server("plan.yaml")
    warm = Prestarted(make_request("planner", "", worktree, server, output_model=Plan), placed=False)
    started = await wait_for_processes(worktree, timeout_s=20.0)
    shutil.copytree(worktree, worktree.with_name("copy"), symlinks=True)
    worktree.rename(worktree.with_name("old"))
    worktree.with_name("copy").rename(worktree)

    assert not warm.place()
    assert await warm.ask(PROMPT) is None  # the caller starts the call afresh
    for _ in range(200):
        if not alive(started):
            break
        await asyncio.sleep(0.05)
    assert started and not alive(started)
    assert server.log.messages() == []


async def test_a_cli_never_placed_takes_no_prompt(worktree: Path, model_server: ServerFactory) -> None:
    server = model_server("plan.yaml")
    warm = Prestarted(make_request("planner", "", worktree, server, output_model=Plan), placed=False)
    started = await wait_for_processes(worktree, timeout_s=20.0)

    assert await warm.ask(PROMPT) is None  # asked before its worktree was ready: refused, and it ends
    assert started and not alive(started)
    assert server.log.messages() == []


async def test_a_discarded_call_never_reaches_the_model_and_leaves_no_process(
    worktree: Path, model_server: ServerFactory
) -> None:
    server = model_server("plan.yaml")
    warm, started = await waiting_planner(worktree, server)

    await warm.discard()

    assert started and not alive(started)
    assert not processes_in(worktree)
    assert server.log.messages() == []
    assert await warm.ask(PROMPT) is None  # too late: the caller starts the call afresh


async def test_the_calls_timeout_runs_from_its_prompt_not_from_its_start(
    worktree: Path, model_server: ServerFactory
) -> None:
    server = model_server("plan.yaml")
    warm, _ = await waiting_planner(worktree, server, timeout_s=6.0)
    await asyncio.sleep(6.5)  # longer than the timeout, shorter than the unused limit (twice it)

    result = await warm.ask(PROMPT)

    assert result is not None and not result.is_error and not result.timed_out, result and result.error


async def test_an_unused_call_ends_on_its_own_after_twice_its_timeout(
    worktree: Path, model_server: ServerFactory
) -> None:
    server = model_server("plan.yaml")
    warm, started = await waiting_planner(worktree, server, timeout_s=1.0)
    for _ in range(200):
        if not processes_in(worktree):
            break
        await asyncio.sleep(0.1)

    assert started and not alive(started)
    assert await warm.ask(PROMPT) is None
    assert server.log.messages() == []


async def test_it_fits_only_the_call_it_was_started_for(worktree: Path, model_server: ServerFactory) -> None:
    server = model_server("plan.yaml")
    request = make_request("reviewer", "", worktree, server, output_model=Plan)
    warm = Prestarted(request)
    try:
        assert warm.fits(replace(request, prompt="any prompt at all"))
        assert not warm.fits(replace(request, profile="planner"))
        assert not warm.fits(replace(request, output_model=None))
        assert not warm.fits(replace(request, worktree=worktree.parent))
        assert not warm.fits(replace(request, max_budget_usd=0.5))
        assert not warm.fits(replace(request, declared_commands=("pytest",)))
    finally:
        await warm.discard()
    assert not processes_in(worktree)


async def test_a_cli_that_dies_before_its_prompt_is_not_used(
    worktree: Path, model_server: ServerFactory
) -> None:
    server = model_server("plan.yaml")
    warm, started = await waiting_planner(worktree, server)
    for pid in started:
        os.kill(pid, signal.SIGKILL)
    for _ in range(200):
        if not alive(started):
            break
        await asyncio.sleep(0.05)

    assert await warm.ask(PROMPT) is None  # the caller starts the call afresh
    assert server.log.messages() == []
    assert not processes_in(worktree)


@pytest.mark.parametrize("prestarted", [False, True])
async def test_a_cancelled_call_carries_what_it_streamed(
    worktree: Path, model_server: ServerFactory, prestarted: bool
) -> None:
    server = model_server("faults.yaml")
    request = make_request("reviewer", "BATON-HANG", worktree, server)
    if prestarted:
        warm = Prestarted(replace(request, prompt=""))
        call = asyncio.create_task(warm.ask("BATON-HANG"))
    else:
        call = asyncio.create_task(run_agent(request))
    for _ in range(400):  # the model got the call (and hangs)
        if server.log.messages():
            break
        await asyncio.sleep(0.05)

    call.cancel()
    with pytest.raises(asyncio.CancelledError) as raised:
        await call

    assert server.log.messages(), "the call never reached the model"
    partial = getattr(raised.value, "partial", None)
    assert isinstance(partial, AgentResult) and partial.is_error and partial.error == "cancelled"
    assert not processes_in(worktree)
