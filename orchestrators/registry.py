"""The workflow table: every workflow by the run kind the handlers give it. Static and read-only;
the worker is handed it at start-up, and the skill manifest is checked against it then."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from orchestrators import Orchestrator
from orchestrators.answers import run_answer
from orchestrators.cancel import run_cancel
from orchestrators.ci_analysis import run_analyze_ci
from orchestrators.commands import run_help, run_reject, run_reply, run_retry, run_revise, run_status
from orchestrators.design import run_design
from orchestrators.graph import run_task
from orchestrators.implement import run_implement
from orchestrators.learn import run_learn
from orchestrators.mr_ship import run_approve_mr, run_mr_pushed
from orchestrators.remediate import run_remediate
from orchestrators.ship import run_approve
from orchestrators.venue import by_venue
from orchestrators.verify import run_verify

WORKFLOWS: Mapping[str, Orchestrator] = MappingProxyType(
    {
        # started by events: the trigger label, a handler's Reply (bot/store/inbox.py), new MR commits,
        "implement": run_implement,
        "reply": run_reply,
        "mr_pushed": run_mr_pushed,
        # the design label (an ADR proposal) and the merge of Baton's MR (the learning loop)
        "design": run_design,
        "learn": run_learn,
        # one task of a multi-repository ticket's graph (orchestrators/graph.py starts them)
        "task": run_task,
        # started by commands (config/skills.yaml names them as `orchestrator`)
        "approve": by_venue(run_approve, run_approve_mr),
        "reject": run_reject,
        "revise": run_revise,
        "retry": run_retry,
        "help": run_help,
        "status": run_status,
        "cancel": run_cancel,
        "remediate": run_remediate,
        "verify": run_verify,
        # read-only skills whose one effect is a reply (orchestrators/answers.py)
        "explain": run_answer,
        "summarize": run_answer,
        "classify": run_answer,
        # a failed pipeline on Baton's merge request, and `/analyze-ci` (orchestrators/ci_analysis.py)
        "analyze-ci": run_analyze_ci,
    }
)
