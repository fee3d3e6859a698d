"""The worker and the web process close themselves to their own uid: not dumpable, so no other
process of the same user can read their /proc entries (environ, memory, fds) or attach a debugger."""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("baton.containment")

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def _prctl(option: int, value: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    result: int = libc.prctl(option, value, 0, 0, 0)
    return result


def no_dump() -> bool:
    """Mark this process non-dumpable (its /proc files become root's); True when it took effect."""
    if _prctl(PR_SET_DUMPABLE, 0) != 0:
        log.warning("could not mark the process non-dumpable (errno %d)", ctypes.get_errno())
        return False
    return not dumpable()


def dumpable() -> bool:
    return _prctl(PR_GET_DUMPABLE) == 1
