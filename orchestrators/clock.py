"""Mechanical time per phase: how long Baton's own steps took (fetch, workspace, brief, commit, post),
kept in the phase's output as `mechanics_ms` so `baton show` and the bench can say where overhead goes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Clock:
    """Milliseconds per named step; a step timed twice adds up."""

    def __init__(self) -> None:
        self.ms: dict[str, int] = {}
        self._mark = time.perf_counter()

    def lap(self, name: str) -> None:
        """Charge the time since the clock started or since its last lap to `name`."""
        now = time.perf_counter()
        self.ms[name] = self.ms.get(name, 0) + round((now - self._mark) * 1000)
        self._mark = now

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = round((time.perf_counter() - start) * 1000)
            self.ms[name] = self.ms.get(name, 0) + elapsed
