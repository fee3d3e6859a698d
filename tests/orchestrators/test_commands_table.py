"""/reject, /revise, /retry, /status, /help and "did you mean" replies (orchestrators/commands.py), as a
table of decisions, on a Jira ticket and in a merge request thread.

Each case: the state of the run the command acts on (the ticket's `implement` run, the thread's
`remediate` run) and the command → the writes in order (the one reply, a worktree removed, a run
enqueued again), what the reply says and that it lands where the command was typed, and the state the
run and its proposal are left in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.store import proposals, runs, status
from bot.store.proposals import ProposalRow
from tests.support.tables import (
    APPROVER,
    DEVELOPER,
    ISSUE,
    MR_IID,
    PROJECT_ID,
    REVIEWER,
    Table,
    gitlab_note,
    jira_comment,
    labelled,
    seed_gitlab,
    seed_jira,
    table,
    thread_proposal,
    ticket_proposal,
)

VENUES = ("jira", "gitlab")
HERE = {"jira": "on this ticket", "gitlab": "in this thread"}
FIRST_PHASE = {"jira": "triage", "gitlab": "assemble"}
START = {"jira": "add the trigger label to start one", "gitlab": "reply `/remediate` to start one"}
AGAIN = {"jira": "Add the label again to start over.", "gitlab": "Reply `/remediate` to start over."}

# What the command acts on: an open proposal (its run waits for /approve), a run waiting without one
# (e.g. it asked questions), a run still going, or nothing at all.
PROPOSED, WAITING, RUNNING, NOTHING = "proposed", "waiting", "running", "nothing"


@dataclass(frozen=True)
class Case:
    name: str
    given: str  # PROPOSED | WAITING | RUNNING | NOTHING
    command: str
    writes: tuple[str, ...]  # "reply" is the venue's reply (a Jira comment or a reply in the thread)
    said: str  # with {here} {id} {run} {first} {start} {again} filled in
    run_after: str | None = None  # the target run's status afterwards (None: unchanged)
    proposal_after: str | None = None  # the proposal's status afterwards (None: unchanged)


CASES = [
    Case("reject the open proposal", PROPOSED, "/reject too risky", ("remove_worktree", "reply"),
         "Rejected proposal {id}; nothing was pushed. {again}", status.CANCELLED, proposals.REJECTED),
    Case("reject with no open proposal", WAITING, "/reject", ("reply",), "there is no open proposal {here}."),
    Case("reject with nothing here", NOTHING, "/reject", ("reply",), "there is no open proposal {here}."),
    Case("revise the open proposal", PROPOSED, "/revise keep the old name", ("enqueue_run", "reply"),
         "Revising proposal {id} with your note; a new proposal will follow.", status.QUEUED,
         proposals.STALE),
    Case("revise without saying what", PROPOSED, "/revise", ("reply",), "say what to change"),
    Case("revise with no open proposal", WAITING, "/revise rename it", ("reply",),
         "there is no open proposal {here} to revise."),
    Case("retry a waiting run", PROPOSED, "/retry", ("enqueue_run", "reply"),
         "Retrying run {run} from {first}.", status.QUEUED, proposals.STALE),
    Case("retry from a named phase", WAITING, "/retry validate", ("enqueue_run", "reply"),
         "Retrying run {run} from validate.", status.QUEUED),
    Case("retry a run that is still going", RUNNING, "/retry", ("reply",), "run {run} is already running."),
    Case("retry with nothing here", NOTHING, "/retry", ("reply",), "there is no run {here}; {start}."),
    Case("status of a waiting run", PROPOSED, "/status", ("reply",), "Run {run} is waiting."),
    Case("status with nothing here", NOTHING, "/status", ("reply",),
         "There is no Baton run {here} yet; {start}."),
    Case("help", NOTHING, "/help", ("reply",), "Baton understands these replies"),
    Case("a near miss gets a did-you-mean", NOTHING, "/aprove", ("reply",), "/approve"),
]  # fmt: skip


async def _target(t: Table, venue: str, given: str, thread: str) -> tuple[str | None, ProposalRow | None]:
    """The run the command acts on, in the state `given`, and its open proposal if any."""
    if given == NOTHING:
        return None, None
    if venue == "jira":
        run_id = await labelled(t)
        proposal = await ticket_proposal(t, run_id) if given == PROPOSED else None
    else:
        _, note = t.fakes.gitlab.add_note(PROJECT_ID, MR_IID, DEVELOPER.user, "/remediate", thread)
        run_id = await t.deliver("gitlab", gitlab_note("/remediate", DEVELOPER, note, thread))
        proposal = await thread_proposal(t, run_id, thread) if given == PROPOSED else None
    if given == RUNNING:
        assert await runs.claim(t.sm, run_id, "another-worker") is not None
    else:
        await t.waiting(run_id)
    return run_id, proposal


async def _command(t: Table, venue: str, text: str, thread: str) -> tuple[str, tuple[object, ...]]:
    """The command typed in the venue: (its run id, where its reply must go)."""
    if venue == "jira":
        return await t.deliver("jira", jira_comment(text, APPROVER)), ("add_comment", ISSUE)
    _, note = t.fakes.gitlab.add_note(PROJECT_ID, MR_IID, DEVELOPER.user, text, thread)
    run_id = await t.deliver("gitlab", gitlab_note(text, DEVELOPER, note, thread))
    return run_id, ("reply_in_discussion", PROJECT_ID, MR_IID, thread)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("venue", VENUES)
async def test_a_command(tmp_path: Path, venue: str, case: Case) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        thread = t.fakes.gitlab.start_thread(PROJECT_ID, MR_IID, REVIEWER.user, "add() ignores b").id
        target, proposal = await _target(t, venue, case.given, thread)
        before = await t.run(target) if target else None
        t.forget_setup()
        run_id, where = await _command(t, venue, case.command, thread)

        run = await t.job(run_id)

        reply = str(where[0])
        assert t.writes() == [reply if w == "reply" else w for w in case.writes]
        replies = [c for c in t.fakes.journal if c[0] == reply]
        assert [c[: len(where)] for c in replies] == [where]  # one reply, where the command was typed
        said = case.said.format(
            here=HERE[venue], id=proposal.id if proposal else "", run=(target or "")[:12],
            first=FIRST_PHASE[venue], start=START[venue], again=AGAIN[venue],
        )  # fmt: skip
        assert said in str(replies[0][-1])
        if venue == "gitlab":
            assert str(replies[0][-1]).startswith(f"@{DEVELOPER.username}")  # names the person
        assert run.status == status.SUCCEEDED
        if target is not None and before is not None:
            assert (await t.run(target)).status == (case.run_after or before.status)
            if case.run_after == status.QUEUED:
                assert t.queue.calls == [("enqueue_run", target)]
        if proposal is not None:
            after = await proposals.get(t.sm, proposal.id)
            assert after is not None and after.status == (case.proposal_after or proposals.PROPOSED)


async def test_a_rejected_proposal_cannot_be_approved_and_its_worktree_is_gone(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        target, proposal = await _target(t, "jira", PROPOSED, "")
        assert target is not None and proposal is not None
        run_id, _ = await _command(t, "jira", "/reject the API must stay", "")
        await t.job(run_id)
        t.forget_setup()

        approve, _ = await _command(t, "jira", "/approve", "")
        await t.job(approve)

        assert t.writes() == ["add_comment"]
        assert f"proposal {proposal.id} is already rejected" in str(t.fakes.jira.calls[0][2])
        assert not Path(proposal.target["worktree"]).exists()
        assert "rejected by Ann Approver: the API must stay" in await t.last_message(target)
