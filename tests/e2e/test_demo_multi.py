"""`baton demo --scenario bot/sandbox/scenarios/multi.yaml` as a real process (#13): label → plan proposal
→ /approve → four tasks (D after A, B and C) → one proposal → /approve → four cross-linked merge requests,
every step printed, exit 0, everything stopped afterwards; the store it keeps shows the graph."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.test_demo import (
    assert_everything_stopped,
    cli_json,
    demo,
    demo_env,
    demo_store,
    write_scenario,
)
from tests.support.multi import MULTI, TASKS

STEPS = [
    "[0/8] Baton, Redis and the sandbox are up",
    "[1/8] dan (a developer) adds the label ai-implement to DEMO-1",
    "[2/8] Baton acknowledges the ticket",
    "[3/8] Baton plans the work across the repositories and proposes the plan",
    "[4/8] alice (in baton-approvers) replies /approve ",
    "[5/8] The tasks run: in parallel where they can, each after what it depends on",
    "[6/8] Baton reviews the repositories together and posts one proposal",
    "[7/8] alice (in baton-approvers) replies /approve ",
    "[8/8] Baton opens 4 merge requests, each linking the others, and links them",
]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_multi_repository_demo_plays_to_four_merge_requests(tmp_path: Path) -> None:
    done = demo(demo_env(tmp_path), "--scenario", str(MULTI), "--timeout", "420", timeout=540)
    output = done.stdout
    assert done.returncode == 0, output + done.stderr[-3000:]
    positions = [output.find(step) for step in STEPS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), output
    assert "demo passed" in output
    for task, repository in TASKS.items():
        assert f"task {task} {repository}: done" in output, output
        assert f"MR     {repository}: http://127.0.0.1:" in output, output
    # D is printed after A, B and C: it started only once they were done
    assert output.find("task D demo/storefront: done") > max(
        output.find(f"task {t} {TASKS[t]}: done") for t in "ABC"
    )
    assert_everything_stopped(tmp_path, output)

    store = demo_store(tmp_path)
    (graph_run,) = [r for r in cli_json(store, "runs") if r["kind"] == "implement"]
    shown = cli_json(store, "show", graph_run["id"])
    assert {t["task"]: t["status"] for t in shown["graph"]} == dict.fromkeys(TASKS, "done")
    assert {t["task"]: t["repository"] for t in shown["graph"]} == TASKS
    tasks = [r for r in cli_json(store, "runs") if r["kind"] == "task"]
    assert len(tasks) == 4 and all(r["status"] == "succeeded" for r in tasks)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_failed_task_fails_the_demo_at_the_tasks_step_naming_it(tmp_path: Path) -> None:
    data = yaml.safe_load(MULTI.read_text())
    failing = {"match": "Baton task: C in demo/inventory", "error": {"status": 400, "message": "scripted"}}
    data["model"]["scripts"].insert(0, failing)
    scenario = write_scenario(tmp_path / "failing-c.yaml", data)
    done = demo(demo_env(tmp_path), "--scenario", str(scenario), "--timeout", "300", timeout=420)
    output = done.stdout
    assert done.returncode == 1, output + done.stderr[-3000:]
    (failed,) = [line for line in output.splitlines() if line.startswith("FAILED")]
    assert failed.startswith("FAILED at step 5 (The tasks run"), output
    assert "task C (demo/inventory) failed: " in failed and "400 scripted" in failed, failed
    assert "D waits for it" in failed and "/retry C" in failed, failed
    assert "task D demo/storefront: blocked" in output and "0 merge request(s) in demo/storefront" in output
    assert "demo passed" not in output and "[6/8]" not in output
    assert_everything_stopped(tmp_path, output)


def test_a_hostile_repositories_section_is_refused_before_anything_starts(tmp_path: Path) -> None:
    data = yaml.safe_load(MULTI.read_text())
    data["repositories"]["../../etc"] = data["repositories"].pop("demo/inventory")
    bad = write_scenario(tmp_path / "bad.yaml", data)
    done = demo(demo_env(tmp_path), "--scenario", str(bad), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.strip() == (
        "scenario error: bad.yaml: repositories: unknown repository '../../etc'; the sandbox has "
        "demo/catalog, demo/inventory, demo/pricing, demo/storefront"
    )
    assert not (tmp_path / "state" / "demo").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_multi_repository_demo_can_stop_at_the_proposal(tmp_path: Path) -> None:
    data = yaml.safe_load(MULTI.read_text())
    data["expect"] = {"proposal": True, "mr": False}
    scenario = write_scenario(tmp_path / "no-mr.yaml", data)
    done = demo(demo_env(tmp_path), "--scenario", str(scenario), "--timeout", "300", timeout=420)
    output = done.stdout
    assert done.returncode == 0, output + done.stderr[-3000:]
    assert "[6/6] Baton reviews the repositories together and posts one proposal" in output
    assert "[7/" not in output and "MR     " not in output and "demo passed" in output
    store = demo_store(tmp_path)
    approvals = [r for r in cli_json(store, "runs") if r["kind"] == "approve"]
    assert len(approvals) == 1  # the plan's; nobody approved the proposal
    assert_everything_stopped(tmp_path, output)
