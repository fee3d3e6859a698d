"""Where a run talks to people: a Jira ticket or a merge request thread.

This is the one place that tells the two apart (`venue_of`). Everything a workflow needs to say
something or find "its" proposal goes through a venue: where replies go, how a person is addressed
and their command quoted, what "here" means, which run kind a command acts on, and which proposal is
the latest one here. Workflows ask the venue instead of checking the run's source.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from bot import triggers
from bot.store import proposals, runs, status
from bot.store.proposals import ProposalRow
from bot.store.runs import RunRow
from bot.store.tables import Phase, Proposal
from orchestrators import Outcome
from orchestrators.proposal import Flavor, Person, mention, render_refusal
from orchestrators.resources import Clients, WorkerContext
from orchestrators.threads import in_response

IMPLEMENT = "implement"
REMEDIATE = "remediate"
CI_ANALYSIS = "analyze-ci"  # orchestrators/ci_analysis.py: its thread is the command's or one it started


class NoVenue(ValueError):
    """The run's input names neither a Jira ticket nor a merge request (an unreadable input)."""


def addressee(who: triggers.Person) -> Person:
    """The person as replies address them (a GitLab username, a Jira account id or name)."""
    return Person(
        display_name=who.display_name or who.name or who.username or "there",
        gitlab_username=who.username,
        jira_account_id=who.account_id,
        jira_name=who.name if not who.username else None,
    )


def author_of(run: RunRow) -> triggers.Person:
    """Who started the run: a command's author, a label's or a push's actor."""
    trigger = run.trigger
    if isinstance(trigger, triggers.TicketCommand | triggers.ThreadCommand):
        return trigger.author
    if isinstance(
        trigger,
        triggers.TicketLabelled
        | triggers.MergeRequestPushed
        | triggers.MergeRequestMerged
        | triggers.PipelineFailed,
    ):
        return trigger.actor
    return triggers.Person()


def args_of(run: RunRow) -> str:
    """The command's arguments as typed (empty for runs no command started)."""
    trigger = run.trigger
    return (
        trigger.args.strip() if isinstance(trigger, triggers.TicketCommand | triggers.ThreadCommand) else ""
    )


def revisions_of(run: RunRow) -> tuple[str, ...]:
    """The `/revise` notes a ticket's or thread's run has collected."""
    trigger = run.trigger
    revisable = triggers.TicketLabelled | triggers.ThreadCommand | triggers.PipelineFailed
    return trigger.revisions if isinstance(trigger, revisable) else ()


def thread_command(run: RunRow) -> triggers.ThreadCommand:
    """The merge request note that started a thread run (remediate, /approve in a thread)."""
    if not isinstance(run.trigger, triggers.ThreadCommand):
        raise NoVenue(f"run {run.id[:12]} was not started by a merge request note")
    return run.trigger


def command_text(run: RunRow, name: str) -> str:
    """The person's command as they typed it (name and arguments), for quoting back."""
    return f"{name} {args_of(run)}".strip()


@dataclass(frozen=True)
class JiraTicket:
    """A Jira ticket: replies are comments; commands act on the ticket's `implement` run."""

    issue: str  # key, or id when the event had no key
    flavor: Literal["jira"] = "jira"
    here: str = "on this ticket"
    start_over: str = "add the trigger label to start one"
    again: str = "Add the label again to start over."
    works_on: str = IMPLEMENT

    async def post(self, clients: Clients, text: str, key: str, run_id: str) -> None:
        await clients.jira.add_comment(self.issue, text, key, run_id=run_id)

    def framed(self, run: RunRow, command: str, text: str) -> str:
        return text

    def quoted(self, run: RunRow, command: str) -> str:
        return command

    async def proposal(self, wctx: WorkerContext, run: RunRow) -> ProposalRow | None:
        return await proposals.latest(wctx.sm, run.subject)


@dataclass(frozen=True)
class MrThread:
    """A merge request: replies go in the command's discussion (or the overview); commands act on the
    thread's `remediate` run, on the overview on the latest `/remediate all`."""

    project_id: int
    mr_iid: int
    discussion_id: str | None
    overview: bool  # the command was an overview note, not a reply in a diff or discussion thread
    flavor: Literal["gitlab"] = "gitlab"
    here: str = "in this thread"
    start_over: str = "reply `/remediate` to start one"
    again: str = "Reply `/remediate` to start over."
    works_on: str = REMEDIATE

    async def post(self, clients: Clients, text: str, key: str, run_id: str) -> None:
        if self.discussion_id:
            await clients.gitlab.reply_in_discussion(
                self.project_id, self.mr_iid, self.discussion_id, text, key, run_id=run_id
            )
        else:
            await clients.gitlab.post_note(self.project_id, self.mr_iid, text, key, run_id=run_id)

    def framed(self, run: RunRow, command: str, text: str) -> str:
        """On GitLab a reply names the person and quotes their command (Prow's "In response to this")."""
        who = mention(addressee(author_of(run)), "gitlab")
        return f"{who}: {text}\n\n{in_response(command_text(run, command))}"

    def quoted(self, run: RunRow, command: str) -> str:
        return command_text(run, command)

    async def proposal(self, wctx: WorkerContext, run: RunRow) -> ProposalRow | None:
        """The latest proposal of this thread; on the MR overview, the latest `/remediate all` one."""
        rows = await subject_proposals(wctx, run.subject)
        same = next((p for p in rows if p.target.get("discussion_id") == self.discussion_id), None)
        if same is not None or not self.overview:
            return same
        return next((p for p in rows if p.target.get("overview")), None)

    def owns(self, target: RunRow) -> bool:
        """`target` (a remediate run) belongs to this thread."""
        trigger = target.trigger
        return isinstance(trigger, triggers.ThreadCommand) and trigger.discussion_id == self.discussion_id


Venue = JiraTicket | MrThread


def venue_of(run: RunRow) -> Venue:
    """Where this run answers: the one place that looks at the run's source."""
    trigger = run.trigger
    if isinstance(trigger, triggers.TicketLabelled | triggers.TicketCommand):
        return JiraTicket(trigger.issue_key or trigger.issue_id)
    if isinstance(trigger, triggers.ThreadCommand):
        return MrThread(trigger.project_id, trigger.mr_iid, trigger.discussion_id, trigger.note_type is None)
    if isinstance(
        trigger, triggers.MergeRequestPushed | triggers.MergeRequestMerged | triggers.PipelineFailed
    ):
        return MrThread(trigger.project_id, trigger.mr_iid, None, overview=True)
    if isinstance(trigger, triggers.ReplyRequest):
        target = trigger.target
        if isinstance(target, triggers.JiraReplyTarget):
            return JiraTicket(target.issue_key)
        return MrThread(target.project_id, target.mr_iid, target.discussion_id, target.discussion_id is None)
    raise NoVenue(f"run {run.id[:12]} has unreadable input: {trigger.error}")


def flavor(run: RunRow) -> Flavor:
    return venue_of(run).flavor


def by_venue(
    jira: Callable[[WorkerContext, RunRow], Awaitable[Outcome]],
    gitlab: Callable[[WorkerContext, RunRow], Awaitable[Outcome]],
) -> Callable[[WorkerContext, RunRow], Awaitable[Outcome]]:
    """One run kind, two homes: a command on a Jira ticket or in a merge request thread."""

    async def dispatch(wctx: WorkerContext, run: RunRow) -> Outcome:
        chosen = gitlab if isinstance(venue_of(run), MrThread) else jira
        return await chosen(wctx, run)

    return dispatch


async def subject_proposals(wctx: WorkerContext, subject: str, limit: int = 200) -> list[ProposalRow]:
    """A ticket's or an MR's proposals, newest first."""
    query = (
        select(Proposal).where(Proposal.subject == subject).order_by(Proposal.created_at.desc()).limit(limit)
    )
    async with wctx.sm() as session:
        found = list((await session.execute(query)).scalars())
    return [ProposalRow(p.id, p.run_id, p.subject, p.status, p.sha or "", p.diff_hash, dict(p.target))
            for p in found]  # fmt: skip


def is_all(run: RunRow) -> bool:
    """A `/remediate all` typed on the MR overview (one run for every open thread)."""
    trigger = run.trigger
    if not isinstance(trigger, triggers.ThreadCommand) or trigger.note_type:
        return False
    words = trigger.args.split(maxsplit=1)
    return bool(words) and words[0].lower() == "all"


async def latest_target(wctx: WorkerContext, run: RunRow) -> RunRow | None:
    """The run a command acts on: the ticket's latest `implement`, or the thread's latest `remediate`
    (on the MR overview: the latest `/remediate all`)."""
    venue = venue_of(run)
    rows = [
        r
        for r in await runs.listing(wctx.sm, limit=200)
        if r.subject == run.subject and r.kind == venue.works_on
    ]
    if isinstance(venue, JiraTicket):
        return rows[0] if rows else None
    same = next((r for r in rows if venue.owns(r)), None)
    if same is None and venue.discussion_id:
        same = await _ci_analysis_in(wctx, run.subject, venue.discussion_id)
    if same is not None or not venue.overview:
        return same
    return next((r for r in rows if is_all(r)), None)


async def _ci_analysis_in(wctx: WorkerContext, subject: str, discussion_id: str) -> RunRow | None:
    """The newest CI analysis of the MR that talks in this thread: `/analyze-ci` typed there, or the thread
    its assemble recorded (a failed pipeline's analysis starts a thread of its own)."""
    found = [
        r for r in await runs.listing(wctx.sm, limit=200) if r.subject == subject and r.kind == CI_ANALYSIS
    ]
    query = select(Phase.run_id, Phase.output).where(
        Phase.run_id.in_([r.id for r in found]), Phase.name == "assemble"
    )
    async with wctx.sm() as session:
        threads = {rid: (out or {}).get("discussion_id") for rid, out in (await session.execute(query)).all()}
    mine = (r for r in found if threads.get(r.id) == discussion_id or (
        isinstance(r.trigger, triggers.ThreadCommand) and r.trigger.discussion_id == discussion_id
    ))  # fmt: skip
    return next(mine, None)


async def reply(wctx: WorkerContext, run: RunRow, text: str) -> None:
    """Answer where the command was given: in its MR discussion, or on the Jira ticket; once per run."""
    await venue_of(run).post(wctx.need_clients(), text, f"run:{run.id}:reply", run.id)


async def respond(wctx: WorkerContext, run: RunRow, command: str, text: str) -> None:
    """A reply to a command: on GitLab it names the person and quotes the command; on Jira plain."""
    await reply(wctx, run, venue_of(run).framed(run, command, text))


async def refuse(
    wctx: WorkerContext, run: RunRow, command: str, reason: str, what_next: str | None = None
) -> Outcome:
    """Say why a command is not carried out; the run ends `refused` (it did what it should)."""
    venue = venue_of(run)
    text = render_refusal(
        addressee(author_of(run)),
        venue.quoted(run, command),
        reason,
        flavor=venue.flavor,
        what_next=what_next,
    )
    await reply(wctx, run, text)
    return Outcome(status.SUCCEEDED, f"refused: {reason}", refused=True)
