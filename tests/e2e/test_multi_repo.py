"""A ticket across four repositories end to end (#13): plan proposal → /approve → A, B, C in parallel, D
after them with their results in its brief → one proposal → /approve → four cross-linked MRs exactly once
(also across a killed worker); a failed task stops only its dependants and `/retry C` re-runs only C."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.sandbox.scenario import first_user_text
from tests.e2e.test_ticket_lifecycle import marked
from tests.support.multi import MULTI, TASKS
from tests.support.processes import cli_json
from tests.support.sandbox import Running, running_sandbox, wait

KEY = "DEMO-1"


def task_requests(sandbox: Running) -> list[tuple[int, str]]:
    """(position in the model server's log, task id) of every implementer request of a task."""
    found = []
    for index, request in enumerate(sandbox.stack.model.log.messages()):
        body = request.body if isinstance(request.body, dict) else {}
        head = first_user_text(body)
        hit = re.search(r"Baton task: (\w+) in ", head)
        if hit and body.get("tools"):
            found.append((index, hit[1]))
    return found


def first_prompt(sandbox: Running, task: str, attempt: int = 1) -> str:
    """The first user message of a task's first request (its brief)."""
    for request in sandbox.stack.model.log.messages():
        body = request.body if isinstance(request.body, dict) else {}
        text = first_user_text(body)
        if f"Baton task: {task} in {TASKS[task]}" in text and (attempt == 1) == ("(attempt" not in text):
            return text
    raise AssertionError(f"no request of task {task}")


def graph(sandbox: Running) -> dict[str, dict[str, Any]]:
    (run,) = [r for r in cli_json(sandbox.env, "runs") if r["kind"] == "implement"]
    return {t["task"]: t for t in cli_json(sandbox.env, "show", run["id"]).get("graph", [])}


def parent_activity(sandbox: Running) -> list[dict[str, Any]]:
    """The activity of the ticket's `implement` run (the graph), oldest first."""
    (run,) = [r for r in cli_json(sandbox.env, "runs") if r["kind"] == "implement"]
    return list(cli_json(sandbox.env, "show", run["id"])["activity"])


def plan_id(sandbox: Running) -> str:
    plan = wait(lambda: marked(sandbox, KEY, "plan"), 120, "the plan proposal", sandbox.worker.logs)[0]
    found = re.search(r"\*Plan\* \{\{([0-9a-f]+)\}\}", plan)
    assert found, plan[:400]
    return found[1]


def final_proposal(sandbox: Running, timeout: float = 300) -> str:
    return wait(lambda: marked(sandbox, KEY, "proposal"), timeout, "the final proposal", sandbox.worker.logs)[
        0
    ]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_plan_then_parallel_tasks_then_four_linked_mrs_once_across_a_killed_worker(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", MULTI, run_lease_s="3") as sandbox:
        logs = sandbox.worker.logs
        sandbox.label("dan", KEY)
        plan = plan_id(sandbox)
        # the plan is proposed before any code is written: no implementer has been called
        assert task_requests(sandbox) == []
        text = marked(sandbox, KEY, "plan")[0]
        assert all(repo in text for repo in TASKS.values()) and "/approve" in text

        sandbox.as_person("alice", KEY, f"/approve {plan}")
        proposal = final_proposal(sandbox)
        calls = task_requests(sandbox)
        spans = {t: (min(i for i, x in calls if x == t), max(i for i, x in calls if x == t)) for t in TASKS}
        # A, B and C run in parallel: one scheduling step queued all three as jobs at once (any free worker
        # slot takes each), before any of them had finished; D was queued by a later step
        started = [a["message"].split()[1] for a in parent_activity(sandbox) if a["action"] == "task-started"]
        assert started[3:] == ["D"] and sorted(started[:3]) == ["A", "B", "C"], started
        steps = [i for i, a in enumerate(parent_activity(sandbox)) if a["action"] == "task-started"]
        assert steps[:3] == list(range(steps[0], steps[0] + 3)), "A, B and C were queued in one step"
        # D started only after all three passed: its first request after their last, its start after theirs
        assert spans["D"][0] > max(spans[t][1] for t in "ABC"), spans
        tasks = graph(sandbox)
        assert {t: tasks[t]["status"] for t in TASKS} == dict.fromkeys(TASKS, "done")
        assert tasks["D"]["started"] > max(tasks[t]["finished"] for t in "ABC")
        (live,) = marked(sandbox, KEY, "graph")  # one comment, edited in place as the graph moves
        assert all(f"| {repo} | done |" in live for repo in TASKS.values()), live
        # D's brief carries A's, B's and C's results: their interfaces and files
        brief = first_prompt(sandbox, "D")
        assert "Results of the tasks this one depends on" in brief
        for task, repo in (("A", "demo/catalog"), ("B", "demo/pricing"), ("C", "demo/inventory")):
            assert f"### Task {task} ({repo})" in brief
        assert "weight_grams" in brief and "def shipping_cents" in brief
        # one proposal lists every repository with its diff and the cross-repository review
        assert all(repo in proposal for repo in TASKS.values()) and "Cross-repository review" in proposal
        reviews = [
            r for r in sandbox.stack.model.log.messages() if "Baton review of the task graph" in str(r.body)
        ]
        assert reviews and all(repo in str(reviews[0].body) for repo in TASKS.values())

        # /approve opens four MRs; the worker is killed after the first ones and another resumes
        final = re.search(r"\*Proposal\* \{\{([0-9a-f]+)\}\}", proposal)
        assert final
        gitlab = sandbox.stack.gitlab_state
        projects = {t: gitlab.project(repo) for t, repo in TASKS.items()}
        gitlab.faults.latency_s = 0.4
        sandbox.as_person("alice", KEY, f"/approve {final[1]}")

        def opened() -> int:
            return sum(len(gitlab.merge_requests_of(p)) for p in projects.values())

        wait(lambda: opened() >= 1, 120, "the first merge request", logs)
        gitlab.faults.hang()  # GitLab holds every request from now on: at most the one in flight lands
        sandbox.kill_worker()
        assert opened() < 4, "the worker was killed in the middle of opening them"
        gitlab.faults.latency_s = 0.0
        gitlab.faults.release()
        sandbox.start_worker()
        wait(lambda: marked(sandbox, KEY, "mr-link"), 180, "the shipped comment", sandbox.worker.logs)
        mrs = {t: gitlab.merge_requests_of(p) for t, p in projects.items()}
        assert all(len(found) == 1 for found in mrs.values()), mrs
        urls = {t: f"{TASKS[t]}/-/merge_requests/{found[0].iid}" for t, found in mrs.items()}
        for task, (mr,) in mrs.items():
            notes = [n.body for n in gitlab.notes_of(mr) if "one of 4" in n.body]
            assert len(notes) == 1, notes
            assert all(url in notes[0] for t, url in urls.items() if t != task) and KEY in notes[0]
        assert len(marked(sandbox, KEY, "mr-link")) == 1
        assert all(url in marked(sandbox, KEY, "mr-link")[0] for url in urls.values())


def with_failing_c(tmp_path: Path) -> Path:
    """C's first attempt fails (the model answers 400); its retry (`(attempt 2)` in the brief) succeeds."""
    data = yaml.safe_load(MULTI.read_text())
    scripts = data["model"]["scripts"]
    original = next(s for s in scripts if s["match"] == "Baton task: C in demo/inventory")
    retried = copy.deepcopy(original)
    retried["match"] = "Baton task: C in demo/inventory (attempt 2)"
    failing = {"match": "Baton task: C in demo/inventory", "error": {"status": 400, "message": "scripted"}}
    data["model"]["scripts"] = [retried, failing, *scripts]
    path = tmp_path / "failing-c.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_failed_task_stops_only_its_dependants_and_retry_reruns_only_it(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", with_failing_c(tmp_path)) as sandbox:
        logs = sandbox.worker.logs
        sandbox.label("dan", KEY)
        sandbox.as_person("alice", KEY, f"/approve {plan_id(sandbox)}")
        failed = wait(lambda: marked(sandbox, KEY, "task-failed"), 300, "C's failure", logs)[0]
        assert "Task C" in failed and "/retry C" in failed and "D" in failed

        def settled() -> dict[str, str] | None:
            states = {t: row["status"] for t, row in graph(sandbox).items()}
            return states if states.get("A") == "done" and states.get("B") == "done" else None

        states = wait(settled, 300, "A and B to finish", logs)
        assert states == {"A": "done", "B": "done", "C": "failed", "D": "blocked"}
        assert not [t for _, t in task_requests(sandbox) if t == "D"]  # D never started
        before = {t: sum(1 for _, x in task_requests(sandbox) if x == t) for t in "AB"}
        assert all(before.values())
        sandbox.as_person("dan", KEY, "/status")
        status = wait(
            lambda: [c for c in marked(sandbox, KEY, "reply") if "blocked" in c],
            60,
            "the /status reply",
            logs,
        )[0]
        assert "demo/inventory" in status and "failed" in status

        sandbox.as_person("dan", KEY, "/retry C")
        said = wait(
            lambda: [c for c in marked(sandbox, KEY, "reply") if "Retrying task C" in c],
            60, "the /retry reply", lambda: "\n---\n".join(sandbox.comments(KEY)[-4:]) + logs(),
        )  # fmt: skip
        assert "D" in said[0]
        final_proposal(sandbox)
        after = {t: sum(1 for _, x in task_requests(sandbox) if x == t) for t in "AB"}
        assert after == before  # A and B were not run again
        assert all(row["status"] == "done" for row in graph(sandbox).values())
        assert graph(sandbox)["C"]["attempts"] == 2 and graph(sandbox)["A"]["attempts"] == 1
        brief = first_prompt(sandbox, "D")
        assert "### Task C (demo/inventory)" in brief

        # after the proposal a finished task can be redone: B and D (built on B) run again, A and C do not
        counts = {t: sum(1 for _, x in task_requests(sandbox) if x == t) for t in TASKS}
        sandbox.as_person("dan", KEY, "/retry B")
        wait(lambda: marked(sandbox, KEY, "proposal")[1:], 300, "the second proposal", logs)
        again = {t: sum(1 for _, x in task_requests(sandbox) if x == t) for t in TASKS}
        assert again["A"] == counts["A"] and again["C"] == counts["C"]
        assert again["B"] > counts["B"] and again["D"] > counts["D"]
        assert graph(sandbox)["B"]["attempts"] == 2 and graph(sandbox)["D"]["attempts"] == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_merge_request_that_fails_to_open_says_what_shipped_and_retry_ships_the_rest(
    tmp_path: Path,
) -> None:
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", MULTI) as sandbox:
        logs = sandbox.worker.logs
        sandbox.label("dan", KEY)
        sandbox.as_person("alice", KEY, f"/approve {plan_id(sandbox)}")
        final = re.search(r"\*Proposal\* \{\{([0-9a-f]+)\}\}", final_proposal(sandbox))
        assert final
        gitlab = sandbox.stack.gitlab_state
        projects = {t: gitlab.project(repo) for t, repo in TASKS.items()}
        gitlab.faults.latency_s = 0.3
        sandbox.as_person("alice", KEY, f"/approve {final[1]}")
        wait(lambda: gitlab.merge_requests_of(projects["A"]), 120, "A's merge request", logs)
        gitlab.faults.fail_next(1, status=403, methods=["POST"])  # B's merge request is refused
        said = wait(lambda: marked(sandbox, KEY, "partial"), 120, "the partial-ship comment", logs)[0]
        gitlab.faults.latency_s = 0.0
        assert "stopped at task B" in said and "Not shipped: B, C, D" in said and "/retry" in said
        (mr_a,) = gitlab.merge_requests_of(projects["A"])
        assert f"Shipped: A (!{mr_a.iid}" in said
        assert [t for t, p in projects.items() if gitlab.merge_requests_of(p)] == ["A"]

        sandbox.as_person("dan", KEY, "/retry")
        wait(lambda: marked(sandbox, KEY, "mr-link"), 180, "the shipped comment", logs)
        assert all(len(gitlab.merge_requests_of(p)) == 1 for p in projects.values())
        assert gitlab.merge_requests_of(projects["A"])[0].iid == mr_a.iid
