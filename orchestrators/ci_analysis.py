"""CI-failure analysis on a merge request: a failed pipeline on Baton's MR, or `/analyze-ci` in any MR.

Python does the reading: the pipeline, its jobs with their retry history, the failed jobs' log tails
(redacted), and a deterministic classification (`orchestrators/ci_classify.py`: flaky, infrastructure,
failing tests, other script failures). Only when a job needs a code fix is the agent asked, for the
judgment: the cause and the fix (implementer profile, in a worktree of the MR's branch, confined like
every agent run). The repository's checks run on the fix, and the result is a proposal in an MR thread
(the failing tests, the cause, the evidence lines, the diff, the checks) that `/approve` pushes as one
commit, exactly once (`orchestrators/mr_ship.py`, as for `/remediate`).

Phases: assemble (Python) → implement (agent) → validate (the repo's checks; failures go back, 3 rounds)
→ propose. A budget per merge request stops a fix loop: failed pipelines start at most
`BATON_CI_FIX_ATTEMPTS` analyses that reach the agent, and none once the MR's runs have spent
`BATON_CI_FIX_BUDGET_USD`; past it Baton says so in the MR. `/analyze-ci` typed by a person is their
decision and is not held to the budget.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import func, select

from bot.clients.gitlab import Job, MergeRequest, Pipeline
from bot.git.branch import is_valid_branch
from bot.git.errors import UnsafeInput
from bot.git.workspace import UPSTREAM_PREFIX
from bot.redact import Redactor
from bot.repo_config import read_repo_config
from bot.store import proposals, runs, status
from bot.store.runs import RunRow
from bot.store.tables import Phase
from bot.triggers import PipelineFailed, ThreadCommand
from orchestrators import Outcome, agents, budget, ci_report, progress
from orchestrators.brief import estimate_tokens
from orchestrators.ci_classify import Finding, classify, latest_attempts, to_fix
from orchestrators.engine import PhaseContext, PhaseFailed, PhaseResult, PhaseState, Workflow, execute, states
from orchestrators.implement import ChangedSinceValidate, commit_proposal, revalidate, validate
from orchestrators.outputs import Assembled, Implemented, Proposed, Refused, implemented, sent_back, validated
from orchestrators.proposal import FileChange, Person, ProposalView, block, render_failure
from orchestrators.resources import Clients, WorkerContext
from orchestrators.status_comment import Ending, StatusView, render_status
from orchestrators.threads import TARGET_KIND
from orchestrators.venue import addressee, author_of, command_text, refuse, revisions_of

KIND = ci_report.KIND
COMMAND = "/analyze-ci"


class CiAssembled(Assembled):
    """What assemble gathered: the pipeline, the classified failures, a worktree of the MR's branch."""

    source_branch: str
    web_url: str
    discussion_id: str  # the thread the analysis answers in
    title: str  # the MR's title
    pipeline_id: int
    pipeline_sha: str
    pipeline_url: str = ""
    findings: tuple[Finding, ...] = ()

    def pipeline(self) -> ci_report.Pipeline:
        return ci_report.Pipeline(self.pipeline_id, self.pipeline_sha, self.pipeline_url, self.source_branch)

    def target(self) -> dict[str, Any]:
        """What `/approve` (orchestrators/mr_ship.py) needs to push the fix to the MR's branch."""
        return {
            "project_id": self.project_id, "project_path": self.project_path,
            "source_branch": self.source_branch, "base_sha": self.base_sha, "remote_url": self.remote_url,
            "web_url": self.web_url, "branch": self.branch, "pipeline_id": self.pipeline_id,
        }  # fmt: skip


# --- what the run is about ----------------------------------------------------------------------


def where(run: RunRow) -> tuple[int, int]:
    """(project id, MR iid) of a failed pipeline or of the note with `/analyze-ci`."""
    trigger = run.trigger
    if isinstance(trigger, PipelineFailed | ThreadCommand):
        return trigger.project_id, trigger.mr_iid
    raise ValueError(f"run {run.id[:12]} is neither a failed pipeline nor a command in a merge request")


def mr_ref(run: RunRow) -> str:
    return run.subject.removeprefix("gitlab:")


def automatic(run: RunRow) -> bool:
    """Started by a failed pipeline (held to the budget), not by a person's `/analyze-ci`."""
    return isinstance(run.trigger, PipelineFailed)


def shown(pipeline: Pipeline) -> ci_report.Pipeline:
    return ci_report.Pipeline(pipeline.id, pipeline.sha, pipeline.web_url, pipeline.ref)


async def thread_of(wctx: WorkerContext, run: RunRow) -> str:
    """The MR thread the analysis talks in: the command's, or one it starts (once) for a failed pipeline."""
    trigger, clients = run.trigger, wctx.need_clients()
    if isinstance(trigger, ThreadCommand) and trigger.discussion_id:
        return trigger.discussion_id
    project_id, iid = where(run)
    pipeline = trigger.pipeline_id if isinstance(trigger, PipelineFailed) else 0
    sha = (trigger.sha or "") if isinstance(trigger, PipelineFailed) else ""
    text = ci_report.opening(ci_report.Pipeline(pipeline, sha, "", ""))
    return await clients.gitlab.start_discussion(project_id, iid, text, f"run:{run.id}:thread", run_id=run.id)


async def who(wctx: WorkerContext, run: RunRow) -> Person | None:
    """Whom replies address: the command's author, the pipeline's user; nobody for the bot's own."""
    author = author_of(run)
    me = await wctx.need_clients().gitlab.bot_user()
    return addressee(author) if author.username and author.username != me.username else None


async def _say(wctx: WorkerContext, run: RunRow, text: str, key: str) -> None:
    project_id, iid = where(run)
    thread = await thread_of(wctx, run)
    await wctx.need_clients().gitlab.reply_in_discussion(
        project_id, iid, thread, text, f"run:{run.id}:{key}", run_id=run.id
    )


# --- the budget -----------------------------------------------------------------------------------


async def attempts_before(wctx: WorkerContext, run: RunRow) -> int:
    """Earlier analyses of this MR that reached the agent."""
    earlier = await runs.earlier(wctx.sm, run)
    if not earlier:
        return 0
    query = select(func.count()).where(
        Phase.run_id.in_(earlier), Phase.name == "implement", Phase.attempts > 0
    )
    async with wctx.sm() as session:
        return int((await session.execute(query)).scalar_one())


async def over_budget(wctx: WorkerContext, run: RunRow) -> str | None:
    """Why an automatic analysis must not start (the MR's budget is spent), or None."""
    settings = wctx.settings
    done = await attempts_before(wctx, run)
    if done >= settings.ci_fix_attempts:
        return (
            f"this merge request already had {done} CI analyses, and the budget is "
            f"{settings.ci_fix_attempts} per merge request."
        )
    spent = await budget.spent(wctx.sm, run.subject)
    if spent >= settings.ci_fix_budget_usd:
        cap = settings.ci_fix_budget_usd
        return f"Baton's runs on this merge request cost ${spent:.2f}, and the budget is ${cap:.2f}."
    return None


# --- before any phase: is there anything to analyze? ---------------------------------------------


async def _skip(wctx: WorkerContext, run: RunRow) -> str | None:
    """Why a failed pipeline's run does nothing at all (nothing is posted): not Baton's MR, or stale."""
    trigger = run.trigger
    if not isinstance(trigger, PipelineFailed):
        return None
    gitlab = wctx.need_clients().gitlab
    mr = await gitlab.merge_request(trigger.project_id, trigger.mr_iid)
    me = await gitlab.bot_user()
    if mr.state != "opened":
        return f"the merge request is {mr.state}"
    if mr.author is None or mr.author.id != me.id:
        return "the merge request was not opened by Baton"
    pipeline = await gitlab.pipeline(trigger.project_id, trigger.pipeline_id)
    if pipeline.status != "failed":
        return f"pipeline {pipeline.id} is {pipeline.status} now"
    if mr.sha and pipeline.sha and pipeline.sha != mr.sha:
        return f"pipeline {pipeline.id} ran on {pipeline.sha[:12]}, but the branch is at {mr.sha[:12]} now"
    return None


# --- assemble -----------------------------------------------------------------------------------


def _clients(ctx: PhaseContext) -> Clients:
    return ctx.wctx.need_clients()


async def _stop(ctx: PhaseContext, why: str) -> PhaseResult:
    """Nothing to analyze: a command gets the reason as its reply; a failed pipeline's run just ends."""
    if isinstance(ctx.run.trigger, ThreadCommand):
        return PhaseResult(
            Refused(refused=why).model_dump(mode="json"), stop=await refuse(ctx.wctx, ctx.run, COMMAND, why)
        )
    return PhaseResult(
        Refused(refused=why).model_dump(mode="json"),
        stop=Outcome(status.SUCCEEDED, f"nothing to analyze: {why}"),
    )


async def _pipeline(ctx: PhaseContext, mr: MergeRequest) -> Pipeline | None:
    trigger, gitlab = ctx.run.trigger, _clients(ctx).gitlab
    if isinstance(trigger, PipelineFailed):
        return await gitlab.pipeline(trigger.project_id, trigger.pipeline_id)
    return await gitlab.latest_pipeline(mr.project_id, mr.source_branch)


async def _findings(ctx: PhaseContext, pipeline: Pipeline, jobs: list[Job]) -> list[Finding]:
    """The failed jobs (latest attempts, not allowed to fail), each log's tail redacted and classified."""
    gitlab, redactor = _clients(ctx).gitlab, Redactor.from_settings(ctx.wctx.settings)
    failed = [j for j in latest_attempts(jobs) if j.status == "failed" and not j.allow_failure]
    found = []
    for job in failed[: ci_report.MAX_JOBS]:
        raw, _cut = await gitlab.job_trace(pipeline.project_id or where(ctx.run)[0], job.id)
        found.append(classify(job, raw, jobs, redact=redactor.redact))
    return found


async def assemble(ctx: PhaseContext) -> PhaseResult:
    """Python only: the MR, its failed pipeline, the classified failures; a worktree if one needs a fix."""
    clients, run = _clients(ctx), ctx.run
    project_id, iid = where(run)
    mr = await clients.gitlab.merge_request(project_id, iid)
    if mr.state != "opened":
        return await _stop(ctx, f"this merge request is {mr.state}; there is nothing to fix.")
    if not is_valid_branch(mr.source_branch):
        raise UnsafeInput(f"refusing the merge request's source branch name {mr.source_branch[:60]!r}")
    pipeline = await _pipeline(ctx, mr)
    if pipeline is None or pipeline.status != "failed":
        what = (
            f"its latest pipeline ({pipeline.id}) is {pipeline.status}" if pipeline else "it has no pipeline"
        )
        return await _stop(ctx, f"{what}; there is no failure to analyze.")
    findings = await _findings(ctx, pipeline, await clients.gitlab.pipeline_jobs(project_id, pipeline.id))
    if not findings:
        return await _stop(ctx, f"pipeline {pipeline.id} has no failed job that is not allowed to fail.")
    if not to_fix(findings):
        await _say(
            ctx.wctx,
            run,
            ci_report.render_report(await who(ctx.wctx, run), shown(pipeline), findings),
            "report",
        )
        reruns = ", ".join(f.job_name for f in findings)
        return PhaseResult(
            Refused(refused="no code fix needed").model_dump(mode="json"),
            stop=Outcome(status.SUCCEEDED, f"no code fix needed; re-run: {reruns}"[:500]),
        )
    project = await clients.gitlab.project(project_id)
    repo_id = project.path_with_namespace
    await clients.workspace.ensure_mirror(repo_id, project.http_url_to_repo, clients.gitlab_token)
    branch = f"baton/ci-{iid}-{run.id[:12]}"
    worktree = await clients.workspace.create_worktree(
        repo_id, run.id, UPSTREAM_PREFIX + mr.source_branch, branch
    )
    config_text, repo = read_repo_config(worktree)
    text = ci_report.brief(mr_ref(run), mr.title, shown(pipeline), findings, repo)
    output = CiAssembled(
        worktree=worktree, branch=branch, base_sha=await clients.workspace.head(worktree),
        target_branch=mr.target_branch, project_id=project.id, project_path=repo_id,
        remote_url=project.http_url_to_repo, repo=repo, repo_config=config_text, brief=text,
        brief_tokens=estimate_tokens(text), source_branch=mr.source_branch, web_url=project.web_url,
        discussion_id=await thread_of(ctx.wctx, run), title=mr.title, pipeline_id=pipeline.id,
        pipeline_sha=pipeline.sha, pipeline_url=pipeline.web_url, findings=tuple(findings),
    )  # fmt: skip
    return PhaseResult(output.model_dump(mode="json"))


def ci_assembled(ctx: PhaseContext) -> CiAssembled:
    return ctx.output("assemble", CiAssembled)


# --- implement, propose -------------------------------------------------------------------------


async def implement(ctx: PhaseContext) -> PhaseResult:
    """The agent's judgment: the cause, and a fix in the worktree (checked by validate afterwards)."""
    assembled = ci_assembled(ctx)
    feedback = sent_back(ctx) + [
        f"A person asked for this change (/revise): {t}" for t in revisions_of(ctx.run)
    ]
    result = await agents.call(
        ctx.wctx, "implementer", ci_report.prompt(mr_ref(ctx.run), assembled.brief, feedback),
        assembled.workdir(), declared=assembled.repo.declared_commands, run_id=ctx.run.id,
    )  # fmt: skip
    return PhaseResult(Implemented.of(result).model_dump(mode="json"), **agents.usage(result))


def _subject_line(assembled: CiAssembled) -> str:
    fixing = [f for f in assembled.findings if f.needs_fix]
    first = next((t.name for f in fixing for t in f.tests), None) or (fixing[0].job_name if fixing else "CI")
    return f"Fix CI on {assembled.source_branch}: {first}"[:120]


async def propose(ctx: PhaseContext) -> PhaseResult:
    """Commit, record the proposal (SHA + the head it builds on), reply in the thread; the run waits."""
    clients, run = _clients(ctx), ctx.run
    assembled = ci_assembled(ctx)
    worktree, base = assembled.workdir(), assembled.base_sha
    why = f"Pipeline {assembled.pipeline_id} failed; proposed by Baton run {run.id}."
    message = f"{_subject_line(assembled)}\n\n{why}"
    try:
        sha = await commit_proposal(ctx, worktree, message)
    except ChangedSinceValidate as exc:
        return revalidate(exc)
    stat = await clients.workspace.diffstat(worktree, base, at=sha)
    diff = await clients.workspace.diff(worktree, base, at=sha)
    project_id, iid = where(run)
    target = {
        "kind": TARGET_KIND, "origin": KIND, "mr_iid": iid, "discussion_id": assembled.discussion_id,
        "overview": False, "worktree": str(worktree), "resolve": [assembled.discussion_id],
        **assembled.target(),
    }  # fmt: skip
    proposal = await proposals.create(
        ctx.wctx.sm, run.id, run.subject, sha, hashlib.sha256(diff.encode()).hexdigest(), target
    )
    checked, phases = validated(ctx), await states(ctx.wctx.sm, WORKFLOW, run.id)
    view = ProposalView(
        proposal_id=proposal.id, summary=_subject_line(assembled), commit_sha=sha,
        files=tuple(FileChange(f.path, f.added, f.deleted) for f in stat.files),
        checks=tuple(c.result() for c in checked.checks), protected_changes=checked.ci_changes, diff=diff,
        input_tokens=sum(p.input_tokens for p in phases), output_tokens=sum(p.output_tokens for p in phases),
        cost_usd=sum(p.cost_usd for p in phases),
    )  # fmt: skip
    command = command_text(run, COMMAND) if isinstance(run.trigger, ThreadCommand) else ""
    cause = ci_report.cause_of(implemented(ctx).summary)
    text = ci_report.render_ci_proposal(
        await who(ctx.wctx, run), assembled.pipeline(), assembled.findings, cause, view, command
    )
    await clients.gitlab.reply_in_discussion(
        project_id, iid, assembled.discussion_id, text,
        f"run:{run.id}:proposal:{sha[:12]}:r{len(revisions_of(run))}", run_id=run.id,
    )  # fmt: skip
    stop = Outcome(
        status.WAITING, f"proposal {proposal.id} ({sha[:12]}) posted in {mr_ref(run)}; waiting for /approve"
    )
    return PhaseResult(Proposed(proposal_id=proposal.id, sha=sha).model_dump(mode="json"), stop=stop)


# --- progress in the thread ---------------------------------------------------------------------


def status_view(run: RunRow, phases: list[PhaseState], ending: Ending | None) -> StatusView:
    return progress.view(run, phases, ending, title=f"Baton: CI analysis of {mr_ref(run)}")


async def update_status(
    wctx: WorkerContext, run: RunRow, phases: list[PhaseState], ending: Ending | None = None
) -> None:
    """One status reply in the analysis' thread, posted once and then edited in place."""
    clients, key = wctx.need_clients(), progress.status_key(run)
    project_id, iid = where(run)
    body = render_status(status_view(run, phases, ending), "gitlab")
    record = await clients.ledger.get(key)
    if record is not None and record.status == "done" and record.external_id:
        await clients.gitlab.edit_note(project_id, iid, int(record.external_id), body, effect_key=key)
        return
    thread = await thread_of(wctx, run)
    await clients.gitlab.reply_in_discussion(project_id, iid, thread, body, key, run_id=run.id)


async def observe(wctx: WorkerContext, run: RunRow, phases: list[PhaseState]) -> None:
    await update_status(wctx, run, phases)


WORKFLOW = Workflow(
    KIND,
    (("assemble", assemble), ("implement", implement), ("validate", validate), ("propose", propose)),
    max_rounds=3,
    observer=observe,
)


# --- the orchestrator ---------------------------------------------------------------------------


async def _award(wctx: WorkerContext, run: RunRow, name: str, suffix: str) -> None:
    """👀 / ✅ / ❌ on the `/analyze-ci` note (a failed pipeline has no note to award)."""
    trigger = run.trigger
    if isinstance(trigger, ThreadCommand):
        await wctx.need_clients().gitlab.award_emoji(
            trigger.project_id, trigger.mr_iid, trigger.note_id, name, f"run:{run.id}:{suffix}", run_id=run.id
        )


async def _make_way(wctx: WorkerContext, run: RunRow) -> str | None:
    """One analysis per MR: join an active one (its id); a new failure makes waiting ones' proposals stale."""
    for other_id in await runs.others_open(wctx.sm, run):
        other = await runs.by_id(wctx.sm, other_id)
        if other is None:
            continue
        if other.status in status.ACTIVE:
            return other.id
        await runs.settle(wctx.sm, other.id, status.CANCELLED, wctx.name, f"superseded by run {run.id}")
        for proposal in await proposals.latest_open(wctx.sm, run.subject, other.id):
            await proposals.move(wctx.sm, proposal.id, proposals.PROPOSED, proposals.STALE)
        await wctx.need_clients().workspace.remove_worktree(other.id)
    return None


async def _finish(wctx: WorkerContext, run: RunRow, outcome: Outcome) -> Outcome:
    ok = outcome.status in (status.WAITING, status.SUCCEEDED) and not outcome.stopped_short
    await update_status(wctx, run, await states(wctx.sm, WORKFLOW, run.id), Ending(ok, outcome.message))
    if outcome.needs_human:
        async with wctx.sm() as session:
            rows = (
                await session.execute(select(Phase).where(Phase.run_id == run.id, Phase.name == "validate"))
            ).scalars()
            evidence = "\n\n".join(str((p.output or {}).get("feedback") or "") for p in rows).strip()[:6000]
        text = render_failure(
            outcome.message, "A person should take over; reply `/analyze-ci` to try again.", flavor="gitlab",
            who=await who(wctx, run),
        )  # fmt: skip
        await _say(wctx, run, f"{text}\n\n{block(evidence, 'gitlab')}" if evidence else text, "needs-human")
    await _award(wctx, run, "white_check_mark" if ok else "x", "end")
    return outcome


async def _budget_stop(wctx: WorkerContext, run: RunRow, reason: str) -> Outcome:
    trigger = run.trigger
    assert isinstance(trigger, PipelineFailed)
    pipeline = ci_report.Pipeline(trigger.pipeline_id, trigger.sha or "", "", trigger.source_branch)
    text = ci_report.render_budget_stop(await who(wctx, run), pipeline, reason)
    project_id, iid = where(run)
    key = f"mr:{project_id}:{iid}:ci-budget"  # said once per merge request, not at every later failure
    await wctx.need_clients().gitlab.start_discussion(project_id, iid, text, key, run_id=run.id)
    return Outcome(status.SUCCEEDED, f"stopped: over the CI budget: {reason}", refused=True)


async def run_analyze_ci(wctx: WorkerContext, run: RunRow) -> Outcome:
    """The orchestrator: checks that post nothing (not Baton's MR, stale), the budget, then the phases."""
    skip = await _skip(wctx, run)
    if skip is not None:
        return Outcome(status.SUCCEEDED, f"not analyzed: {skip}")
    joined = await _make_way(wctx, run)
    if joined:
        if isinstance(run.trigger, ThreadCommand):
            await _say(wctx, run, f"I am already analyzing this merge request (run {joined[:12]}).", "joined")
        return Outcome(status.CANCELLED, f"joined run {joined}")
    if automatic(run):
        reason = await over_budget(wctx, run)
        if reason is not None:
            return await _budget_stop(wctx, run, reason)
    await _award(wctx, run, "eyes", "ack")
    try:
        outcome = await execute(WORKFLOW, wctx, run)
    except PhaseFailed as exc:
        await _finish(wctx, run, Outcome(status.FAILED, str(exc)))
        text = render_failure(
            str(exc)[:500], "Reply `/analyze-ci` to try again.", flavor="gitlab", who=await who(wctx, run)
        )
        await _say(wctx, run, text, "failed")
        return Outcome(status.FAILED, str(exc))
    return await _finish(wctx, run, outcome)
