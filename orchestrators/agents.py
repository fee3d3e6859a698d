"""Calling the agent from a phase: the endpoint from the worker's clients, errors raised, usage kept."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bot.agent import direct
from bot.agent.process import kill_stragglers
from bot.agent.profiles import ProfileName
from bot.agent.result import AgentRequest, AgentResult
from bot.agent.runner import Prestarted, run_agent
from bot.git.runner import GitRunner
from bot.store import runs, status
from bot.store.engine import utcnow
from orchestrators import budget
from orchestrators.resources import WorkerContext

OVER_BUDGET = "error_max_budget_usd"  # the CLI's result subtype when --max-budget-usd stopped it


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
    """The agent call ended in an error (API error, timeout, max turns, a reviewer that changed files).
    `usage` is what the call cost anyway: the engine records it on the failed phase."""

    def __init__(self, message: str, usage: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.usage = usage or {}


async def _standing(wctx: WorkerContext, run_id: str) -> budget.Standing | None:
    """The caps on the run's subject and team with what has been spent (None: no run or no clients)."""
    run = await runs.by_id(wctx.sm, run_id)
    clients = wctx.clients
    if run is None or clients is None:
        return None
    return await budget.standing(wctx.sm, run.subject, clients.projects, wctx.settings, utcnow())


HOLD_MARGIN_S = 300.0  # a hold outlives its call's timeout by this much, then expires on its own
RESERVE_TRIES = 5  # reads of the store before the last, whose take does not wait for a quiet moment


async def reserve(wctx: WorkerContext, run_id: str, pending_usd: float = 0.0) -> float | None:
    """What the next agent call of the run may spend (None: no cap applies): the tightest cap's remainder
    less what other runs' calls on the same ticket or team hold now (bot/holds.py), held for this call
    until the run's job ends. `BudgetExceeded` when a cap is reached or all that is left is held."""
    run = await runs.by_id(wctx.sm, run_id)
    clients = wctx.clients
    if run is None or clients is None:
        return None
    now = utcnow()
    found_limits, _ = budget.limits(run.subject, clients.projects, wctx.settings)
    if not found_limits:
        return None
    keys = [budget.hold_key(limit, now) for limit in found_limits]
    ttl = clients.agent.timeout_s + HOLD_MARGIN_S
    for attempt in range(RESERVE_TRIES):
        last = attempt == RESERVE_TRIES - 1
        epochs = None if last else await wctx.holds.epochs(keys)  # read before the store is
        found = await budget.standing(wctx.sm, run.subject, clients.projects, wctx.settings, now)
        stop = found.stop(pending_usd)
        if stop is not None:
            raise budget.BudgetExceeded(stop)
        wanted = [(key, cap.remaining_usd - pending_usd) for key, cap in zip(keys, found.caps, strict=True)]
        grant = await wctx.holds.take(run_id, wanted, epochs, pending_usd, ttl)
        if grant is not None and grant <= 0:
            raise budget.BudgetExceeded(found.held(pending_usd))
        if grant is not None:
            return grant
    return None  # not reached: the last try does not compare epochs


async def allowance(wctx: WorkerContext, run_id: str, pending_usd: float = 0.0) -> float | None:
    """What the next agent call of the run may spend (None: no cap applies), from what has been spent on
    its subject and its team; `BudgetExceeded` naming the cap when one is reached. `pending_usd` is what
    the current phase has spent but not recorded yet."""
    found = await _standing(wctx, run_id)
    if found is None:
        return None
    stop = found.stop(pending_usd)
    if stop is not None:
        raise budget.BudgetExceeded(stop)
    remaining = found.remaining_usd
    return None if remaining is None else remaining - pending_usd


def warm_root(run_id: str) -> Path:
    """Where a run's prestarted CLIs keep their private dirs: under `agent_root` (whatever finds a run's
    agent processes finds them), spared by the straggler sweep before a call while this worker holds one."""
    root = agent_root(run_id) / "warm"
    root.mkdir(exist_ok=True, mode=0o700)
    return root


def _request(
    wctx: WorkerContext,
    profile: ProfileName,
    prompt: str,
    worktree: Path,
    output_model: type[BaseModel] | None,
    declared: tuple[str, ...],
    run_root: Path,
    cap: float | None,
) -> AgentRequest:
    endpoint = wctx.need_clients().agent
    return AgentRequest(
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
        max_budget_usd=cap,
    )


async def prestart(
    wctx: WorkerContext,
    profile: ProfileName,
    worktree: Path,
    *,
    output_model: type[BaseModel] | None = None,
    declared: tuple[str, ...] = (),
    run_id: str,
    placed: bool = True,
) -> None:
    """Start the CLI of the run's next `profile` call now, its prompt held back (bot/agent/runner.py
    `Prestarted`), so its 0.3-0.4 s start overlaps what the run does meanwhile; `call` adopts it when
    it is asked for the same call. One per profile and run: a waiting one started for the same call is
    kept (and placed, see below), any other replaced. `placed=False`: the worktree is still being
    reset; the CLI starts, and waits for a later `prestart` of the same call to place it (a CLI whose
    directory was replaced meanwhile is replaced too). Not when a cost cap applies to the run: the cap
    the CLI is given (`--max-budget-usd`) is only known when the call is made (`reserve`). Best effort:
    it never fails the phase that asks for it (the call then starts as it would have)."""
    try:
        run = await runs.by_id(wctx.sm, run_id)
        clients = wctx.clients
        if run is None or clients is None or budget.limits(run.subject, clients.projects, wctx.settings)[0]:
            await discard(wctx, run_id, profile)
            return
        request = _request(wctx, profile, "", worktree, output_model, declared, warm_root(run_id), None)
        waiting = wctx.prestarted.get((run_id, profile))
        fits = waiting is not None and waiting.waiting and waiting.fits(request)
        # (one asked for before its worktree is ready replaces any: that started in an earlier directory)
        if waiting is not None and fits and placed and waiting.place():
            log.info("run %s: its prestarted %s still waits; kept", run_id[:12], profile)
            return
        await discard(wctx, run_id, profile)
        wctx.prestarted[(run_id, profile)] = Prestarted(request, placed=placed)
    except Exception:  # an optimisation: whatever went wrong, the call itself will say so
        log.warning("could not prestart the %s for run %s", profile, run_id[:12], exc_info=True)


async def discard(wctx: WorkerContext, run_id: str, profile: ProfileName | None = None) -> None:
    """End the run's prestarted CLIs (only the `profile` one if given) unused: the run went elsewhere, or
    its job ends."""
    for key in [k for k in wctx.prestarted if k[0] == run_id and profile in (None, k[1])]:
        await wctx.prestarted.pop(key).discard()


async def _adopted(
    wctx: WorkerContext, request: AgentRequest, run_id: str, prompted: asyncio.Event | None
) -> AgentResult | None:
    """The call's result from the run's prestarted CLI of its profile when that was started for exactly
    this call (worktree, output, commands, no cap); None after discarding one that was not."""
    warm = wctx.prestarted.pop((run_id, request.profile), None)
    if warm is None:
        return None
    if not warm.fits(replace(request, run_root=warm.request.run_root)):
        log.info("run %s: the prestarted %s does not fit this call; discarded", run_id[:12], request.profile)
        await warm.discard()
        return None
    log.info("run %s: the %s call takes its prestarted CLI", run_id[:12], request.profile)
    result = await warm.ask(request.prompt, prompted)
    if result is None:  # it ended before its prompt: /cancel sweeps the run's CLIs, so do not start anew
        run = await runs.by_id(wctx.sm, run_id)
        if run is not None and run.status == status.CANCELLED:
            raise asyncio.CancelledError(f"run {run_id[:12]} was cancelled")
    return result


async def call(
    wctx: WorkerContext,
    profile: ProfileName,
    prompt: str,
    worktree: Path,
    *,
    output_model: type[BaseModel] | None = None,
    declared: tuple[str, ...] = (),
    run_id: str,
    pending_usd: float = 0.0,
    prompted: asyncio.Event | None = None,
) -> AgentResult:
    """One agent call for the run, within its cost caps (`allowance`); `AgentFailed` (or `BudgetExceeded`
    when the CLI stopped at the cap) on an error or a read-only profile that changed the worktree.
    `prompted` is set once the call's CLI is up and has its prompt."""
    cap = await reserve(wctx, run_id, pending_usd)
    run_root = agent_root(run_id)
    request = _request(wctx, profile, prompt, worktree, output_model, declared, run_root, cap)
    spare = warm_root(run_id) if any(k[0] == run_id for k in wctx.prestarted) else None
    orphans = await kill_stragglers(run_root, spare=spare)
    if orphans:
        log.warning("ended %d agent process(es) left by an earlier attempt", len(orphans))
    try:
        result = await _adopted(wctx, request, run_id, prompted) or await run_agent(request, prompted)
    except asyncio.CancelledError as exc:
        cancelled_usage(exc)
        raise
    await _settle(wctx, run_id, cap, pending_usd, result)
    if result.subtype == OVER_BUDGET:
        raise await _over_budget(wctx, run_id, pending_usd + result.total_cost_usd, result)
    _checked(result)
    if profile != "implementer" and result.worktree_changed:
        raise AgentFailed(
            f"the {profile} changed the worktree; its answer is discarded (fails closed)", usage(result)
        )
    return result


async def ask(
    wctx: WorkerContext,
    profile: ProfileName,
    prompt: str,
    output_model: type[BaseModel],
    *,
    run_id: str,
    pending_usd: float = 0.0,
) -> AgentResult:
    """One question that needs no tool and no worktree (triage reads the ticket's text only), asked of
    the model directly (bot/agent/direct.py): no CLI to start, no sandbox, no scratch repository. Within
    the run's cost caps like `call`; `AgentFailed` on an error."""
    cap = await reserve(wctx, run_id, pending_usd)
    endpoint = wctx.need_clients().agent
    question = direct.Question(
        profile=profile,
        prompt=prompt,
        output_model=output_model,
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        model=endpoint.model,
        timeout_s=endpoint.timeout_s,
    )
    result = await direct.ask(question)
    await _settle(wctx, run_id, cap, pending_usd, result)
    return _checked(result)


async def _settle(
    wctx: WorkerContext, run_id: str, cap: float | None, pending_usd: float, result: AgentResult
) -> None:
    """The run now holds what it has spent and not recorded yet (only when a cap applies)."""
    if cap is not None:
        ttl = wctx.need_clients().agent.timeout_s + HOLD_MARGIN_S
        await wctx.holds.settle(run_id, pending_usd + result.total_cost_usd, ttl)


def _checked(result: AgentResult) -> AgentResult:
    if result.is_error:
        raise AgentFailed(
            f"the {result.profile} agent failed: {result.error or result.subtype or 'unknown error'}",
            usage(result),
        )
    return result


async def _over_budget(
    wctx: WorkerContext, run_id: str, spent_usd: float, result: AgentResult
) -> budget.BudgetExceeded:
    """The CLI stopped the call at the budget it was given: say which cap, with what the call cost."""
    found = await _standing(wctx, run_id) or budget.Standing()
    return budget.BudgetExceeded(found.used_up(spent_usd), usage(result))


def cancelled_usage(exc: BaseException) -> None:
    """A cancelled call (/cancel, a worker shutdown) carries what it streamed before it was stopped (the
    runner's `partial` result) as `usage`, which the engine adds to the phase."""
    partial = getattr(exc, "partial", None)
    exc.usage = usage(partial) if isinstance(partial, AgentResult) else {}  # type: ignore[attr-defined]


def usage(result: AgentResult) -> dict[str, Any]:
    """The PhaseResult keyword arguments that record this call's tokens and cost; input counts every
    prompt token the model read: fresh, written to the cache and read from it."""
    return {
        "input_tokens": result.usage.prompt_tokens,
        "output_tokens": result.usage.output_tokens,
        "cost_usd": result.total_cost_usd,
    }


def added(total: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Two calls' `usage` summed key by key."""
    return {k: total.get(k, 0) + more.get(k, 0) for k in {**total, **more}}


@dataclass
class Tally:
    """What the agent calls of one phase have cost so far; a call that fails (`AgentFailed`,
    `BudgetExceeded`) carries the earlier calls' cost in its `usage` too, so the engine charges the
    failed phase everything it spent (`/remediate all` makes one call per thread)."""

    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def cost_usd(self) -> float:
        return float(self.usage.get("cost_usd", 0.0))

    async def of(self, call: Awaitable[AgentResult]) -> AgentResult:
        try:
            result = await call
        except (AgentFailed, budget.BudgetExceeded, asyncio.CancelledError) as exc:
            exc.usage = added(self.usage, getattr(exc, "usage", {}))  # type: ignore[union-attr]
            raise
        self.usage = added(self.usage, usage(result))
        return result


def denials(result: AgentResult) -> list[dict[str, str]]:
    return [{"tool": d.tool, "reason": d.reason, "source": d.source} for d in result.denials]
