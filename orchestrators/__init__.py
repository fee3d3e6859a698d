"""Worker-side workflows: one module per workflow, registered here by run kind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.store.runs import RunRow
from orchestrators.resources import WorkerContext


@dataclass(frozen=True)
class Outcome:
    """Where a run ends up after its orchestrator returns: a status and a one-line reason."""

    status: str
    message: str


Orchestrator = Callable[[WorkerContext, RunRow], Awaitable[Outcome]]

# Workflows register here by run kind ("implement", "ship", "remediate", "reply", ...).
ORCHESTRATORS: dict[str, Orchestrator] = {}
