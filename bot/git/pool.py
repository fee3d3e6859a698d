"""Slots of warm worktrees per repository, leased one holder at a time.

A slot `<dir>/<n>` holds an idle worktree or nothing (vacant). A lease on it is an exclusive `flock` on
`<n>.lock` (the kernel drops it when the holder dies, however it dies) plus a record `<n>.lease`
(owner, host, pid, expiry) for whoever looks: a record left by a dead holder is reclaimed (and named in
the log); whatever it left in the slot is reset and verified by the caller like any other lease, so
nothing a holder did survives into the next one.

The flock is the lease, and it holds between the processes of one host only. The directory (Baton's
state directory) must not be shared between hosts: the record is written read-then-replace, not created
atomically, and never renewed, so the expiry check below is a best-effort guard against a mistaken
shared mount, not a lock between hosts.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

LEASE_S = 900.0  # best effort only (see above): how long a record of another host is left alone


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
