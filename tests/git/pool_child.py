"""A second process for the pool tests: `hold` leases a slot and dirties it until killed; `cycle` takes
and returns worktrees through the workspace, logging each lease as `inode start end` (monotonic clock)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from bot.git.pool import Pool
from bot.git.workspace import STATUS_ALL, Workspace
from tests.git.repos import BOT, git


def hold(pool_dir: Path) -> None:
    lease = Pool(pool_dir, 1).claim("crasher", occupied=True)
    if lease is None:
        raise SystemExit("no slot to hold")
    (lease.path / "src" / "app.py").write_text("half-edited by a run that crashed\n")
    (lease.path / "crash-leftover.txt").write_text("untracked\n")
    (lease.path / "build").mkdir(exist_ok=True)
    (lease.path / "build" / "ignored.o").write_bytes(b"\x00ignored")
    print("held", flush=True)
    time.sleep(120)


async def cycle(root: Path, repo_id: str, tag: str, rounds: int, log: Path) -> None:
    ws = Workspace(root, BOT, pool_size=2)
    for n in range(rounds):
        run = f"{tag}-{n}"
        path = await ws.create_worktree(repo_id, run, "main", f"baton/{run}")
        start = time.monotonic()
        if git(*STATUS_ALL, cwd=path):
            raise SystemExit(f"{run}: leased a dirty worktree")
        (path / f"mine-{run}").write_text(run)
        (path / "build").mkdir(exist_ok=True)
        (path / "build" / f"{run}.o").write_text(run)
        await asyncio.sleep(0.05)
        others = [p.name for p in path.iterdir() if p.name.startswith("mine-") and p.name != f"mine-{run}"]
        if others:
            raise SystemExit(f"{run}: shares its worktree with {others}")
        inode = os.stat(path).st_ino
        end = time.monotonic()
        with log.open("a") as out:
            out.write(f"{inode} {start} {end} {run}\n")
        await ws.remove_worktree(run)


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        hold(Path(sys.argv[2]))
    else:
        root, repo_id, tag, rounds, log = sys.argv[2:7]
        asyncio.run(cycle(Path(root), repo_id, tag, int(rounds), Path(log)))
