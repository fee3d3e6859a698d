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

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = round((time.perf_counter() - start) * 1000)
            self.ms[name] = self.ms.get(name, 0) + elapsed
