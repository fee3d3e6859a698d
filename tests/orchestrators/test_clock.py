"""The assemble phase: how long its mechanical steps took (fetch, workspace, brief), and the sparse
checkout `.baton.yml` declares."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.repo_config import RepoConfigError
from orchestrators import implement, remediate
from orchestrators.clock import Clock
from orchestrators.engine import PhaseContext
from orchestrators.outputs import ThreadAssembled
from tests.orchestrators.test_knowledge_briefs import assemble_ticket
from tests.support.tables import (
    DEVELOPER,
    ISSUE,
    MR_IID,
    PROJECT_ID,
    REVIEWER,
    gitlab_note,
    labelled,
    seed_gitlab,
    table,
)


async def test_a_step_timed_twice_adds_up_and_a_failing_step_is_still_timed() -> None:
    clock = Clock()
    with clock.step("fetch"):
        await asyncio.sleep(0.02)
    with clock.step("fetch"):
        await asyncio.sleep(0.02)
    try:
        with clock.step("post"):
            raise RuntimeError("GitLab is down")
    except RuntimeError:
        pass
    assert clock.ms["fetch"] >= 40 and set(clock.ms) == {"fetch", "post"}


async def test_assemble_records_its_mechanical_steps(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        assembled, _ = await assemble_ticket(t)
    steps = assembled.mechanics_ms
    assert list(steps) == ["fetch", "workspace", "brief"]
    assert all(isinstance(ms, int) and ms >= 0 for ms in steps.values())
    assert steps["workspace"] > 0  # a real git worktree was made


async def test_assemble_checks_out_only_the_directories_baton_yml_declares(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        t.fakes.jira.add_issue(ISSUE, "Fix add", "add(a, b) in src/calc.py ignores b.")
        seed_gitlab(t)
        url = t.fakes.gitlab.projects[PROJECT_ID].http_url_to_repo
        files = {"src/calc.py": "def add(a, b):\n    pass\n", ".baton.yml": "checkout: [src, tests/unit]\n"}
        t.fakes.workspace.seed(url, "main", files)
        run = await t.run(await labelled(t))
        await implement.assemble(PhaseContext(t.wctx, run, {}, 1))
    (created,) = [c for c in t.fakes.workspace.calls if c[0] == "create_worktree"]
    assert created[-1] == ("src", "tests/unit")


async def test_an_invalid_checkout_in_baton_yml_fails_assemble_before_any_worktree(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        t.fakes.jira.add_issue(ISSUE, "Fix add", "add(a, b) ignores b.")
        seed_gitlab(t)
        url = t.fakes.gitlab.projects[PROJECT_ID].http_url_to_repo
        t.fakes.workspace.seed(url, "main", {"calc.py": "x\n", ".baton.yml": "checkout: [../../etc]\n"})
        run = await t.run(await labelled(t))
        with pytest.raises(RepoConfigError, match="checkout"):
            await implement.assemble(PhaseContext(t.wctx, run, {}, 1))
    assert not [c for c in t.fakes.workspace.calls if c[0] == "create_worktree"]


async def test_an_mr_thread_assemble_records_its_mechanical_steps_too(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        gitlab = t.fakes.gitlab
        thread = gitlab.start_thread(PROJECT_ID, MR_IID, REVIEWER.user, "this ignores b").id
        _, note = gitlab.add_note(PROJECT_ID, MR_IID, DEVELOPER.user, "/remediate", thread)
        run = await t.run(await t.deliver("gitlab", gitlab_note("/remediate", DEVELOPER, note, thread)))
        result = await remediate.assemble(PhaseContext(t.wctx, run, {}, 1))
    steps = ThreadAssembled.model_validate(result.output).mechanics_ms
    assert list(steps) == ["fetch", "workspace", "brief"] and all(ms >= 0 for ms in steps.values())


def test_laps_charge_the_time_between_them() -> None:
    clock = Clock()
    clock.lap("fetch")
    time.sleep(0.02)
    clock.lap("workspace")
    assert clock.ms["workspace"] >= 20 and clock.ms["fetch"] < 20
