"""An agent that hangs or streams without end: the call times out, its processes are killed, the run
fails with that reason and the ticket gets one note saying what failed and what to do."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bot.agent.process import alive, process_table
from bot.agent.process import marked as agent_processes
from orchestrators.agents import agent_root
from tests.reliability.test_external_faults import (
    check_world,
    guarded_sandbox,
    lifecycle,
    marked,
    model_saw,
    plant,
    scenario_file,
    settled,
    the_run,
)
from tests.support.processes import cli_json
from tests.support.sandbox import wait

AGENT_TIMEOUT_S = 12  # long enough for triage's real CLI call, short for a stuck implement
SLEEPER = "time.sleep(601)"
# A test that never ends and leaves a daemon (double fork, own session, re-parented away from the CLI's
# tree): only Baton's kill of everything that carries the run's TMPDIR can end it.
SLOW_TEST = f"""import os
import sys
import time


def test_slow() -> None:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; {SLEEPER}"])
        os._exit(0)
    os.wait()
    time.sleep(600)
"""
STUCK_COMMAND = [  # the agent runs the repo's declared test command, which never ends
    {"tool_use": {"name": "Write", "input": {"file_path": "{cwd}/tests/test_slow.py", "content": SLOW_TEST}}},
    {"tool_use": {"name": "Bash", "input": {"command": "python -m pytest -q"}}},
    {"text": "done"},
]
FAULTS: dict[str, dict[str, Any]] = {
    "model-hangs": {"hang": True},
    "runaway-output": {"runaway": {"chars": 100_000_000, "chunk": 4000, "chunk_delay_s": 0.005}},
    "command-hangs": {"turns": STUCK_COMMAND},  # a grandchild of the CLI that must not outlive the call
}


def _stuck_implementer(fault: str) -> dict[str, Any]:
    data = lifecycle()
    implement = next(s for s in data["model"]["scripts"] if s["match"] == "[baton:implement] DEMO-1")
    implement.update(FAULTS[fault])
    return data


def _detached(tagged: bytes) -> set[int]:
    """The run's agent processes that are the slow test's detached sleeper."""
    found = set()
    for pid in agent_processes(tagged, process_table(), prefix=True):
        try:
            if SLEEPER.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


@pytest.mark.timeout(150)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_stuck_agent_is_killed_and_the_run_fails_with_one_note(tmp_path: Path, fault: str) -> None:
    planted = plant(tmp_path)
    scenario = scenario_file(tmp_path, _stuck_implementer(fault), planted)
    with guarded_sandbox(tmp_path, scenario, planted, agent_timeout_s=str(AGENT_TIMEOUT_S)) as (sandbox, db):
        logs = sandbox.worker.logs
        sandbox.label("dan", "DEMO-1")
        wait(lambda: model_saw(sandbox, "[baton:implement] DEMO-1"), 90, "the implementer's request", logs)
        started = time.monotonic()
        (run,) = cli_json(sandbox.env, "runs")
        tagged = f"TMPDIR={agent_root(run['id'])}/".encode()  # every agent process of this run has it
        stuck = agent_processes(tagged, process_table(), prefix=True)
        assert stuck, "the implementer's processes should be running while the model is stuck"

        if fault == "command-hangs":
            wait(lambda: _detached(tagged), 30, "the test's detached process", logs)

        settled(sandbox, db, "failed", timeout_s=60)
        took = time.monotonic() - started
        assert took < AGENT_TIMEOUT_S + 20, took
        assert not alive(stuck), f"agent processes outlived the timeout: {sorted(alive(stuck))}"
        assert not agent_processes(tagged, process_table(), prefix=True)

        detail = the_run(sandbox)
        assert "phase implement failed" in detail["error"] and "timed out" in detail["error"], detail
        phases = {p["name"]: p["status"] for p in detail["phases"]}
        assert phases["implement"] == "failed" and phases["validate"] == "pending", phases
        (note,) = marked(sandbox, "DEMO-1", "failed")
        assert "implement" in note and "timed out" in note and "/retry" in note, note
        assert marked(sandbox, "DEMO-1", "proposal") == []
        (status,) = marked(sandbox, "DEMO-1", "status")
        assert "❌" in status, status
        check_world(sandbox, db, planted)
