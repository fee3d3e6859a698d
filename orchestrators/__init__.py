"""Worker-side workflows: one module per workflow; `registry.WORKFLOWS` is the table by run kind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.store.runs import RunRow
from orchestrators.resources import WorkerContext


@dataclass(frozen=True)
class Outcome:
    """Where a run ends up after its orchestrator returns: a status, a one-line reason, and why it
    stopped short when it did (the message still starts with `needs-info:`/`needs-human:`/`refused:`
    for people; code reads the fields)."""

    status: str
    message: str
    needs_info: bool = False  # questions were asked; the run waits for answers
    needs_human: bool = False  # the implement rounds ran out; a person takes over
    refused: bool = False  # the command was declined with a reply; nothing was done

    @property
    def stopped_short(self) -> bool:
        return self.needs_info or self.needs_human or self.refused

    def flags(self) -> dict[str, bool]:
        """The true flags, as the run's activity records them."""
        return {k: True for k in ("needs_info", "needs_human", "refused") if getattr(self, k)}


Orchestrator = Callable[[WorkerContext, RunRow], Awaitable[Outcome]]
