"""`/remediate` in an MR thread: the whole thread, its diff position and the MR → a fix proposed there.

Phases: assemble (Python: MR, thread(s), diff, linked ticket, mirror, a worktree of the MR's source
branch, the team's facts for the files the MR and the threads touch, the brief) → implement (agent) →
validate (the repo's checks) → review (read-only agent, also given the decisions quoted) → propose
(commit, record the proposal bound to its SHA and to the branch head it builds on, reply in the thread).
`/remediate all` on the MR overview addresses every unresolved thread in one proposal, one commit per
thread.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.agent.result import AgentResult
from bot.clients.gitlab import Discussion, MergeRequest, MergeRequestDiff, ProjectRef
from bot.clients.jira import JiraProblem
from bot.effects import is_bot_text
from bot.git.branch import is_valid_branch
from bot.git.errors import NothingToCommit, UnsafeInput
from bot.git.workspace import UPSTREAM_PREFIX
from bot.repo_config import RepoConfig, read_repo_config
from bot.store import proposals, runs, status
from bot.store.runs import RunRow
from bot.store.tables import Phase
from bot.triggers import ThreadCommand
from orchestrators import Outcome, agents, budget, progress, prompts
from orchestrators.clock import Clock
from orchestrators.engine import (
    PhaseContext,
    PhaseFailed,
    PhaseResult,
    PhaseState,
    Workflow,
    execute,
    reset_from,
    states,
)
from orchestrators.implement import (
    ChangedSinceValidate,
    commit_proposal,
    revalidate,
    validate,
    verdict_result,
)
from orchestrators.knowledge import facts_for
from orchestrators.outputs import (
    Fact,
    Proposed,
    Refused,
    StoredThread,
    ThreadAssembled,
    ThreadCommit,
    ThreadsImplemented,
    reviewed,
    sent_back,
    thread_assembled,
    threads_implemented,
    validated,
)
from orchestrators.progress import status_key
from orchestrators.proposal import FileChange, ProposalView, block, render_failure
from orchestrators.resources import Clients, WorkerContext
from orchestrators.status_comment import Ending, StatusView, render_status
from orchestrators.threads import (
    TARGET_KIND,
    BriefInputs,
    DiffPosition,
    LinkedTicket,
    MergeRequestInfo,
    Thread,
    ThreadNote,
    build_thread_brief,
    commit_message,
    excerpt,
    overview_brief,
    remediate_prompt,
    render_thread_proposal,
    ticket_keys,
    unresolved,
)
from orchestrators.venue import (
    addressee,
    args_of,
    author_of,
    command_text,
    is_all,
    refuse,
    respond,
    revisions_of,
    thread_command,
)
from orchestrators.verdicts import Verdict

KIND = "remediate"
COMMAND = "/remediate"
DIFF_FOR_REVIEW = 60_000
MAX_EXCERPT_FILE = 2_000_000


# --- what the run is about ----------------------------------------------------------------------


def mr_ref(run: RunRow) -> str:
    """`group/project!iid` from the run's subject `gitlab:group/project!iid`."""
    return run.subject.removeprefix("gitlab:")


def where(run: RunRow) -> tuple[ProjectRef, int, str]:
    """(project id, MR iid, discussion id) of the note that gave the command."""
    note = thread_command(run)
    return note.project_id, note.mr_iid, note.discussion_id or ""


def instructions(run: RunRow) -> str:
    args = args_of(run)
    return args.split(maxsplit=1)[1] if is_all(run) and " " in args else ("" if is_all(run) else args)


def to_thread(discussion: Discussion, bot_id: int | None) -> Thread:
    """A GitLab discussion as the brief needs it (system notes left out; Baton's own notes flagged)."""
    notes = tuple(
        ThreadNote(
            author=(n.author.username if n.author else "unknown"),
            created=n.created_at,
            body=n.body,
            by_bot=is_bot_text(n.body) or (n.author is not None and n.author.id == bot_id),
        )
        for n in discussion.notes
        if not n.system
    )
    raw = discussion.position
    position = (
        DiffPosition(raw.old_path, raw.new_path, raw.old_line, raw.new_line, raw.head_sha)
        if raw is not None
        else None
    )
    resolvable = any(n.resolvable for n in discussion.notes)
    return Thread(discussion.id, notes, position, resolvable, discussion.resolved)


# --- assemble -----------------------------------------------------------------------------------


def _clients(ctx: PhaseContext) -> Clients:
    return ctx.wctx.need_clients()


def position_excerpt(worktree: Path, position: DiffPosition | None) -> str:
    """The commented lines of the file on the branch (new side only; nothing outside the worktree)."""
    if position is None or not position.new_path or position.new_line is None:
        return ""
    root = worktree.resolve()
    path = (root / position.new_path).resolve()
    if not path.is_relative_to(root) or not path.is_file() or path.stat().st_size > MAX_EXCERPT_FILE:
        return ""
    return excerpt(path.read_text(errors="replace"), position.new_line)


async def linked_ticket(ctx: PhaseContext, mr: MergeRequest) -> tuple[LinkedTicket | None, str]:
    """The first Jira ticket the MR names (title, description, branch) that Jira returns; else why not."""
    keys = ticket_keys(mr.title, mr.description, mr.source_branch)
    if not keys:
        return None, ""
    if not ctx.wctx.settings.jira_url:
        return None, f"The merge request names {', '.join(keys[:3])}, but Jira is not configured."
    jira = _clients(ctx).jira
    for key in keys[:3]:
        try:
            issue = await jira.issue(key)
        except JiraProblem:
            continue
        url = f"{jira.config.url.rstrip('/')}/browse/{issue.key}"
        return LinkedTicket(issue.key, issue.summary, issue.description or "", url), ""
    return None, f"The merge request names {', '.join(keys[:3])}, but Jira returned none of them."


def _about(mr: MergeRequestInfo, threads: list[Thread], asked: str, ticket: LinkedTicket | None) -> str:
    """What the fix is about, for choosing the team's facts: the MR, the threads, the request, the ticket."""
    notes = [n.body for t in threads for n in t.human_notes]
    linked = [ticket.summary, ticket.description] if ticket else []
    return "\n\n".join([mr.title, mr.description, *notes, asked, *linked])


def _touched(diff: MergeRequestDiff, threads: list[Thread]) -> list[str]:
    """The files the merge request changes and the ones the threads are attached to."""
    paths = [p for f in diff.files for p in (f.new_path, f.old_path) if p]
    return list(dict.fromkeys([*(t.position.path for t in threads if t.position), *paths]))


def _chosen(run: RunRow, threads: list[Thread]) -> list[Thread]:
    _project, _iid, discussion = where(run)
    if is_all(run):
        return unresolved(threads, skip=discussion)
    return [t for t in threads if t.discussion_id == discussion]


async def assemble(ctx: PhaseContext) -> PhaseResult:
    """Python only: the MR, the whole thread(s), its diff, the linked ticket, a worktree of its branch."""
    clients, run, clock = _clients(ctx), ctx.run, Clock()
    project_id, iid, discussion = where(run)
    mr = await clients.gitlab.merge_request(project_id, iid)
    if mr.state != "opened":
        stop = await refuse(
            ctx.wctx, run, COMMAND, f"this merge request is {mr.state}; there is nothing to fix."
        )
        return PhaseResult(_refused(mr.state), stop=stop)
    if not is_valid_branch(mr.source_branch):
        raise UnsafeInput(f"refusing the merge request's source branch name {mr.source_branch[:60]!r}")
    me = await clients.gitlab.bot_user()
    chosen = _chosen(run, [to_thread(d, me.id) for d in await clients.gitlab.discussions(project_id, iid)])
    if not chosen:
        why = (
            "there is no unresolved thread on this merge request."
            if is_all(run)
            else "I cannot find this thread."
        )
        return PhaseResult(_refused("no thread"), stop=await refuse(ctx.wctx, run, COMMAND, why))
    project = await clients.gitlab.project(project_id)
    repo_id = project.path_with_namespace
    await clients.workspace.ensure_mirror(repo_id, project.http_url_to_repo, clients.gitlab_token)
    clock.lap("fetch")
    branch = f"baton/mr-{iid}-{run.id[:12]}"
    worktree = await clients.workspace.create_worktree(
        repo_id, run.id, UPSTREAM_PREFIX + mr.source_branch, branch
    )
    clock.lap("workspace")
    config_text, repo = read_repo_config(worktree)
    ticket, ticket_note = await linked_ticket(ctx, mr)
    info = MergeRequestInfo(
        mr_ref(run), mr.title, mr.description, mr.source_branch, mr.target_branch, mr.web_url
    )
    mr_diff = await clients.gitlab.mr_diff(project_id, iid)
    found = await facts_for(
        clients.knowledge, _about(info, chosen, instructions(run), ticket), worktree, repo,
        touched=_touched(mr_diff, chosen),
    )  # fmt: skip
    inputs = BriefInputs(
        mr=info, repo=repo, instructions=instructions(run),
        requester=author_of(run).username or "", mr_diff=mr_diff.patch(), ticket=ticket,
        ticket_note=ticket_note, knowledge=found.facts, knowledge_unavailable=found.unavailable,
    )  # fmt: skip
    head = await clients.workspace.head(worktree)
    inputs = replace(inputs, branch_head=head)
    briefs = [
        build_thread_brief(t, replace(inputs, excerpt=position_excerpt(worktree, t.position))) for t in chosen
    ]
    brief = (
        briefs[0].markdown
        if not is_all(run)
        else overview_brief(info.ref, chosen, inputs.repo, found.facts, found.unavailable)
    )
    output = ThreadAssembled(
        worktree=worktree, branch=branch, base_sha=head,
        source_branch=mr.source_branch, target_branch=mr.target_branch, project_id=project.id,
        project_path=repo_id, remote_url=project.http_url_to_repo, web_url=project.web_url,
        repo=repo, repo_config=config_text, all=is_all(run), discussion_id=discussion,
        threads=tuple(StoredThread.of(t) for t in chosen), briefs=tuple(b.markdown for b in briefs),
        brief=brief, brief_tokens=sum(b.tokens for b in briefs), title=mr.title,
        ticket=ticket.key if ticket else None, knowledge=tuple(Fact.of(f) for f in found.facts),
        knowledge_unavailable=found.unavailable, mechanics_ms=_lapped(clock, "brief"),
    )  # fmt: skip
    return PhaseResult(output.model_dump(mode="json"))


def _lapped(clock: Clock, name: str) -> dict[str, int]:
    clock.lap(name)
    return clock.ms


def _refused(why: str) -> dict[str, Any]:
    return Refused(refused=why).model_dump(mode="json")


# --- implement, review, propose ------------------------------------------------------------------


def _revisions(ctx: PhaseContext) -> list[str]:
    return [f"A person asked for this change (/revise): {t}" for t in revisions_of(ctx.run)]


def _feedback(ctx: PhaseContext) -> list[str]:
    return sent_back(ctx) + _revisions(ctx)


async def _agent(
    ctx: PhaseContext, prompt: str, worktree: Path, repo: RepoConfig, pending_usd: float = 0.0
) -> AgentResult:
    return await agents.call(
        ctx.wctx, "implementer", prompt, worktree, declared=repo.declared_commands, run_id=ctx.run.id,
        pending_usd=pending_usd,
    )  # fmt: skip


async def implement(ctx: PhaseContext) -> PhaseResult:
    """One implementer call for a thread; for `/remediate all`, one call and one commit per thread.

    A later round of `/remediate all` (checks or review failed, or `/revise`) is one more call over
    all the threads, committed as a fix-up by `propose`.
    """
    assembled = thread_assembled(ctx)
    worktree, repo = assembled.workdir(), assembled.repo
    ref, feedback = mr_ref(ctx.run), _feedback(ctx)
    workspace = _clients(ctx).workspace
    fix_up = bool(feedback) and await workspace.head(worktree) != assembled.base_sha
    if not assembled.all or fix_up:
        result = await _agent(ctx, remediate_prompt(ref, assembled.brief, feedback), worktree, repo)
        before = ctx.previous_output("implement", ThreadsImplemented) if assembled.all else None
        output = ThreadsImplemented.of(result, threads=before.threads if before else ())
        return PhaseResult(output.model_dump(mode="json"), **agents.usage(result))
    return await _each_thread(ctx, assembled, worktree, repo)


async def _each_thread(
    ctx: PhaseContext, assembled: ThreadAssembled, worktree: Path, repo: RepoConfig
) -> PhaseResult:
    """A fresh round of `/remediate all`: from the branch head, the implementer and a commit per thread."""
    workspace, run = _clients(ctx).workspace, ctx.run
    base = assembled.base_sha
    if await workspace.head(worktree) != base or (await workspace.diffstat(worktree, base)).files:
        worktree = await workspace.create_worktree(assembled.project_path, run.id, base, assembled.branch)
    done: list[ThreadCommit] = []
    spent = agents.Tally()
    summaries: list[str] = []
    for thread, brief in zip(assembled.chosen(), assembled.briefs, strict=True):
        prompt = remediate_prompt(mr_ref(run), brief, _revisions(ctx))
        result = await spent.of(_agent(ctx, prompt, worktree, repo, pending_usd=spent.cost_usd))
        try:
            sha: str | None = await workspace.commit_all(
                worktree, commit_message(mr_ref(run), thread, run.id)
            )
        except NothingToCommit:
            sha = None
        done.append(ThreadCommit(id=thread.discussion_id, sha=sha, agent_ms=result.duration_ms))
        summaries.append(f"{thread.title(80)}: {(result.text or 'no summary')[:800]}")
    output = ThreadsImplemented(
        summary="\n".join(summaries)[:4000], threads=tuple(done), agent_ms=sum(d.agent_ms for d in done)
    )
    return PhaseResult(output.model_dump(mode="json"), **spent.usage)


async def review(ctx: PhaseContext) -> PhaseResult:
    """The read-only reviewer on the fix against the thread; blockers go back to implement."""
    assembled = thread_assembled(ctx)
    worktree = assembled.workdir()
    checked = validated(ctx)  # the worktree as validate left it: read once (Workspace.snapshot)
    diff = (await _clients(ctx).workspace.diff(worktree, assembled.base_sha, at=checked.tree))[
        :DIFF_FOR_REVIEW
    ]
    checks = "\n".join(c.line() for c in checked.checks)
    prompt = prompts.review(
        mr_ref(ctx.run), assembled.brief, diff, checks, assembled.decisions(), assembled.knowledge_unavailable
    )
    result = await agents.call(
        ctx.wctx, "reviewer", prompt, worktree, output_model=Verdict, run_id=ctx.run.id
    )
    verdict = result.output(Verdict)
    return verdict_result(verdict, result)


def _resolvable(assembled: ThreadAssembled, implemented: ThreadsImplemented) -> list[str]:
    """The threads approving resolves: those a person can resolve and (for `all`) that got a commit."""
    changed = implemented.committed()
    return [
        t.id for t in assembled.threads if t.resolvable and (not assembled.all or changed.get(t.id, False))
    ]


async def propose(ctx: PhaseContext) -> PhaseResult:
    """Commit, record the proposal (SHA + the head it builds on), reply in the thread; the run waits."""
    clients, run, clock = _clients(ctx), ctx.run, Clock()
    assembled = thread_assembled(ctx)
    worktree, threads = assembled.workdir(), assembled.chosen()
    message = (
        f"Address checks and review on {mr_ref(run)}\n\nProposed by Baton run {run.id}."
        if assembled.all
        else commit_message(mr_ref(run), threads[0], run.id)
    )
    try:
        sha = await commit_proposal(ctx, worktree, message)
    except ChangedSinceValidate as exc:
        return revalidate(exc)
    base = assembled.base_sha
    stat = await clients.workspace.diffstat(worktree, base, at=sha)
    diff = await clients.workspace.diff(worktree, base, at=sha)
    clock.lap("commit")
    implemented, checked = threads_implemented(ctx), validated(ctx)
    target = {
        "kind": TARGET_KIND, "mr_iid": where(run)[1], "discussion_id": assembled.discussion_id,
        "overview": thread_command(run).note_type is None, "worktree": str(worktree),
        "resolve": _resolvable(assembled, implemented), **assembled.target(),
    }  # fmt: skip
    proposal = await proposals.create(
        ctx.wctx.sm, run.id, run.subject, sha, hashlib.sha256(diff.encode()).hexdigest(), target
    )
    if proposal.status == proposals.STALE:  # a /revise that changed nothing proposes the same commit again
        await proposals.move(ctx.wctx.sm, proposal.id, proposals.STALE, proposals.PROPOSED)
    view = ProposalView(
        proposal_id=proposal.id, summary=_summary(assembled, implemented),
        commit_sha=sha, files=tuple(FileChange(f.path, f.added, f.deleted) for f in stat.files),
        checks=tuple(c.result() for c in checked.checks), verdict=reviewed(ctx).verdict,
        protected_changes=checked.ci_changes, diff=diff,
        **await _spent(ctx),
    )  # fmt: skip
    changed = implemented.committed()
    addressed = [(t, changed.get(t.discussion_id, True)) for t in threads] if assembled.all else []
    text = render_thread_proposal(view, addressee(author_of(run)), command_text(run, COMMAND), addressed)
    project_id, iid, discussion = where(run)
    await clients.gitlab.reply_in_discussion(
        project_id,
        iid,
        discussion,
        text,
        f"run:{run.id}:proposal:{sha[:12]}:r{len(revisions_of(run))}",
        run_id=run.id,
    )
    stop = Outcome(
        status.WAITING,
        f"proposal {proposal.id} ({sha[:12]}) posted in thread {discussion[:12]} of {mr_ref(run)}; "
        "waiting for /approve",
    )
    output = Proposed(proposal_id=proposal.id, sha=sha, mechanics_ms=_lapped(clock, "post"))
    return PhaseResult(output.model_dump(mode="json"), stop=stop)


def _summary(assembled: ThreadAssembled, implemented: ThreadsImplemented) -> str:
    if assembled.all:
        return f"{len(assembled.threads)} review threads addressed, one commit each"
    return (implemented.summary or assembled.title).split("\n")[0]


async def _spent(ctx: PhaseContext) -> dict[str, Any]:
    phases = await states(ctx.wctx.sm, WORKFLOW, ctx.run.id)
    return {
        "input_tokens": sum(p.input_tokens for p in phases),
        "output_tokens": sum(p.output_tokens for p in phases),
        "cost_usd": sum(p.cost_usd for p in phases),
    }


# --- progress in the thread ---------------------------------------------------------------------


def status_view(run: RunRow, phases: list[PhaseState], ending: Ending | None) -> StatusView:
    return progress.view(run, phases, ending, title=f"Baton: {run.kind} {mr_ref(run)}")


async def update_status(
    wctx: WorkerContext, run: RunRow, phases: list[PhaseState], ending: Ending | None = None
) -> None:
    """One status reply in the thread, posted once and then edited in place."""
    clients, key = wctx.need_clients(), status_key(run)
    project_id, iid, discussion = where(run)
    body = render_status(await progress.with_budget(wctx, run, status_view(run, phases, ending)), "gitlab")
    record = await clients.ledger.get(key)
    if record is not None and record.status == "done" and record.external_id:
        await clients.gitlab.edit_note(project_id, iid, int(record.external_id), body, effect_key=key)
        return
    await clients.gitlab.reply_in_discussion(project_id, iid, discussion, body, key, run_id=run.id)


async def observe(wctx: WorkerContext, run: RunRow, phases: list[PhaseState]) -> None:
    await update_status(wctx, run, phases)


WORKFLOW = Workflow(
    KIND,
    (("assemble", assemble), ("implement", implement), ("validate", validate), ("review", review),
     ("propose", propose)),
    max_rounds=3,
    observer=observe,
)  # fmt: skip


# --- the orchestrator ---------------------------------------------------------------------------


async def _award(wctx: WorkerContext, run: RunRow, name: str, suffix: str) -> None:
    """An award emoji on the command's note (👀 on pickup, ✅/❌ at the end), once per run."""
    project_id, iid, _ = where(run)
    note_id = thread_command(run).note_id
    await wctx.need_clients().gitlab.award_emoji(
        project_id, iid, int(note_id) if note_id else None, name, f"run:{run.id}:{suffix}", run_id=run.id
    )


async def _evidence(wctx: WorkerContext, run: RunRow) -> str:
    """The last round's failing checks and review blockers, for the person who takes over."""
    async with wctx.sm() as session:
        query = select(Phase).where(Phase.run_id == run.id, Phase.name.in_(("validate", "review")))
        rows = list((await session.execute(query)).scalars())
    text = "\n\n".join(str((p.output or {}).get("feedback") or "") for p in rows).strip()[:6000]
    return block(text, "gitlab") if text else ""


async def _finish(wctx: WorkerContext, run: RunRow, outcome: Outcome) -> Outcome:
    ok = outcome.status == status.WAITING and not outcome.stopped_short
    await update_status(wctx, run, await states(wctx.sm, WORKFLOW, run.id), Ending(ok, outcome.message))
    if outcome.refused:  # nothing was gathered: a /retry starts from the top
        await reset_from(wctx.sm, WORKFLOW, run.id, "assemble")
    if outcome.needs_human:
        text = render_failure(
            outcome.message, "Reply `/retry` to try again, or `/revise <what to change>`.", flavor="gitlab",
            who=addressee(author_of(run)), command=command_text(run, COMMAND),
        )  # fmt: skip
        evidence = await _evidence(wctx, run)
        project_id, iid, discussion = where(run)
        await wctx.need_clients().gitlab.reply_in_discussion(
            project_id, iid, discussion, f"{text}\n\n{evidence}", f"run:{run.id}:needs-human", run_id=run.id
        )
    await _award(wctx, run, "white_check_mark" if ok else "x", "end")
    return outcome


async def _make_way(wctx: WorkerContext, run: RunRow) -> str | None:
    """One run per thread: join an active one (its id), or cancel waiting ones (superseded)."""
    for other_id in await runs.others_open(wctx.sm, run):
        other = await runs.by_id(wctx.sm, other_id)
        if (
            other is None
            or not isinstance(other.trigger, ThreadCommand)
            or (other.trigger.discussion_id != thread_command(run).discussion_id)
        ):
            continue
        if other.status in status.ACTIVE:
            return other.id
        await runs.settle(wctx.sm, other.id, status.CANCELLED, wctx.name, f"superseded by run {run.id}")
        latest = await proposals.latest(wctx.sm, run.subject)
        if latest is not None and latest.run_id == other.id:
            await proposals.move(wctx.sm, latest.id, proposals.PROPOSED, proposals.STALE)
        await wctx.need_clients().workspace.remove_worktree(other.id)
    return None


async def run_remediate(wctx: WorkerContext, run: RunRow) -> Outcome:
    """The orchestrator: one run per thread, 👀 on pickup, the phases, a status reply, ✅/❌ at the end."""
    joined = await _make_way(wctx, run)
    if joined:
        text = f"I am already working on this thread (run {joined[:12]}); this request joins it."
        await respond(wctx, run, COMMAND, text)
        return Outcome(status.CANCELLED, f"joined run {joined}")
    await _award(wctx, run, "eyes", "ack")
    try:
        outcome = await execute(WORKFLOW, wctx, run)
    except PhaseFailed as exc:
        await _finish(wctx, run, Outcome(status.FAILED, str(exc)))
        step = budget.next_step(exc, "Reply `/retry` to run the failed phase again.", "`/retry`")
        text = render_failure(
            str(exc)[:500], step, flavor="gitlab",
            who=addressee(author_of(run)), command=command_text(run, COMMAND),
        )  # fmt: skip
        project_id, iid, discussion = where(run)
        await wctx.need_clients().gitlab.reply_in_discussion(
            project_id, iid, discussion, text, f"run:{run.id}:failed", run_id=run.id
        )
        return Outcome(status.FAILED, str(exc))
    return await _finish(wctx, run, outcome)
