"""Calling the agent from a phase: the endpoint from the worker's clients, errors raised, usage kept."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bot.agent.process import kill_stragglers
from bot.agent.profiles import ProfileName
from bot.agent.result import AgentRequest, AgentResult
from bot.agent.runner import run_agent
from bot.git.runner import GitRunner
from orchestrators.resources import WorkerContext


def agent_root(run_id: str) -> Path:
    """Where a run's agent calls keep their private dirs (short: the CLI puts a socket in there)."""
    root = Path(tempfile.gettempdir()) / "baton-agent" / run_id[:16]
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


log = logging.getLogger("baton.agents")


async def scratch_repo(wctx: WorkerContext, run_id: str) -> Path:
    """An empty git repository under the state dir for the planner, which works on a ticket rather than
    a worktree (read-only agents fingerprint their directory with git)."""
    path = Path(wctx.settings.state_dir) / "scratch" / run_id
    path.mkdir(parents=True, exist_ok=True)
    await GitRunner().run(["init", "--quiet", "--end-of-options", str(path)], time_limit=30)
    return path


class AgentFailed(RuntimeError):
    """The agent call ended in an error (API error, timeout, max turns, a reviewer that changed files)."""


async def call(
    wctx: WorkerContext,
    profile: ProfileName,
    prompt: str,
    worktree: Path,
    *,
    output_model: type[BaseModel] | None = None,
    declared: tuple[str, ...] = (),
    run_id: str,
) -> AgentResult:
    endpoint = wctx.need_clients().agent
    run_root = agent_root(run_id)
    orphans = await kill_stragglers(run_root)
    if orphans:
        log.warning("ended %d agent process(es) left by an earlier attempt", len(orphans))
    request = AgentRequest(
        profile=profile,
        prompt=prompt,
        worktree=worktree,
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        timeout_s=endpoint.timeout_s,
        output_model=output_model,
        declared_commands=declared,
        environ=endpoint.environ,
        model=endpoint.model,
        run_root=run_root,
        containment=endpoint.containment,
    )
    result = await run_agent(request)
    if result.is_error:
        raise AgentFailed(f"the {profile} agent failed: {result.error or result.subtype or 'unknown error'}")
    if profile != "implementer" and result.worktree_changed:
        raise AgentFailed(f"the {profile} changed the worktree; its answer is discarded (fails closed)")
    return result


def usage(result: AgentResult) -> dict[str, Any]:
    """The PhaseResult keyword arguments that record this call's tokens and cost."""
    return {
        "input_tokens": result.usage.input_tokens + result.usage.cache_read_input_tokens,
        "output_tokens": result.usage.output_tokens,
        "cost_usd": result.total_cost_usd,
    }


def denials(result: AgentResult) -> list[dict[str, str]]:
    return [{"tool": d.tool, "reason": d.reason, "source": d.source} for d in result.denials]
