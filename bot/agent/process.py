"""Ending the agent's whole process tree: its session, its process group and every descendant."""

from __future__ import annotations

import asyncio
import math
import os
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
POLL_S = 0.05


@dataclass(frozen=True)
class ProcInfo:
    """One row of the process table, read from /proc/<pid>/stat."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str


def parse_stat(text: str) -> ProcInfo:
    """Parse /proc/<pid>/stat; the command name may contain spaces and parentheses."""
    pid = int(text[: text.index(" ")])
    fields = text[text.rindex(")") + 2 :].split()
    return ProcInfo(pid=pid, state=fields[0], ppid=int(fields[1]), pgid=int(fields[2]), sid=int(fields[3]))


def process_table(proc: Path = PROC) -> list[ProcInfo]:
    """Every live (non-zombie) process visible in /proc."""
    table: list[ProcInfo] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            info = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError):
            continue
        if info.state not in ("Z", "X"):
            table.append(info)
    return table


def family(roots: set[int], table: list[ProcInfo]) -> set[int]:
    """The live `roots`, every process in a session or group they lead, and all their descendants."""
    members = {p.pid for p in table if p.pid in roots or p.sid in roots or p.pgid in roots}
    children: dict[int, list[int]] = {}
    for p in table:
        children.setdefault(p.ppid, []).append(p.pid)
    stack = list(members | roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in members:
                members.add(child)
                stack.append(child)
    return members


def marked(marker: bytes, table: list[ProcInfo], proc: Path = PROC, *, prefix: bool = False) -> set[int]:
    """Processes whose environment holds the entry `marker` (`NAME=value`; with `prefix`, an entry
    starting with it), even if re-parented."""
    found: set[int] = set()
    for p in table:
        try:
            entries = (proc / str(p.pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(e.startswith(marker) for e in entries) if prefix else marker in entries:
            found.add(p.pid)
    return found


def _ourselves(table: list[ProcInfo]) -> set[int]:
    parents = {p.pid: p.ppid for p in table}
    pid, seen = os.getpid(), {1}
    while pid > 1 and pid not in seen:
        seen.add(pid)
        pid = parents.get(pid, 1)
    return seen


def run_processes(root: int | None, marker: bytes | None) -> set[int]:
    """Everything that belongs to one agent run: the CLI's tree plus anything carrying the run's marker."""
    table = process_table()
    roots = ({root} if root is not None else set()) | (marked(marker, table) if marker else set())
    return family(roots, table) - _ourselves(table)


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            continue


def _signal_groups(pids: set[int], sig: signal.Signals) -> None:
    """Signal every process group led by one of `pids`, catching children forked since the snapshot."""
    for pid in pids:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            continue


def running(pid: int, proc: Path = PROC) -> bool:
    """Whether one process is still running (a zombie is not); one read of /proc/<pid>/stat."""
    try:
        return parse_stat((proc / str(pid) / "stat").read_text()).state not in ("Z", "X")
    except (OSError, ValueError):
        return False


def alive(pids: set[int]) -> set[int]:
    """Which of `pids` are still running (zombies count as gone)."""
    running = {p.pid for p in process_table()}
    return pids & running


async def wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    """Poll until none of `pids` is running or the timeout passes; returns those still running."""
    for _ in range(max(1, math.ceil(timeout_s / POLL_S))):
        if not alive(pids):
            return set()
        await asyncio.sleep(POLL_S)
    return alive(pids)


async def kill_run(root: int | None, marker: bytes | None = None, grace_s: float = 2.0) -> set[int]:
    """SIGTERM every process of the run (see `run_processes`), then SIGKILL the rest; returns survivors."""
    targets = run_processes(root, marker)
    if not targets:  # the usual end: the CLI exited by itself (no second scan of the process table)
        return set()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _signal_groups(targets, sig)
        _signal_all(targets, sig)
        if not await wait_gone(targets, grace_s):
            return set()
        targets = alive(targets) | run_processes(root, marker)
    return alive(targets)


async def kill_stragglers(run_root: Path, grace_s: float = 2.0, *, spare: Path | None = None) -> set[int]:
    """End agent processes left by an earlier worker for the runs under `run_root` (it crashed or was
    killed mid-call), except those under `spare` (a CLI this worker started ahead of its call); returns
    the pids that were found."""
    table = process_table()
    found = family(marked(f"TMPDIR={run_root}/".encode(), table, prefix=True), table) - _ourselves(table)
    if spare is not None and found:
        found -= family(marked(f"TMPDIR={spare}/".encode(), table, prefix=True), table)
    if not found:  # the usual case, before every agent call: nothing to end, no second scan
        return found
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _signal_groups(found, sig)
        _signal_all(found, sig)
        if not await wait_gone(found, grace_s):
            break
    return found
