"""A fingerprint of a worktree's state, so a read-only agent run can be proven to have changed nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

GIT_TIMEOUT_S = 60.0


class FingerprintError(RuntimeError):
    """The worktree's state could not be read."""


async def _git(worktree: Path, *args: str, refresh: bool = False) -> bytes:
    """`git -C worktree args`; with `refresh`, git may write back the index's refreshed stat data."""
    locks = () if refresh else ("--no-optional-locks",)
    process = await asyncio.create_subprocess_exec(
        "git",
        *locks,
        "-C",
        str(worktree),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), GIT_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise FingerprintError(f"git {args[0]} timed out") from None
    if process.returncode != 0:
        raise FingerprintError(f"git {args[0]} failed: {err.decode(errors='replace').strip()[:200]}")
    return out


def _untracked(status: bytes) -> list[str]:
    entries = status.split(b"\0")
    return [e[3:].decode("utf-8", "surrogateescape") for e in entries if e.startswith(b"?? ")]


def _file_state(path: Path) -> bytes:
    if path.is_symlink():
        return b"link:" + os.fsencode(os.readlink(path))
    if path.is_file():
        return b"file:" + path.read_bytes()
    return b"gone"


async def _head(worktree: Path) -> bytes:
    try:
        return await _git(worktree, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    except FingerprintError:
        return b""


async def refresh_index(worktree: Path) -> bool:
    """Write the index's stat data afresh (`git update-index -q --refresh`, contents unchanged): a lend's
    chown gives every file a new ctime, and until the index is refreshed each later status, diff or
    `add` of the worktree (validate's, the review's, the commit's) reads every file again. False when
    git could not (the next git that refreshes does it then)."""
    try:
        await _git(worktree, "update-index", "-q", "--refresh", refresh=True)
    except FingerprintError:
        return False
    return True


async def fingerprint(worktree: Path) -> str:
    """sha256 over HEAD, `git status`, the staged and unstaged diffs and every untracked file's content.

    `git status` may write the refreshed stat data back into the index (the worker's file, outside the
    sandbox; contents and the fingerprint are unchanged by it): without that, a tree whose files were
    lent (chown changes ctime) or rewritten re-reads every such file in each status and diff, which on
    a large repository is most of a fingerprint's time. The three reads after it run at once."""
    status = await _git(worktree, "status", "--porcelain=v1", "-z", "--untracked-files=all", refresh=True)
    head, unstaged, staged = await asyncio.gather(
        _head(worktree),
        _git(worktree, "diff", "--binary"),
        _git(worktree, "diff", "--cached", "--binary"),
    )
    parts = [head, status, unstaged, staged]
    for name in sorted(_untracked(status)):
        parts += [os.fsencode(name), _file_state(worktree / name)]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()
