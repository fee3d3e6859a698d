"""An exclusive advisory lock on a file (fcntl.flock), awaited without blocking the event loop."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.git.errors import LockTimeout

POLL_MIN_S = 0.005
POLL_MAX_S = 0.1


@asynccontextmanager
async def file_lock(path: Path, wait_s: float) -> AsyncIterator[None]:
    """Hold `path`'s lock for the block; works across processes and across tasks of one process."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        await _acquire(fd, path, wait_s)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


async def _acquire(fd: int, path: Path, wait_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    delay = POLL_MIN_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if loop.time() >= deadline:
                raise LockTimeout(f"lock {path.name} still held after {wait_s:g}s") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX_S)
