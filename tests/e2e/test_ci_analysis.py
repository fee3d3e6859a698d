"""CI analysis end to end: Baton's merge request, a pipeline that fails with a real-looking pytest trace
(the simulator's Pipeline Hook to Baton's real server), one analysis proposal naming the failing test and
the cause (the real Claude Code CLI against the scripted model), `/approve` pushing the fix once, and a
second failure after the fix counting against the merge request's budget, past which Baton stops and
says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.effects import find_marker
from bot.sandbox.gitlab_sim import repo
from tests.e2e.test_mr_threads import git
from tests.support.processes import cli_json
from tests.support.sandbox import Running, running_sandbox, wait

SCENARIO = Path(__file__).resolve().parent.parent / "fixtures" / "demo" / "ci_analysis.yaml"
BRANCH = "baton/DEMO-1-add-a-multiply-function"
PROJECT = "demo/calculator"
CALCULATOR = (
    '"""A tiny calculator."""\n\n\n'
    "def add(a: float, b: float) -> float:\n    return a + b\n\n\n"
    "def multiply(a: float, b: float) -> float:\n    return a + b\n"
)
TEST = "from calculator import multiply\n\n\ndef test_multiply() -> None:\n    assert multiply(2, 3) == 6\n"
ESC = "\x1b"
TRACE = (
    f"{ESC}[0KRunning with gitlab-runner 17.4.0 (b92ee590)\n"
    f"section_start:1733400000:step_script\r{ESC}[0K{ESC}[0K"
    f'{ESC}[36;1mExecuting "step_script" stage{ESC}[0;m\n'
    f"{ESC}[32;1m$ python -m pytest -q{ESC}[0;m\n"
    ".F                                                                       [100%]\n"
    "=================================== FAILURES ===================================\n"
    "________________________________ test_multiply _________________________________\n\n"
    "    def test_multiply() -> None:\n"
    ">       assert multiply(2, 3) == 6\n"
    "E       assert 5 == 6\n"
    "E        +  where 5 = multiply(2, 3)\n\n"
    "tests/test_multiply.py:5: AssertionError\n"
    "=========================== short test summary info ============================\n"
    "FAILED tests/test_multiply.py::test_multiply - assert 5 == 6\n"
    "========================= 1 failed, 1 passed in 0.03s ==========================\n"
    f"section_end:1733400009:step_script\r{ESC}[0K{ESC}[31;1mERROR: Job failed: exit code 1\n{ESC}[0;m\n"
)


@pytest.fixture
def sandbox(tmp_path: Path) -> Running:  # type: ignore[misc]
    db = f"sqlite:///{tmp_path / 'baton.db'}"
    with running_sandbox(tmp_path, db, SCENARIO, ci_fix_attempts="1") as running:
        yield running


def baton_merge_request(sandbox: Running) -> None:
    """What `/approve` on DEMO-1 leaves: Baton's branch (multiply with a bug) and its MR, by the bot."""
    files = {"calculator.py": CALCULATOR, "tests/test_multiply.py": TEST}
    repo.commit_files(sandbox.stack.demo.project.repo_path, BRANCH, files, "[DEMO-1] Add multiply",
                      start_from="main", author=("Baton", "baton@localhost"))  # fmt: skip
    gitlab = sandbox.config["gitlab"]
    answer = httpx.post(
        f"{gitlab['url']}/api/v4/projects/demo%2Fcalculator/merge_requests",
        headers={"PRIVATE-TOKEN": gitlab["tokens"]["bot"]},
        json={"source_branch": BRANCH, "target_branch": "main", "title": "[DEMO-1] Add multiply"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text


def pipeline(sandbox: Running, trace: str) -> dict[str, Any]:
    """The MR's pipeline on its branch head, failing in `test` with `trace` (the Pipeline Hook goes out)."""
    body = {"project": PROJECT, "merge_request_iid": 1, "user": "baton-bot",
            "jobs": [{"name": "lint", "stage": "test", "status": "success", "trace": "All checks passed!\n"},
                     {"name": "test", "stage": "test", "status": "failed", "trace": trace}]}  # fmt: skip
    answer = httpx.post(f"{sandbox.config['gitlab']['url']}/_sandbox/pipelines", json=body, timeout=10)
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def notes_marked(sandbox: Running, kind: str) -> list[tuple[str, str]]:
    """(discussion id, body) of Baton's notes on !1 whose effect key contains `kind`."""
    state = sandbox.stack.gitlab_state
    found = []
    for discussion in list(state.discussions.values()):
        for note_id in discussion.note_ids:
            body = state.notes[note_id].body
            if kind in (find_marker(body) or ""):
                found.append((discussion.id, body))
    return found


def reply(sandbox: Running, user: str, body: str, discussion: str) -> None:
    data = {
        "user": user,
        "project": PROJECT,
        "merge_request_iid": 1,
        "body": body,
        "discussion_id": discussion,
    }
    answer = httpx.post(f"{sandbox.config['gitlab']['url']}/_sandbox/notes", json=data, timeout=10)
    assert answer.status_code == 201, answer.text


def test_a_failed_pipeline_gets_one_proposal_approve_pushes_it_once_and_the_budget_stops_the_loop(
    sandbox: Running,
) -> None:
    logs = sandbox.worker.logs
    baton_merge_request(sandbox)
    before = git(sandbox, "rev-parse", BRANCH)
    first = pipeline(sandbox, TRACE)

    thread, proposal = wait(lambda: next(iter(notes_marked(sandbox, ":proposal:")), None), 180,
                            "the analysis proposal", logs)  # fmt: skip
    assert (
        "tests/test\\_multiply.py::test\\_multiply" in proposal
        or "tests/test_multiply.py::test_multiply" in proposal
    )
    assert "adds its arguments instead of multiplying them" in proposal  # the agent's cause
    assert "assert 5 == 6" in proposal and f"`{first['id']}`" in proposal  # evidence, the pipeline
    assert "python -m pytest -q" in proposal and "/approve" in proposal  # the checks run, the replies
    assert ESC not in proposal
    brief = [
        str(r.body)
        for r in sandbox.stack.model.log.all()
        if "[baton:analyze-ci] demo/calculator!1" in str(r.body)
    ]
    assert brief and "tests/test_multiply.py::test_multiply" in brief[0]
    assert len(notes_marked(sandbox, ":proposal:")) == 1  # one proposal
    assert git(sandbox, "rev-parse", BRANCH) == before  # nothing pushed before /approve

    reply(sandbox, "maintainer", "/approve", thread)
    shipped = wait(
        lambda: next(iter(notes_marked(sandbox, ":shipped")), None), 90, "the shipped reply", logs
    )[1]
    after = git(sandbox, "rev-parse", BRANCH)
    assert (
        git(sandbox, "rev-list", "--count", f"{before}..{after}") == "1" and f"/-/commit/{after}" in shipped
    )
    assert "return a * b" in git(sandbox, "show", f"{after}:calculator.py")
    reply(sandbox, "maintainer", "/approve", thread)  # again: refused, nothing pushed twice
    wait(lambda: [b for _, b in notes_marked(sandbox, ":reply") if "already shipped" in b], 60,
         "the second /approve refused", logs)  # fmt: skip
    assert git(sandbox, "rev-parse", BRANCH) == after and len(notes_marked(sandbox, ":shipped")) == 1

    # The fix's own pipeline fails again: that second failure is past the budget of 1 — Baton stops.
    pipeline(sandbox, TRACE.replace("assert 5 == 6", "assert 7 == 6"))
    stop = wait(lambda: next(iter(notes_marked(sandbox, ":ci-budget")), None), 90, "the budget stop", logs)[1]
    assert "I stop here" in stop and "already had 1 CI analyses" in stop and "/analyze-ci" in stop

    def settled() -> bool:
        kinds = [(r["kind"], r["status"]) for r in cli_json(sandbox.env, "runs")]
        return kinds.count(("analyze-ci", "succeeded")) == 2 and ("approve", "succeeded") in kinds

    wait(settled, 60, "the two analyses and the approval to settle", logs)
    assert len(notes_marked(sandbox, ":proposal:")) == 1 and git(sandbox, "rev-parse", BRANCH) == after
