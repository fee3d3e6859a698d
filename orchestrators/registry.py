"""Every workflow, registered by the run kind the handlers give it."""

from __future__ import annotations

from orchestrators import ORCHESTRATORS, Orchestrator
from orchestrators.commands import run_reject, run_reply, run_retry, run_revise
from orchestrators.implement import run_implement
from orchestrators.ship import run_approve

WORKFLOWS: dict[str, Orchestrator] = {
    "implement": run_implement,
    "approve": run_approve,
    "reject": run_reject,
    "revise": run_revise,
    "retry": run_retry,
    "reply": run_reply,
}


def register() -> None:
    for kind, orchestrator in WORKFLOWS.items():
        ORCHESTRATORS.setdefault(kind, orchestrator)
