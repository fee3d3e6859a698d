"""The ticket lifecycle end to end: sandbox simulators, real Claude Code CLI, scripted model, real processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.effects import find_jira_marker
from tests.support.processes import cli_json
from tests.support.sandbox import Running, running_sandbox, wait

SCENARIO = Path(__file__).resolve().parent.parent / "fixtures" / "scenarios" / "lifecycle.yaml"


@pytest.fixture
def sandbox(tmp_path: Path) -> Running:  # type: ignore[misc]
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", SCENARIO) as running:
        yield running


def marked(running: Running, key: str, kind: str) -> list[str]:
    """Bot comments on `key` whose effect key contains `:kind`."""
    return [body for body in running.comments(key) if f":{kind}" in (find_jira_marker(body) or "")]


def test_label_to_proposal_to_approve_to_one_merge_request(sandbox: Running) -> None:
    logs = sandbox.worker.logs
    sandbox.label("dan", "DEMO-1")
    proposal = wait(lambda: marked(sandbox, "DEMO-1", "proposal"), 100, "the proposal", logs)[0]
    assert "/approve" in proposal and "calculator.py" in proposal and "multiply" in proposal
    assert len(marked(sandbox, "DEMO-1", "status")) == 1  # one status comment, edited in place
    assert len(marked(sandbox, "DEMO-1", "ack")) == 1
    (run,) = [r for r in cli_json(sandbox.env, "runs") if r["kind"] == "implement"]
    detail = cli_json(sandbox.env, "show", run["id"])
    assert detail["status"] == "waiting"
    assert [p["name"] for p in detail["phases"]] == ["triage", "assemble", "implement", "validate", "review", "propose"]
    assert all(p["status"] == "done" for p in detail["phases"])
    assert detail["phases"][2]["input_tokens"] > 0 and detail["phases"][2]["cost_usd"] > 0
    # The reviewer was read-only and saw the diff.
    reviews = [r for r in sandbox.stack.model.log.all() if "[baton:review] DEMO-1" in str(r.body)]
    assert reviews and "def multiply" in str(reviews[0].body)

    sandbox.as_person("alice", "DEMO-1", "/approve")
    link = wait(lambda: marked(sandbox, "DEMO-1", "mr-link"), 60, "the MR link", logs)[0]
    mrs = sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project)
    assert len(mrs) == 1 and mrs[0].source_branch.startswith("baton/DEMO-1-")
    assert f"!{mrs[0].iid}" in link
    bare = sandbox.stack.demo.project.repo_path
    pushed = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", mrs[0].source_branch], capture_output=True, text=True, check=True
    ).stdout.strip()
    shown = subprocess.run(
        ["git", "--git-dir", str(bare), "show", "--stat", "--format=%s", pushed], capture_output=True, text=True
    ).stdout
    assert "calculator.py" in shown and "tests/test_multiply.py" in shown
    assert pushed[:12] in proposal  # the MR's commit is the proposed commit
    final = cli_json(sandbox.env, "show", run["id"])
    assert final["status"] == "succeeded"


def test_vague_ticket_gets_questions_and_nothing_is_implemented(sandbox: Running) -> None:
    sandbox.label("dan", "DEMO-2")
    questions = wait(lambda: marked(sandbox, "DEMO-2", "questions"), 120, "the questions", sandbox.worker.logs)[0]
    assert "Which part of the calculator" in questions and "/retry" in questions
    (run,) = cli_json(sandbox.env, "runs")
    detail = cli_json(sandbox.env, "show", run["id"])
    assert detail["status"] == "waiting"
    assert [p["status"] for p in detail["phases"]][:2] == ["done", "pending"]
    assert not any("[baton:implement]" in str(r.body) for r in sandbox.stack.model.log.all())
    assert sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project) == []
