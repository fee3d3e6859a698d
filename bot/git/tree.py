"""Walking, settling and deleting worktrees without recursion.

A run's agent may leave anything in its worktree: a tree thousands of levels deep, paths longer than
PATH_MAX, a `.git` below the root (which git's own status and clean skip), FIFOs. A recursive walk or
delete (os.walk and shutil.rmtree recurse on Python 3.11) dies of RecursionError on the first; so these
walk with an explicit stack, bounded in depth, and delete with `rm -rf` (coreutils walks iteratively,
relative to directory descriptors, so neither depth nor path length stops it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path

MAX_DEPTH = 256  # deeper than any checkout Baton serves; a deeper tree is discarded, not walked
RM_TIMEOUT_S = 600.0
log = logging.getLogger(__name__)


class Unservable(Exception):
    """The tree holds something a fresh checkout never would; it must not be served again."""


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would, for every thread, for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def entries(tree: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every path below `tree` but its root `.git`, as (relative path, lstat), parents before their
    children (a consumer may fix a directory's mode before it is read). Raises Unservable past MAX_DEPTH
    and OSError where the tree cannot be read (a path longer than PATH_MAX, a directory gone)."""
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        rel, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Unservable(f"deeper than {MAX_DEPTH} directories")
        with os.scandir(tree / rel if rel else tree) as found:
            listed = [(f"{rel}/{e.name}" if rel else e.name, e.stat(follow_symlinks=False)) for e in found]
        for child, info in listed:
            if child == ".git":
                continue
            yield child, info
            if stat.S_ISDIR(info.st_mode) and os.path.basename(child) != ".git":
                stack.append((child, depth + 1))


def settle(tree: Path, gitlinks: Collection[str] = ()) -> int:
    """Before `git clean` (so a tree past the depth bound is refused before git's quadratic clean of it):
    delete what git's status and clean never see but a fresh checkout never has
    (a `.git` below the root, FIFOs, sockets, devices), give every file and directory the permission bits
    a fresh checkout would (git records only the executable bit), and raise Unservable for what cannot be
    put right here (a file with another hard link, anything inside a submodule's directory `gitlinks`).
    Returns how many entries were changed or deleted."""
    mask = ~_umask()
    changed = 0
    inside = tuple(f"{g}/" for g in gitlinks)
    for rel, info in entries(tree):
        path = tree / rel
        mode = info.st_mode
        if rel.startswith(inside):
            raise Unservable(f"{rel[:200]!r} is inside a submodule's directory")
        if os.path.basename(rel) == ".git":
            if not remove_tree(path):
                raise Unservable(f"could not delete {rel[:200]!r}")
            changed += 1
        elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            path.unlink()
            changed += 1
        elif stat.S_ISREG(mode) and info.st_nlink > 1:
            raise Unservable(f"{rel[:200]!r} has another hard link")
        elif not stat.S_ISLNK(mode):
            full = 0o777 if stat.S_ISDIR(mode) or mode & stat.S_IXUSR else 0o666
            if stat.S_IMODE(mode) != full & mask:
                os.chmod(path, full & mask)
                changed += 1
    return changed


def remove_tree(path: Path) -> bool:
    """Delete `path` (file or tree, never following a symlink or leaving its filesystem); True if gone."""
    if not os.path.lexists(path):
        return True
    try:
        subprocess.run(
            ["rm", "-rf", "--one-file-system", "--", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=RM_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("could not run rm on %s: %s", path, type(exc).__name__)
    return not os.path.lexists(path)


def discard(path: Path, trash: Path) -> bool:
    """Delete `path`; if that fails, move it into `trash` (same filesystem) so its name is free again.
    True if `path` no longer exists."""
    if remove_tree(path):
        return True
    with contextlib.suppress(OSError):
        trash.mkdir(parents=True, exist_ok=True)
        path.rename(trash / f"{path.name}-{uuid.uuid4().hex}")
        log.warning("could not delete %s; moved it to %s", path, trash)
    return not os.path.lexists(path)


def sweep(trash: Path) -> None:
    """Try again to delete what `discard` moved aside."""
    with contextlib.suppress(OSError):
        for leftover in list(trash.iterdir()):
            remove_tree(leftover)
