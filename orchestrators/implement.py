"""The `implement` workflow: triage → assemble → implement → validate → review → propose."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.agent.result import AgentResult
from bot.git.branch import branch_name
from bot.git.errors import NothingToCommit
from bot.repo_config import (
    FILENAME,
    RepoConfig,
    glob_matches,
    parse_repo_config,
    read_repo_config,
    touched_protected,
)
from bot.store import proposals, runs, status
from bot.store.runs import RunRow
from bot.store.tables import Phase
from orchestrators import Outcome, agents, budget, outputs, plan, progress, prompts
from orchestrators.brief import build_brief
from orchestrators.clock import Clock
from orchestrators.engine import PhaseContext, PhaseFailed, PhaseResult, PhaseState, Workflow, execute, states
from orchestrators.knowledge import facts_for
from orchestrators.outputs import (
    Check,
    Fact,
    Implemented,
    Proposed,
    Reviewed,
    TicketAssembled,
    Triaged,
    Validated,
    implemented,
    reviewed,
    sent_back,
    ticket_assembled,
    validated,
)
from orchestrators.proposal import FileChange, ProposalView, block, render_failure, render_proposal
from orchestrators.resources import Clients, WorkerContext
from orchestrators.status_comment import Ending
from orchestrators.ticket import comments, linked, project_for, ticket_info
from orchestrators.validate import run_commands, specs_from, summarize_failure
from orchestrators.venue import revisions_of
from orchestrators.verdicts import Triage, Verdict

CI_FILES = (".gitlab-ci.yml", ".github/**")
DIFF_FOR_REVIEW = 60_000


def _clients(ctx: PhaseContext) -> Clients:
    return ctx.wctx.need_clients()


async def triage(ctx: PhaseContext) -> PhaseResult:
    """Is the ticket specific enough? If not, ask concrete questions on it and stop in needs-info."""
    clients, run, key = _clients(ctx), ctx.run, progress.issue_key(ctx.run)
    issue = await clients.jira.issue(key)
    project_for(clients, issue)
    brief = build_brief(
        ticket_info(issue, clients.jira.config.url),
        linked(issue),
        comments(issue),
        [],
        RepoConfig(),
    )
    prompt = prompts.triage(key, brief.markdown)
    result = await agents.ask(ctx.wctx, "planner", prompt, Triage, run_id=run.id)
    answer = result.output(Triage)
    output = Triaged(
        ready=answer.ready,
        summary=answer.summary,
        questions=tuple(answer.questions),
        agent_ms=result.duration_ms,
        mechanics_ms=result.mechanics_ms,
    ).model_dump(mode="json")
    if answer.ready:
        return PhaseResult(output, **agents.usage(result))
    questions = (
        "\n".join(f"# {q}" for q in answer.questions)
        or "# What exactly should change, and how do we know it is done?"
    )
    text = (
        f"Before I start on {key} I need a few answers:\n{questions}\n\n"
        "Edit the ticket (or answer in a comment), then reply /retry to continue."
    )
    await clients.jira.add_comment(key, text, f"run:{run.id}:questions:{ctx.attempt}", run_id=run.id)
    stop = Outcome(
        status.WAITING, f"needs-info: {len(answer.questions)} question(s) posted on {key}", needs_info=True
    )
    return PhaseResult(output, stop=stop, **agents.usage(result))


async def assemble(ctx: PhaseContext) -> PhaseResult:
    """Python only: ticket, links, comments, repo config, mirror fetch, worktree and branch, the team's
    facts for the modules the ticket touches (orchestrators/knowledge.py), the brief."""
    clients, run, key, clock = _clients(ctx), ctx.run, progress.issue_key(ctx.run), Clock()
    with clock.step("fetch"):
        issue = await clients.jira.issue(key)
        mapping = project_for(clients, issue)
        project = await clients.gitlab.project(mapping.gitlab_project)
        target = mapping.target_branch or project.default_branch
        repo_id = project.path_with_namespace
        await clients.workspace.ensure_mirror(repo_id, project.http_url_to_repo, clients.gitlab_token)
    with clock.step("workspace"):
        later = bool(await runs.earlier(ctx.wctx.sm, run))  # not the ticket's first run: its own branch
        branch = branch_name(issue.key, issue.summary, run.id if later else None)
        declared = parse_repo_config(await clients.workspace.read_at(repo_id, target, FILENAME))

        async def implementer(path: Path, placed: bool = False) -> None:
            await agents.prestart(
                ctx.wctx,
                "implementer",
                path,
                declared=declared.declared_commands,
                run_id=run.id,
                placed=placed,
            )

        # the implementer's CLI starts as a warm worktree arrives, while it is reset (its files are lent
        # and its prompt given only once the reset is done and verified), the brief written and the phase
        # recorded; as a fresh worktree is ready, else
        worktree = await clients.workspace.create_worktree(
            repo_id, run.id, target, branch, sparse=declared.checkout, arriving=implementer
        )
        base_sha = await clients.workspace.head(worktree)
        await implementer(worktree, placed=True)  # places the CLI started above, or starts one
    with clock.step("brief"):
        config_text, repo = read_repo_config(worktree)
        ticket = ticket_info(issue, clients.jira.config.url)
        about = f"{ticket.summary}\n\n{ticket.description}"
        found = await facts_for(clients.knowledge, about, worktree, repo)
        brief = build_brief(
            ticket, linked(issue), comments(issue), found.facts, repo, knowledge_unavailable=found.unavailable
        )
    shown = found.facts[: len(brief.json["knowledge"])]  # what the budget left in the brief
    output = TicketAssembled(
        worktree=worktree, branch=branch, base_sha=base_sha, target_branch=target,
        project_id=project.id, project_path=repo_id,
        remote_url=project.http_url_to_repo, repo=repo, repo_config=config_text, brief=brief.markdown,
        brief_tokens=brief.tokens, summary=issue.summary, knowledge=tuple(Fact.of(f) for f in shown),
        knowledge_unavailable=found.unavailable, mechanics_ms=clock.ms,
    )  # fmt: skip
    return PhaseResult(output.model_dump(mode="json"))


def _feedback(ctx: PhaseContext) -> list[str]:
    notes = sent_back(ctx)
    notes += [f"A person asked for this change (/revise): {text}" for text in revisions_of(ctx.run)]
    return [note for note in notes if note]


async def implement(ctx: PhaseContext, prompted: asyncio.Event | None = None) -> PhaseResult:
    assembled = ticket_assembled(ctx)
    worktree = assembled.workdir()
    key = progress.issue_key(ctx.run)
    prompt = prompts.implement(key, assembled.brief, _feedback(ctx))
    result = await agents.call(
        ctx.wctx,
        "implementer",
        prompt,
        worktree,
        declared=assembled.repo.declared_commands,
        run_id=ctx.run.id,
        prompted=prompted,
    )
    return PhaseResult(Implemented.of(result).model_dump(mode="json"), **agents.usage(result))


async def implement_then_warm_review(ctx: PhaseContext) -> PhaseResult:
    """`implement`, with the reviewer's CLI started for the review after validate (the ticket workflow's
    order) once the implementer's CLI is up and at work, so that neither start waits for the other; if
    the implementer ends first, as it ends. A later round keeps the waiting reviewer (agents.prestart)."""
    prompted = asyncio.Event()
    worktree = ticket_assembled(ctx).workdir()

    async def warm_reviewer() -> None:
        await prompted.wait()
        await agents.prestart(ctx.wctx, "reviewer", worktree, output_model=Verdict, run_id=ctx.run.id)

    warming = asyncio.create_task(warm_reviewer())
    try:
        done = await implement(ctx, prompted)
    except BaseException:
        # it stops at its next await, before it could start a CLI (one it started, the job's end discards)
        warming.cancel()
        raise
    if not prompted.is_set():  # the call never got that far
        warming.cancel()
    await asyncio.wait({warming})
    if warming.cancelled():
        await agents.prestart(ctx.wctx, "reviewer", worktree, output_model=Verdict, run_id=ctx.run.id)
    return done


def _split_protected(changed: list[str], repo: RepoConfig) -> tuple[list[str], list[str]]:
    """(changes the agent must revert, CI-file changes flagged for the human)."""
    hits = touched_protected(changed, repo)
    ci = [p for p in hits if any(glob_matches(pattern, p) for pattern in CI_FILES)]
    return [p for p in hits if p not in ci], ci


async def validate(ctx: PhaseContext) -> PhaseResult:
    """The repository's format, lint and test commands, then what the change is once they ran (what the
    review reads and the proposal commits: a formatter's rewrites included); failures go back to
    implement with the output."""
    assembled = outputs.assembled(ctx)  # the ticket's or the MR thread's: validate serves both workflows
    worktree, repo = assembled.workdir(), assembled.repo
    workspace = _clients(ctx).workspace
    agent = ctx.wctx.need_clients().agent
    results = await run_commands(
        worktree,
        specs_from(repo),
        environ=agent.environ,
        timeout_s=repo.timeout_s,
        containment=agent.containment,
    )
    tree = await workspace.snapshot(worktree)
    changed = [f.path for f in (await workspace.diffstat(worktree, assembled.base_sha, at=tree)).files]
    blocked, ci = _split_protected(changed, repo)
    problems = [summarize_failure(results)]
    if not changed:
        problems.append("No file was changed. Implement the ticket.")
    if blocked:
        problems.append(f"These paths are protected and must not change; revert them: {', '.join(blocked)}")
    feedback = "\n\n".join(p for p in problems if p)
    output = Validated(
        passed=not feedback,
        feedback=feedback,
        checks=tuple(Check.of(r) for r in results),
        ci_changes=tuple(ci),
        changed=tuple(changed),
        tree=tree,
    )
    return PhaseResult(output.model_dump(mode="json"), goto="implement" if feedback else None)


async def review(ctx: PhaseContext) -> PhaseResult:
    """A read-only reviewer in a separate context checks the diff against the brief and the decisions
    (ADRs) it quoted, and returns a typed verdict; blockers go back to implement."""
    assembled = ticket_assembled(ctx)
    worktree = assembled.workdir()
    key = progress.issue_key(ctx.run)
    checked = validated(ctx)  # the worktree as validate left it: read once (Workspace.snapshot)
    diff = (await _clients(ctx).workspace.diff(worktree, assembled.base_sha, at=checked.tree))[
        :DIFF_FOR_REVIEW
    ]
    checks = "\n".join(c.line() for c in checked.checks)
    prompt = prompts.review(
        key, assembled.brief, diff, checks, assembled.decisions(), assembled.knowledge_unavailable
    )
    result = await agents.call(
        ctx.wctx, "reviewer", prompt, worktree, output_model=Verdict, run_id=ctx.run.id
    )
    verdict = result.output(Verdict)
    return verdict_result(verdict, result)


def verdict_result(verdict: Verdict, result: AgentResult) -> PhaseResult:
    """The review phase's output; blockers send the change back to implement."""
    feedback = ""
    if not verdict.passes:
        feedback = "The reviewer found blockers:\n" + "\n".join(
            f"- {b.file or ''}:{b.line or ''} {b.text}" for b in verdict.blockers or []
        )
    output = Reviewed(
        verdict=verdict, feedback=feedback, agent_ms=result.duration_ms, mechanics_ms=result.mechanics_ms
    )
    return PhaseResult(
        output.model_dump(mode="json"), goto="implement" if feedback else None, **agents.usage(result)
    )


class ChangedSinceValidate(RuntimeError):
    """The worktree is not what validate checked and the review read: nothing is proposed."""


def revalidate(exc: ChangedSinceValidate) -> PhaseResult:
    """What a proposing phase returns on `ChangedSinceValidate`: back to validate (and review), which
    check the worktree as it is now; the commit already made is what the next propose finds."""
    return PhaseResult({"changed_since_validate": str(exc)}, goto="validate")


async def commit_proposal(ctx: PhaseContext, worktree: Path, message: str) -> str:
    """Commit the worktree; the commit's tree must be the one validate checked (and the review read)
    when the workflow kept it, else `ChangedSinceValidate` (nothing is proposed: `revalidate`)."""
    workspace = _clients(ctx).workspace
    try:
        sha = str(await workspace.commit_all(worktree, message))
    except NothingToCommit:  # committed before a crash: the proposal is HEAD
        sha = str(await workspace.head(worktree))
    checked = validated(ctx) if "validate" in ctx.outputs else None
    if checked is not None and checked.tree and await workspace.tree_of(worktree, sha) != checked.tree:
        raise ChangedSinceValidate(
            f"the worktree changed after validate (commit {sha[:12]} is not the tree validate checked and "
            "the review read): validated again before anything is proposed"
        )
    return sha


async def propose(ctx: PhaseContext) -> PhaseResult:
    """Commit locally, record the proposal (bound to its SHA) and post it on the ticket; the run waits."""
    clients, run, key, clock = _clients(ctx), ctx.run, progress.issue_key(ctx.run), Clock()
    assembled = ticket_assembled(ctx)
    worktree = assembled.workdir()
    with clock.step("commit"):
        try:
            sha = await commit_proposal(
                ctx, worktree, f"[{key}] {assembled.summary}\n\nProposed by Baton run {run.id}."
            )
        except ChangedSinceValidate as exc:
            return revalidate(exc)
        stat = await clients.workspace.diffstat(worktree, assembled.base_sha, at=sha)
        diff = await clients.workspace.diff(worktree, assembled.base_sha, at=sha)
    with clock.step("post"):
        target = {"kind": "jira", "issue_key": key, "worktree": str(worktree), **assembled.target()}
        proposal = await proposals.create(
            ctx.wctx.sm, run.id, run.subject, sha, hashlib.sha256(diff.encode()).hexdigest(), target
        )
        spent, checked = await _spent(ctx), validated(ctx)
        view = ProposalView(
            proposal_id=proposal.id, summary=implemented(ctx).summary or assembled.summary,
            commit_sha=sha, files=tuple(FileChange(f.path, f.added, f.deleted) for f in stat.files),
            checks=tuple(c.result() for c in checked.checks), verdict=reviewed(ctx).verdict,
            protected_changes=checked.ci_changes, diff=diff, **spent,
        )  # fmt: skip
        await clients.jira.add_comment(
            key, render_proposal(view, flavor="jira"), f"run:{run.id}:proposal:{sha[:12]}", run_id=run.id
        )
    stop = Outcome(
        status.WAITING, f"proposal {proposal.id} ({sha[:12]}) posted on {key}; waiting for /approve"
    )
    output = Proposed(proposal_id=proposal.id, sha=sha, mechanics_ms=clock.ms)
    return PhaseResult(output.model_dump(mode="json"), stop=stop)


async def _spent(ctx: PhaseContext) -> dict[str, Any]:
    phases = await states(ctx.wctx.sm, WORKFLOW, ctx.run.id)
    return {
        "input_tokens": sum(p.input_tokens for p in phases),
        "output_tokens": sum(p.output_tokens for p in phases),
        "cost_usd": sum(p.cost_usd for p in phases),
    }


async def observe(wctx: WorkerContext, run: RunRow, phases: list[PhaseState]) -> None:
    await progress.update_status(wctx, run, phases)


WORKFLOW = Workflow(
    "implement",
    (("triage", triage), ("assemble", assemble), ("implement", implement_then_warm_review),
     ("validate", validate), ("review", review), ("propose", propose)),
    max_rounds=3,
    observer=observe,
)  # fmt: skip


async def _finish(wctx: WorkerContext, run: RunRow, outcome: Outcome) -> Outcome:
    ok = outcome.status == status.WAITING and not outcome.stopped_short
    await progress.update_status(
        wctx, run, await states(wctx.sm, WORKFLOW, run.id), Ending(ok, outcome.message)
    )
    if outcome.needs_human:
        evidence = await _evidence(wctx, run)
        text = render_failure(
            outcome.message, "Reply /retry to try again, or /revise <what to change>.", flavor="jira"
        )
        await wctx.need_clients().jira.add_comment(
            progress.issue_key(run), f"{text}\n\n{evidence}", f"run:{run.id}:needs-human", run_id=run.id
        )
    return outcome


async def _evidence(wctx: WorkerContext, run: RunRow) -> str:
    """The last round's failing checks and review blockers, for the person who takes over."""
    async with wctx.sm() as session:
        query = select(Phase).where(Phase.run_id == run.id, Phase.name.in_(("validate", "review")))
        rows = list((await session.execute(query)).scalars())
    text = "\n\n".join(str((p.output or {}).get("feedback") or "") for p in rows).strip()[:6000]
    return block(text, "jira") if text else ""


async def run_implement(wctx: WorkerContext, run: RunRow) -> Outcome:
    """The orchestrator: one active run per ticket, pickup acknowledgement, the phases, the final status."""
    others = await runs.others_open(wctx.sm, run)
    if others:
        text = f"Baton is already working on this ticket (run {others[0][:12]}); this request joins it."
        await wctx.need_clients().jira.add_comment(
            progress.issue_key(run), text, f"run:{run.id}:joined", run_id=run.id
        )
        return Outcome(status.CANCELLED, f"joined run {others[0]}")
    if await plan.is_graph_ticket(wctx, run):  # several repositories: a planned task graph
        return await plan.run_graph(wctx, run)
    await progress.acknowledge(wctx, run)
    try:
        outcome = await execute(WORKFLOW, wctx, run)
    except PhaseFailed as exc:
        await _finish(wctx, run, Outcome(status.FAILED, str(exc)))
        step = budget.next_step(exc, "Reply /retry to run the failed phase again.")
        text = render_failure(str(exc)[:500], step, flavor="jira")
        await wctx.need_clients().jira.add_comment(
            progress.issue_key(run), text, f"run:{run.id}:failed", run_id=run.id
        )
        return Outcome(status.FAILED, str(exc))
    finally:
        await agents.discard(wctx, run.id)  # a CLI started for a call the run did not make
    return await _finish(wctx, run, outcome)
