"""Every workflow, registered by the run kind the handlers give it."""

from __future__ import annotations

from orchestrators import ORCHESTRATORS, Orchestrator
from orchestrators.commands import run_help, run_reject, run_reply, run_retry, run_revise, run_status
from orchestrators.implement import run_implement
from orchestrators.ship import run_approve

WORKFLOWS: dict[str, Orchestrator] = {
    "implement": run_implement,
    "approve": run_approve,
    "reject": run_reject,
    "revise": run_revise,
    "retry": run_retry,
    "reply": run_reply,
    "help": run_help,
    "status": run_status,
}


def register() -> None:
    for kind, orchestrator in WORKFLOWS.items():
        ORCHESTRATORS.setdefault(kind, orchestrator)
