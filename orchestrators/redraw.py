"""Keeping a run's progress display current beside its phases instead of between them.

The engine asks for a redraw at every phase transition (started, finished, failed, deferred). A draw
(the run's status comment: a few store reads and one edit on the tracker) then runs while the next phase
works, instead of holding it up twice per phase. Draws run one at a time and each draws the state as it
is when it starts, so asks that arrive during a draw fold into one more draw: the display never goes
back in time and the last one shows the last state. `settle()` waits for the draws and raises the
first error one met; a draw that failed fails the asks after it, so the run stops at the next phase
boundary, as when the engine drew inline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Redraw:
    """One run's display: `ask()` at each transition, `await settle()` before the run's outcome is
    reported, `close()` when the run's job ends however it ends."""

    def __init__(self, draw: Callable[[], Awaitable[None]]) -> None:
        self._draw = draw
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._error: Exception | None = None

    def ask(self) -> None:
        """Draw the current state soon (now, or after the draw under way); raises a failed draw's error."""
        if self._error is not None:
            raise self._error
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._drawing())

    async def _drawing(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            try:
                await self._draw()
            except Exception as exc:  # kept for settle() and the next ask(): the engine's caller decides
                self._error = exc
                return

    async def settle(self) -> None:
        """Wait until the display shows the state as of this call; raise what a draw raised."""
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._error is not None:
            raise self._error

    async def close(self) -> None:
        """End a draw still under way (the run was cancelled or failed before settling)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
