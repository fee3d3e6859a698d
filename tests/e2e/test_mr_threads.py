"""MR threads end to end: /remediate in a review thread, /approve pushes one commit and resolves it; a
person's push makes a proposal stale; /remediate all, one commit per thread. Real CLI, scripted model."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.effects import find_marker
from bot.sandbox.gitlab_sim import repo
from tests.support.deliveries import fixture, gitlab_headers
from tests.support.processes import cli, cli_json
from tests.support.sandbox import Running, running_sandbox, wait

SCENARIO = Path(__file__).resolve().parent.parent / "fixtures" / "demo" / "remediate.yaml"
BRANCH = "feature/multiply"
PROJECT = "demo/calculator"
CALCULATOR = (
    '"""A tiny calculator."""\n\n\n'
    "def add(a: float, b: float) -> float:\n    return a + b\n\n\n"
    "def sub(a: float, b: float) -> float:\n    return a - b\n\n\n"
    "def multiply(a: float, b: float) -> float:\n    return a * b\n"
)  # multiply is on line 12, sub on line 8
TEST = "from calculator import multiply\n\n\ndef test_multiply() -> None:\n    assert multiply(2, 3) == 6\n"
REVIEW = (
    "multiply should reject None instead of failing somewhere deep inside. "
    "`a * b` with None is a TypeError anyway, but say so."
)
AGREED = "Agreed: raise TypeError with a clear message, and add a test."


@pytest.fixture
def sandbox(tmp_path: Path) -> Running:  # type: ignore[misc]
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", SCENARIO) as running:
        yield running


def git(sandbox: Running, *args: str) -> str:
    bare = sandbox.stack.demo.project.repo_path
    return subprocess.run(
        ["git", "--git-dir", str(bare), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def open_merge_request(sandbox: Running) -> dict[str, Any]:
    """A developer's branch adding multiply(), and its merge request opened through the REST API."""
    bare = sandbox.stack.demo.project.repo_path
    files = {"calculator.py": CALCULATOR, "tests/test_multiply.py": TEST}
    repo.commit_files(
        bare, BRANCH, files, "Add multiply", start_from="main", author=("Dev", "dev@example.com")
    )
    gitlab = sandbox.config["gitlab"]
    answer = httpx.post(
        f"{gitlab['url']}/api/v4/projects/demo%2Fcalculator/merge_requests",
        headers={"PRIVATE-TOKEN": gitlab["tokens"]["developer"]},
        json={"source_branch": BRANCH, "target_branch": "main", "title": "DEMO-1: Add multiply",
              "description": "Adds `multiply(a, b)` for DEMO-1."},
        timeout=10,
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    mr: dict[str, Any] = answer.json()
    return mr


def comment(sandbox: Running, user: str, body: str, **extra: Any) -> str:
    """A note as `user` on !1 (a reply with `discussion_id`, a diff thread with `position`)."""
    data = {"user": user, "project": PROJECT, "merge_request_iid": 1, "body": body, **extra}
    answer = httpx.post(f"{sandbox.config['gitlab']['url']}/_sandbox/notes", json=data, timeout=10)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["discussion_id"])


def position(mr: dict[str, Any], line: int) -> dict[str, Any]:
    refs = mr["diff_refs"]
    return {**refs, "position_type": "text", "old_path": "calculator.py", "new_path": "calculator.py",
            "new_line": line}  # fmt: skip


def bot_notes(sandbox: Running, discussion: str, kind: str) -> list[str]:
    """Baton's notes in a thread whose effect key contains `:kind`."""
    state = sandbox.stack.gitlab_state
    bodies = [state.notes[i].body for i in state.discussions[discussion].note_ids]
    return [b for b in bodies if f":{kind}" in (find_marker(b) or "")]


def resolved(sandbox: Running, discussion: str) -> bool:
    state = sandbox.stack.gitlab_state
    notes = [state.notes[i] for i in state.discussions[discussion].note_ids]
    return all(n.resolved for n in notes if n.resolvable)


def prompts(sandbox: Running, header: str) -> list[str]:
    return [str(r.body) for r in sandbox.stack.model.log.all() if header in str(r.body)]


def test_remediate_a_thread_then_approve_pushes_one_commit_and_resolves_it(sandbox: Running) -> None:
    logs = sandbox.worker.logs
    mr = open_merge_request(sandbox)
    before = git(sandbox, "rev-parse", BRANCH)
    thread = comment(sandbox, "maintainer", REVIEW, position=position(mr, 12))
    comment(sandbox, "developer", AGREED, discussion_id=thread)
    comment(sandbox, "developer", "/remediate keep the message short", discussion_id=thread)

    proposal = wait(lambda: bot_notes(sandbox, thread, "proposal"), 120, "the proposal in the thread", logs)[
        0
    ]
    assert proposal.startswith("@developer: here is a proposed fix for this thread.")
    assert "calculator.py" in proposal and "is None" in proposal and "/approve" in proposal
    assert len(bot_notes(sandbox, thread, "status")) == 1  # one status reply, edited in place
    brief = prompts(sandbox, "[baton:remediate] demo/calculator!1")[0]
    for text in (REVIEW, AGREED, "/remediate keep the message short", "keep the message short"):
        assert text in brief.replace("\\n", "\n").replace('\\"', '"')
    assert "calculator.py, new line 12" in brief and "def multiply(a: float, b: float)" in brief
    assert "Add a multiply function to the calculator" in brief  # DEMO-1, the ticket the MR names
    assert prompts(sandbox, "[baton:review] demo/calculator!1")

    comment(sandbox, "reporter", "/status", discussion_id=thread)
    status = wait(lambda: bot_notes(sandbox, thread, "reply"), 60, "the /status reply", logs)[0]
    assert status.startswith("@reporter: Run ") and "assemble" in status and "> /status" in status
    helped = comment(sandbox, "guest", "/help")
    shown = wait(lambda: bot_notes(sandbox, helped, "reply"), 60, "the /help reply", logs)[0]
    assert shown.startswith("@guest: ") and "/remediate /fix" in shown and "/approve" in shown

    # Two maintainers approve within the same second: it ships exactly once.
    state = sandbox.stack.gitlab_state
    state.add_member(sandbox.stack.demo.project, state.add_user("maya", name="Maya Maintainer"), 40)
    racers = [
        threading.Thread(target=comment, args=(sandbox, who, "/approve"), kwargs={"discussion_id": thread})
        for who in ("maintainer", "maya")
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(10)
    shipped = wait(lambda: bot_notes(sandbox, thread, "shipped"), 60, "the shipped reply", logs)[0]
    refused = wait(
        lambda: [n for n in bot_notes(sandbox, thread, "reply") if "/approve" in n and "did not run" in n],
        60, "the second approval's refusal", logs,
    )  # fmt: skip
    assert len(refused) == 1 and len(bot_notes(sandbox, thread, "shipped")) == 1
    after = git(sandbox, "rev-parse", BRANCH)
    assert git(sandbox, "rev-list", "--count", f"{before}..{after}") == "1"  # exactly one commit, on top
    assert git(sandbox, "rev-parse", f"{after}^") == before
    changed = git(sandbox, "show", "--name-only", "--format=%s", after)
    assert "Address review: multiply should reject None" in changed
    assert "calculator.py" in changed and "tests/test_multiply_none.py" in changed
    assert (
        shipped.startswith(("✅ @maintainer: pushed", "✅ @maya: pushed")) and f"/-/commit/{after}" in shipped
    )
    assert after[:8] in proposal
    wait(lambda: resolved(sandbox, thread), 10, "the thread resolved", logs)

    def finished() -> bool:
        runs = {r["kind"]: r["status"] for r in cli_json(sandbox.env, "runs")}
        return runs.get("remediate") == "succeeded" and runs.get("approve") == "succeeded"

    wait(finished, 30, "the remediate and approve runs to succeed", logs)


def test_a_human_push_makes_the_proposal_stale_and_remediate_all_makes_one_commit_per_thread(
    sandbox: Running,
) -> None:
    logs = sandbox.worker.logs
    mr = open_merge_request(sandbox)
    first = comment(sandbox, "maintainer", REVIEW, position=position(mr, 12))
    second = comment(sandbox, "reporter", "sub needs a docstring too.", position=position(mr, 8))
    overview = comment(sandbox, "developer", "/remediate all")
    proposal = wait(lambda: bot_notes(sandbox, overview, "proposal"), 150, "the overview proposal", logs)[0]
    assert "2 unresolved threads" in proposal and "one commit per thread" in proposal
    assert len(prompts(sandbox, "[baton:remediate] demo/calculator!1")) >= 2

    bare = sandbox.stack.demo.project.repo_path
    pushed = repo.commit_files(bare, BRANCH, {"NOTES.md": "hand edit\n"}, "A human push")
    answer = httpx.post(
        f"{sandbox.config['gitlab']['url']}/_sandbox/push",
        json={"project": PROJECT, "branch": BRANCH, "user": "developer"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    notice = wait(lambda: bot_notes(sandbox, overview, "stale"), 60, "the stale notice", logs)[0]
    assert "@developer pushed" in notice and "/retry" in notice

    approve = comment(sandbox, "maintainer", "/approve")
    refusal = wait(lambda: bot_notes(sandbox, approve, "reply"), 60, "the stale refusal", logs)[0]
    assert refusal.startswith("@maintainer: I did not run `/approve`") and "stale" in refusal
    assert "moved to" in refusal and "/retry" in refusal
    assert git(sandbox, "rev-parse", BRANCH) == pushed  # nothing was pushed

    retry = comment(sandbox, "developer", "/retry")
    wait(lambda: bot_notes(sandbox, retry, "reply"), 60, "the /retry reply", logs)
    fresh = wait(lambda: bot_notes(sandbox, overview, "proposal")[1:], 150, "the fresh proposal", logs)[0]
    again = comment(sandbox, "maintainer", "/approve")
    shipped = wait(lambda: bot_notes(sandbox, again, "shipped"), 60, "the shipped reply", logs)[0]
    head = git(sandbox, "rev-parse", BRANCH)
    assert git(sandbox, "rev-list", "--count", f"{pushed}..{head}") == "2"  # one commit per thread
    subjects = git(sandbox, "log", "--format=%s", f"{pushed}..{head}")
    assert "multiply should reject None" in subjects and "sub needs a docstring" in subjects
    assert "2 threads are resolved" in shipped and head[:8] in fresh
    wait(lambda: resolved(sandbox, first) and resolved(sandbox, second), 10, "both threads resolved", logs)


def test_a_note_for_a_project_gitlab_does_not_know_fails_its_run_with_the_reason(sandbox: Running) -> None:
    """GitLab answers 404 for the note's project: the run fails at once, says why, and is not retried."""
    note = fixture("gitlab/note_mr_comment.json")
    ghost = {"id": 987654, "path_with_namespace": "ghost/gone", "name": "gone"}
    note["project"].update(ghost)
    note["project_id"] = note["object_attributes"]["project_id"] = ghost["id"]
    note["object_attributes"]["note"] = note["object_attributes"]["description"] = "/remediate"
    answer = httpx.post(
        f"http://127.0.0.1:{sandbox.port}/webhooks/gitlab",
        content=json.dumps(note).encode(),
        headers=gitlab_headers(note, token=sandbox.env["BATON_GITLAB_WEBHOOK_SECRET"]),
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run"]

    def ended() -> dict[str, Any] | None:
        detail: dict[str, Any] = cli_json(sandbox.env, "show", run_id)
        return detail if detail["status"] not in ("queued", "running") else None

    detail = wait(ended, 60, "the run to end", sandbox.worker.logs)
    assert detail["status"] == "failed" and detail["attempts"] == 1
    assert detail["error"].startswith("GitLab answered 404 for project ghost/gone: ")
    shown = cli(sandbox.env, "show", run_id)
    assert shown.returncode == 0
    assert "GitLab answered 404 for project ghost/gone" in " ".join(shown.stdout.split())
