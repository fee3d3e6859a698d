"""Ending an agent run's processes: its session, detached children, and re-parented stragglers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.agent.process import alive, kill_run, kill_stragglers, parse_stat, process_table, run_processes

# A session leader that starts a child in yet another session (as the CLI does for Bash commands),
# prints both pids, then sleeps.
TREE = """import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
print(os.getpid(), child.pid, flush=True)
time.sleep(60)
"""
STUBBORN = """import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(timeout=10)


def start(spawned: list[subprocess.Popen[str]], code: str, **env: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={"PATH": os.environ.get("PATH", ""), **env},
    )
    spawned.append(process)
    return process


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("42 (python3) S 1 42 42 0 -1", (42, "S", 1, 42, 42)),
        ("7 (a (b) c) R 3 5 6 0 -1", (7, "R", 3, 5, 6)),
        ("9 (x) y) Z 2 2 2 0", (9, "Z", 2, 2, 2)),
    ],
)
def test_stat_lines_with_odd_command_names_parse(line: str, expected: tuple[int, str, int, int, int]) -> None:
    info = parse_stat(line)

    assert (info.pid, info.state, info.ppid, info.pgid, info.sid) == expected


def test_our_own_process_is_in_the_table_and_never_a_target() -> None:
    assert os.getpid() in {p.pid for p in process_table()}
    assert os.getpid() not in run_processes(os.getpid(), None)
    assert os.getpid() not in run_processes(None, f"PATH={os.environ.get('PATH', '')}".encode())


async def test_a_timeout_kill_reaches_children_in_other_sessions(
    spawned: list[subprocess.Popen[str]],
) -> None:
    leader = start(spawned, TREE)
    assert leader.stdout is not None
    pids = {int(pid) for pid in leader.stdout.readline().split()}
    assert pids <= run_processes(leader.pid, None)

    survivors = await kill_run(leader.pid, None, grace_s=2.0)

    assert survivors == set()
    assert not alive(pids)


async def test_stragglers_are_found_by_their_marker(
    spawned: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    marker_value = str(tmp_path / "run-tmp")
    straggler = start(spawned, "import time; time.sleep(60)", TMPDIR=marker_value)
    unrelated = start(spawned, "import time; time.sleep(60)", TMPDIR=str(tmp_path / "other"))

    survivors = await kill_run(None, f"TMPDIR={marker_value}".encode(), grace_s=2.0)

    assert survivors == set()
    assert not alive({straggler.pid})
    assert alive({unrelated.pid}) == {unrelated.pid}


async def test_nothing_to_end_leaves_every_process_alone(
    spawned: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    bystander = start(spawned, "import time; time.sleep(60)", TMPDIR=str(tmp_path / "other"))

    assert await kill_run(None, f"TMPDIR={tmp_path / 'run-tmp'}".encode(), grace_s=2.0) == set()
    assert await kill_stragglers(tmp_path / "runs", grace_s=2.0) == set()
    assert alive({bystander.pid}) == {bystander.pid}


async def test_the_sweep_ends_a_runs_stragglers_but_spares_its_waiting_prestarted_cli(
    spawned: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    straggler = start(spawned, "import time; time.sleep(60)", TMPDIR=str(runs / "baton-agent-1" / "tmp"))
    waiting = start(
        spawned, "import time; time.sleep(60)", TMPDIR=str(runs / "warm" / "baton-agent-2" / "tmp")
    )

    assert await kill_stragglers(runs, grace_s=2.0, spare=runs / "warm") == {straggler.pid}
    assert not alive({straggler.pid})
    assert alive({waiting.pid}) == {waiting.pid}
    assert await kill_stragglers(runs, grace_s=2.0) == {waiting.pid}  # nothing spared: /cancel, a new worker
    assert not alive({waiting.pid})


async def test_processes_that_ignore_sigterm_get_sigkill(spawned: list[subprocess.Popen[str]]) -> None:
    stubborn = start(spawned, STUBBORN)
    assert stubborn.stdout is not None
    assert stubborn.stdout.readline().strip() == "ready"
    began = time.monotonic()

    survivors = await kill_run(stubborn.pid, None, grace_s=0.5)

    assert survivors == set()
    assert not alive({stubborn.pid})
    assert time.monotonic() - began < 5
