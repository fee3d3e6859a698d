"""Slots of warm worktrees per repository, leased one holder at a time.

A slot `<dir>/<n>` holds an idle worktree or nothing (vacant). A lease on it is an exclusive `flock` on
`<n>.lock` (the kernel drops it when the holder dies, however it dies) plus a record `<n>.lease`
(owner, host, pid, expiry) for whoever looks: a record left by a dead holder on this host, or an expired
one from another host sharing the directory, is reclaimed; whatever it left in the slot is reset and
verified by the caller like any other lease, so nothing a holder did survives into the next one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

LEASE_S = 900.0  # how long another host respects a record; claims and resets take seconds


@dataclass(frozen=True)
class Lease:
    """A held slot: `path` is where its worktree lives (or would), `reclaimed` names a previous holder
    whose lease was abandoned (crashed or expired) and taken over."""

    path: Path
    owner: str
    fd: int
    reclaimed: str | None = None


def _record(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as abandoned
    return data if isinstance(data, dict) else {}


def _respected(record: dict[str, object] | None, host: str, now: float) -> bool:
    """A record is respected only if it is another host's and not yet expired (ours: the flock decides)."""
    if not record or record.get("host") == host:
        return False
    expires = record.get("expires")
    return isinstance(expires, int | float) and expires > now


def _describe(record: dict[str, object] | None) -> str | None:
    if record is None:
        return None
    return f"{record.get('owner', '?')} (pid {record.get('pid', '?')} on {record.get('host', '?')})"


class Pool:
    """`size` slots in `directory`; `claim` takes one whose occupancy matches, or none."""

    def __init__(self, directory: Path, size: int, *, lease_s: float = LEASE_S, host: str | None = None):
        self.directory = directory
        self.size = max(0, size)
        self._lease_s = lease_s
        self._host = host or socket.gethostname()

    def slots(self) -> list[Path]:
        return [self.directory / str(n) for n in range(self.size)]

    def claim(self, owner: str, *, occupied: bool) -> Lease | None:
        """Lease the first free slot that holds a worktree (`occupied`) or none; None if there is none."""
        if self.size:
            self.directory.mkdir(parents=True, exist_ok=True)
        for slot in self.slots():
            if slot.exists() != occupied:
                continue
            lease = self._try(slot, owner)
            if lease is not None and lease.path.exists() == occupied:  # re-checked under the lock
                return lease
            if lease is not None:
                self.release(lease)
        return None

    def _try(self, slot: Path, owner: str) -> Lease | None:
        fd = os.open(slot.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        record_path = slot.with_suffix(".lease")
        record, now = _record(record_path), time.time()
        if _respected(record, self._host, now):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return None
        mine = {"owner": owner, "host": self._host, "pid": os.getpid(), "expires": now + self._lease_s}
        staging = record_path.with_suffix(f".lease.{os.getpid()}")
        staging.write_text(json.dumps(mine))
        staging.replace(record_path)
        return Lease(slot, owner, fd, reclaimed=_describe(record))

    @staticmethod
    def release(lease: Lease) -> None:
        """Drop the record, then the lock (in that order: a record without a lock is a dead holder's)."""
        try:
            lease.path.with_suffix(".lease").unlink(missing_ok=True)
        finally:
            fcntl.flock(lease.fd, fcntl.LOCK_UN)
            os.close(lease.fd)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would, for every thread, for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def normalize_modes(tree: Path) -> int:
    """Give every directory and file the permission bits a fresh checkout would (git records only the
    executable bit; a previous holder's chmod, setuid or group-write would survive a checkout otherwise).
    Returns how many were changed."""
    mask = ~_umask()
    changed = 0
    for top, dirs, files in os.walk(tree):
        for name in (*dirs, *files):
            if top == str(tree) and name == ".git":
                continue
            path = os.path.join(top, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                continue
            full = 0o777 if stat.S_ISDIR(mode) or mode & stat.S_IXUSR else 0o666
            if stat.S_IMODE(mode) != full & mask:
                os.chmod(path, full & mask)
                changed += 1
    return changed
