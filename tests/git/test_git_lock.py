"""The per-mirror lock: exclusive across tasks and processes, bounded waits."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from bot.git.errors import LockTimeout
from bot.git.lock import file_lock


async def test_tasks_take_turns(tmp_path: Path) -> None:
    lock = tmp_path / "m.lock"
    events: list[str] = []

    async def holder(name: str) -> None:
        async with file_lock(lock, 5):
            events.append(f"{name}-in")
            await asyncio.sleep(0.05)
            events.append(f"{name}-out")

    await asyncio.wait_for(asyncio.gather(holder("a"), holder("b")), 10)
    assert events in (["a-in", "a-out", "b-in", "b-out"], ["b-in", "b-out", "a-in", "a-out"])


async def test_a_lock_held_by_another_process_times_out(tmp_path: Path) -> None:
    lock = tmp_path / "m.lock"
    code = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(30)\n"
    )
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(lock), stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert (await asyncio.wait_for(holder.stdout.readline(), 10)).strip() == b"locked"
        with pytest.raises(LockTimeout, match=r"m\.lock"):
            async with file_lock(lock, 0.2):
                pass
    finally:
        holder.kill()
        await asyncio.wait_for(holder.wait(), 5)
    async with file_lock(lock, 5):  # released when its holder died
        pass
