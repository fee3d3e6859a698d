"""The `learn` workflow: a merge request Baton opened was merged, so propose what its ticket taught.

`gather` finds the ticket's shipped proposal for the merged branch and its `implement` run, then reads,
deterministically and without an agent, what went wrong before it went right:

* checks that failed in a round and passed later (the `sent-back` activity keeps each such round's
  typed `Validated` output; the next round overwrites the phase's own),
* review blockers that sent the change back (their `Reviewed` outputs, kept the same way),
* `/revise` notes people gave (`TicketLabelled.revisions` of the ticket's implement runs) and the reasons
  given with `/reject` for the ticket's code proposals,
* and a summary of the ticket's history.

Every candidate becomes a page tagged `inferred`, scoped (`modules`) to the files the merge request
changed, with the ticket key and the MR as its `source`. `propose` posts them as ONE knowledge proposal
on the ticket (orchestrators/wiki_proposal.py); `/approve` lands them, `/reject` drops them, and only
`/verify <page>` ever makes one `verified`.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from bot.knowledge import Page, page_path
from bot.knowledge.pages import Kind
from bot.store import proposals, runs, status
from bot.store.proposals import ProposalRow
from bot.store.runs import RunRow
from bot.store.tables import Phase, Proposal, Run
from bot.triggers import MergeRequestMerged, TicketCommand, TicketLabelled
from orchestrators import Outcome, wiki_proposal
from orchestrators.engine import SENT_BACK, PhaseContext, PhaseResult, Workflow, execute
from orchestrators.outputs import Output, Reviewed, TicketAssembled, Validated
from orchestrators.proposal import block
from orchestrators.resources import WorkerContext
from orchestrators.venue import IMPLEMENT, revisions_of
from orchestrators.verdicts import Finding

MAX_PAGES = 12
MAX_EACH = 4  # pages of one sort (failed checks, blockers, revisions, rejections)
OUTPUT_CHARS = 1_500  # of a failing check's output quoted in its pitfall
NOTE_CHARS = 1_000
SLUG_ROOM = 40  # characters of a repeated title kept before its number, so the page path differs
SCAN_LIMIT = 2_000  # shipped proposals looked at to find the merged branch's
_REJECTED_RE = re.compile(r"\brejected proposal ([0-9a-f]{6,32})\b")
_SIGNALS = (
    re.compile(r"^\s*(?:FAILED|ERROR)\s+\S.*$", re.MULTILINE),
    re.compile(r"^E\s+\S.*$", re.MULTILINE),
    re.compile(r"^.*\b\w*(?:Error|Exception|error)\b.*$", re.MULTILINE),
)


# --- what a ticket taught (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class Lessons:
    """Everything the learning loop reads about one merged ticket, already typed."""

    key: str  # the Jira ticket
    summary: str  # its summary
    ref: str  # the merge request, `group/project!7`
    branch: str
    target_branch: str
    modules: tuple[str, ...]  # the files the merge request changed
    failed_checks: tuple[Validated, ...] = ()  # rounds whose checks sent the change back
    blocked_reviews: tuple[Reviewed, ...] = ()  # rounds whose review sent the change back
    final_checks: Validated | None = None
    final_review: Reviewed | None = None
    rounds: int = 1  # implement rounds of the shipped run
    revisions: tuple[str, ...] = ()  # /revise notes on the ticket
    rejections: tuple[str, ...] = ()  # /reject reasons given for the ticket's code proposals

    @property
    def source(self) -> str:
        return f"{self.key} {self.ref}"


def signal(feedback: str) -> str:
    """The most telling line of a failing check's output: a FAILED/ERROR line, a pytest `E` line, an
    error message, else the first line."""
    for pattern in _SIGNALS:
        found = pattern.search(feedback)
        if found:
            return found.group(0).strip()
    return next((line.strip() for line in feedback.splitlines() if line.strip()), "a check failed")


def _failing_commands(checked: Validated) -> str:
    failing = [c for c in checked.checks if c.status not in ("passed", "skipped")]
    return ", ".join(f"`{c.command}` ({c.stage})" for c in failing) or "the repository's checks"


def _check_pitfall(
    lessons: Lessons, checked: Validated, number: int
) -> tuple[Kind, str, str, tuple[str, ...]]:
    body = "\n\n".join(
        [
            f"On {lessons.key} ({lessons.ref}) {_failing_commands(checked)} failed in implementation "
            f"round {number} and passed after the change was corrected. Expect the same check to catch "
            "this again when changing these modules.",
            "What the check printed:",
            block(checked.feedback[:OUTPUT_CHARS], "gitlab"),
        ]
    )
    return "pitfall", f"{lessons.key}: {signal(checked.feedback)}", body, lessons.modules


def _blocker_pitfall(lessons: Lessons, finding: Finding) -> tuple[Kind, str, str, tuple[str, ...]]:
    where = f" at `{finding.file}{f':{finding.line}' if finding.line else ''}`" if finding.file else ""
    body = "\n\n".join(
        [
            f"Baton's reviewer blocked an earlier attempt at {lessons.key} ({lessons.ref}){where}; the "
            "merged change fixed it. The reviewer's words:",
            block(finding.text, "gitlab"),
        ]
    )
    scoped = wiki_proposal.modules_of([finding.file]) if finding.file else ()
    return "pitfall", f"{lessons.key}: review blocker: {finding.text}", body, scoped or lessons.modules


def _person_pitfall(lessons: Lessons, note: str, asked: str) -> tuple[Kind, str, str, tuple[str, ...]]:
    verb = "asked for a revision" if asked == "revise" else "rejected a proposal"
    body = "\n\n".join(
        [
            f"A person reviewing Baton's proposal on {lessons.key} {verb} with `/{asked}`:",
            block(note[:NOTE_CHARS], "gitlab"),
            f"The change merged as {lessons.ref} takes this into account.",
        ]
    )
    return "pitfall", f"{lessons.key}: {verb}: {note}", body, lessons.modules


def _history(lessons: Lessons) -> tuple[Kind, str, str, tuple[str, ...]]:
    checks = lessons.final_checks.checks if lessons.final_checks else ()
    blockers = sum(len(r.verdict.blockers) for r in lessons.blocked_reviews)
    review = lessons.final_review.verdict.summary if lessons.final_review else "no review recorded"
    lines = [
        f"Ticket {lessons.key}: {lessons.summary}",
        f"Merged as {lessons.ref} (branch `{lessons.branch}` into `{lessons.target_branch}`).",
        f"Implementation rounds: {lessons.rounds}; checks that failed before passing: "
        f"{len(lessons.failed_checks)}; review blockers: {blockers}.",
        "Checks at the end: " + ("; ".join(c.line() for c in checks) or "none declared") + ".",
        f"Revisions asked with /revise: {len(lessons.revisions)}; "
        f"proposals rejected: {len(lessons.rejections)}.",
        "Files changed: " + (", ".join(f"`{m}`" for m in lessons.modules[:30]) or "none recorded") + ".",
        "",
        "The review's summary:",
        block(review[:NOTE_CHARS], "gitlab"),
    ]
    return "history", f"{lessons.key}: {lessons.summary}", "\n".join(lines), lessons.modules


def candidates(lessons: Lessons, today: datetime.date) -> list[Page]:
    """The pages `lessons` suggest, every one `inferred`: pitfalls from failed checks, review blockers,
    /revise notes and /reject reasons, then the ticket's history. Titles are unique (so are paths)."""
    drafts = [_check_pitfall(lessons, c, n) for n, c in enumerate(lessons.failed_checks, 1) if c.feedback]
    drafts = drafts[:MAX_EACH]
    blockers = [f for review in lessons.blocked_reviews for f in review.verdict.blockers]
    drafts += [_blocker_pitfall(lessons, f) for f in _distinct(blockers)][:MAX_EACH]
    drafts += [_person_pitfall(lessons, n, "revise") for n in _distinct_text(lessons.revisions)][:MAX_EACH]
    drafts += [_person_pitfall(lessons, n, "reject") for n in _distinct_text(lessons.rejections)][:MAX_EACH]
    drafts = [*drafts[: MAX_PAGES - 1], _history(lessons)]
    pages: list[Page] = []
    for kind, title, body, modules in drafts:
        pages.append(_page(kind, title, body, modules, lessons.source, today, {p.path for p in pages}))
    return pages


def _page(
    kind: Kind,
    title: str,
    body: str,
    modules: Sequence[str],
    source: str,
    today: datetime.date,
    taken: set[str],
) -> Page:
    name, n = wiki_proposal.title_of(title), 1
    while page_path(kind, name) in taken:  # slugs are cut at 60 characters: keep the number inside
        n += 1
        name = f"{wiki_proposal.title_of(title, SLUG_ROOM)} ({n})"
    return Page(
        path=page_path(kind, name),
        title=name,
        kind=kind,
        status="inferred",
        modules=wiki_proposal.modules_of(modules),
        source=wiki_proposal.title_of(source, 200),
        updated=today,
        body=body,
    )


def _distinct(findings: Sequence[Finding]) -> list[Finding]:
    seen: set[str] = set()
    kept = []
    for finding in findings:
        if finding.text not in seen:
            seen.add(finding.text)
            kept.append(finding)
    return kept


def _distinct_text(notes: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(" ".join(n.split()) for n in notes if n.strip()))


# --- reading the ticket's runs -----------------------------------------------------------------


def _typed(model: type[Output], data: Any) -> Any:
    """`data` as `model`, or None when it is not one (an output stored by another version)."""
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


async def shipped_proposal(wctx: WorkerContext, merged: MergeRequestMerged) -> ProposalRow | None:
    """The ticket's code proposal that was shipped on the merged branch of that project."""
    query = (
        select(Proposal)
        .where(Proposal.status == proposals.SHIPPED, Proposal.subject.startswith("jira:"))
        .order_by(Proposal.created_at.desc())
        .limit(SCAN_LIMIT)
    )
    async with wctx.sm() as session:
        rows = list((await session.execute(query)).scalars())
    for row in rows:
        target = dict(row.target)
        if (
            target.get("kind") == "jira"
            and target.get("branch") == merged.source_branch
            and target.get("project_path") == merged.project_path
        ):
            return await proposals.get(wctx.sm, row.id)
    return None


async def _phase_outputs(wctx: WorkerContext, run_id: str) -> tuple[dict[str, dict[str, Any]], int]:
    """The run's stored phase outputs by name, and how many implement rounds it took."""
    async with wctx.sm() as session:
        rows = list((await session.execute(select(Phase).where(Phase.run_id == run_id))).scalars())
    outputs = {p.name: dict(p.output or {}) for p in rows}
    rounds = next((p.attempts for p in rows if p.name == "implement"), 1)
    return outputs, max(rounds, 1)


async def _sent_back(wctx: WorkerContext, run_id: str) -> tuple[list[Validated], list[Reviewed]]:
    """The outputs of the rounds that sent the change back, oldest first."""
    checks: list[Validated] = []
    reviews: list[Reviewed] = []
    for entry in (await runs.detail(wctx.sm, run_id))["activity"]:
        data = entry["data"]
        if entry["action"] != SENT_BACK or not isinstance(data, dict):
            continue
        if data.get("phase") == "validate" and (checked := _typed(Validated, data.get("output"))):
            checks.append(checked)
        elif data.get("phase") == "review" and (reviewed := _typed(Reviewed, data.get("output"))):
            reviews.append(reviewed)
    return checks, reviews


async def _ticket_runs(wctx: WorkerContext, subject: str) -> list[RunRow]:
    async with wctx.sm() as session:
        ids = list(
            (
                await session.execute(select(Run.id).where(Run.subject == subject).order_by(Run.created_at))
            ).scalars()
        )
    found = [await runs.by_id(wctx.sm, run_id) for run_id in ids]
    return [run for run in found if run is not None]


async def _rejections(wctx: WorkerContext, ticket_runs: Sequence[RunRow]) -> list[str]:
    """The reasons given with `/reject` for the ticket's code proposals (not for knowledge proposals)."""
    reasons = []
    for run in ticket_runs:
        trigger = run.trigger
        if run.kind != "reject" or not isinstance(trigger, TicketCommand) or not trigger.args.strip():
            continue
        ended = (await runs.detail(wctx.sm, run.id))["activity"]
        ids = [m.group(1) for a in ended if (m := _REJECTED_RE.search(str(a["message"])))]
        rejected = await proposals.get(wctx.sm, ids[-1]) if ids else None
        if rejected is not None and rejected.target.get("kind") == "jira":
            reasons.append(trigger.args.strip())
    return reasons


async def _changed_files(
    wctx: WorkerContext, merged: MergeRequestMerged, fallback: Sequence[str]
) -> list[str]:
    """The files the merge request changed (GitLab's diff of the MR), else those the run's checks saw."""
    diff = await wctx.need_clients().gitlab.mr_diff(merged.project_id, merged.mr_iid)
    paths = [f.old_path if f.deleted_file else f.new_path for f in diff.files]
    return list(dict.fromkeys(paths)) or list(fallback)


async def lessons_of(wctx: WorkerContext, merged: MergeRequestMerged, proposal: ProposalRow) -> Lessons:
    """Everything `candidates` needs, read from the store and GitLab."""
    key = str(proposal.target.get("issue_key") or proposal.subject.removeprefix("jira:"))
    outputs, rounds = await _phase_outputs(wctx, proposal.run_id)
    final_checks = _typed(Validated, outputs.get("validate"))
    assembled = _typed(TicketAssembled, outputs.get("assemble"))
    failed, blocked = await _sent_back(wctx, proposal.run_id)
    ticket_runs = await _ticket_runs(wctx, proposal.subject)
    implement_runs = [r for r in ticket_runs if r.kind == IMPLEMENT]
    shipped_run = next((r for r in implement_runs if r.id == proposal.run_id), None)
    labelled = shipped_run.trigger if shipped_run else None
    summary = labelled.summary if isinstance(labelled, TicketLabelled) else None
    modules = await _changed_files(wctx, merged, final_checks.changed if final_checks else ())
    return Lessons(
        key=key,
        summary=summary or (assembled.summary if assembled else "") or key,
        ref=f"{merged.project_path}!{merged.mr_iid}",
        branch=merged.source_branch,
        target_branch=merged.target_branch,
        modules=wiki_proposal.modules_of(modules),
        failed_checks=tuple(failed),
        blocked_reviews=tuple(blocked),
        final_checks=final_checks,
        final_review=_typed(Reviewed, outputs.get("review")),
        rounds=rounds,
        revisions=tuple(note for r in implement_runs for note in revisions_of(r)),
        rejections=tuple(await _rejections(wctx, ticket_runs)),
    )


# --- the workflow ----------------------------------------------------------------------------------


class Gathered(BaseModel):
    """`gather`'s output: the ticket, the MR and the candidate pages (empty: nothing to learn, and why)."""

    key: str = ""
    ref: str = ""
    project_path: str = ""
    pages: tuple[Page, ...] = ()
    nothing: str = ""


def _merged(run: RunRow) -> MergeRequestMerged:
    if not isinstance(run.trigger, MergeRequestMerged):
        raise TypeError(f"a learn run needs a merged merge request, not {run.trigger.trigger!r}")
    return run.trigger


async def gather(ctx: PhaseContext) -> PhaseResult:
    merged = _merged(ctx.run)
    proposal = await shipped_proposal(ctx.wctx, merged)
    if proposal is None:
        why = f"no proposal Baton shipped on branch {merged.source_branch} of {merged.project_path}"
        stop = Outcome(status.SUCCEEDED, f"nothing to learn: {why}")
        return PhaseResult(Gathered(nothing=why).model_dump(mode="json"), stop=stop)
    lessons = await lessons_of(ctx.wctx, merged, proposal)
    pages = candidates(lessons, datetime.datetime.now(datetime.UTC).date())
    found = Gathered(key=lessons.key, ref=lessons.ref, project_path=merged.project_path, pages=tuple(pages))
    return PhaseResult(found.model_dump(mode="json"))


async def propose(ctx: PhaseContext) -> PhaseResult:
    found = ctx.output("gather", Gathered)
    try:
        proposal = await wiki_proposal.propose(
            ctx.wctx, ctx.run, "learn", found.key, found.pages, project_path=found.project_path, ref=found.ref
        )
    except wiki_proposal.NothingShowable as exc:
        return PhaseResult({}, stop=Outcome(status.SUCCEEDED, f"nothing proposed: {exc}"[:500]))
    posted = (
        f"knowledge proposal {proposal.id} ({len(proposal.target['pages'])} page(s)) posted on {found.key}"
    )
    stop = Outcome(status.WAITING, f"{posted}; waiting for /approve")
    return PhaseResult({"proposal_id": proposal.id}, stop=stop)


WORKFLOW = Workflow("learn", (("gather", gather), ("propose", propose)), max_rounds=1)


async def run_learn(wctx: WorkerContext, run: RunRow) -> Outcome:
    """The orchestrator: one knowledge proposal per merged merge request (the handler gives each merge
    one run; a retried job resumes at its unfinished phase)."""
    _merged(run)
    return await execute(WORKFLOW, wctx, run)
