"""Every workflow, registered by the run kind the handlers give it."""

from __future__ import annotations

from bot.store.runs import RunRow
from orchestrators import ORCHESTRATORS, Orchestrator, Outcome
from orchestrators.cancel import run_cancel
from orchestrators.commands import run_help, run_reject, run_reply, run_retry, run_revise, run_status
from orchestrators.implement import run_implement
from orchestrators.mr_ship import run_approve_mr, run_mr_pushed
from orchestrators.remediate import run_remediate
from orchestrators.resources import WorkerContext
from orchestrators.ship import is_gitlab, run_approve


def by_source(jira: Orchestrator, gitlab: Orchestrator) -> Orchestrator:
    """One run kind, two homes: a command on a merge request (`gitlab:` subject) or on a Jira ticket."""

    async def dispatch(wctx: WorkerContext, run: RunRow) -> Outcome:
        chosen = gitlab if is_gitlab(run) else jira
        return await chosen(wctx, run)

    return dispatch


WORKFLOWS: dict[str, Orchestrator] = {
    "implement": run_implement,
    "approve": by_source(run_approve, run_approve_mr),
    "reject": run_reject,
    "revise": run_revise,
    "retry": run_retry,
    "reply": run_reply,
    "help": run_help,
    "status": run_status,
    "cancel": run_cancel,
    "remediate": run_remediate,
    "mr_pushed": run_mr_pushed,
}


def register() -> None:
    for kind, orchestrator in WORKFLOWS.items():
        ORCHESTRATORS.setdefault(kind, orchestrator)
