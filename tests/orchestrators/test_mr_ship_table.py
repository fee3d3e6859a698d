"""`/approve` in a merge request thread (orchestrators/mr_ship.py), as a table of decisions.

Setting: the recorded project's MR !1 (from `feature`, opened by MR_AUTHOR); a reviewer's thread on it;
a developer's `/remediate` in that thread whose run proposed one commit on top of the branch head. Each
case: who approves, where, what changed since → the writes in order (the ports' recording fakes), the
one reply and the thread it goes to, the run's and the proposal's end state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from arq.worker import Retry

from bot.clients.gitlab import Discussion, GitLabUnavailable
from bot.git.errors import GitError
from bot.store import proposals, status
from bot.store.proposals import ProposalRow
from tests.support.tables import (
    DEVELOPER,
    MAINTAINER,
    MR_AUTHOR,
    MR_IID,
    PROJECT_ID,
    REVIEWER,
    SOURCE_BRANCH,
    GitLabPerson,
    Table,
    gitlab_note,
    seed_gitlab,
    table,
    thread_proposal,
)

SHIPS = ("push", "reply_in_discussion", "resolve_discussion", "remove_worktree")
REFUSES = ("reply_in_discussion",)
Setup = Callable[[Table, ProposalRow], Awaitable[None]]


async def pushed_meanwhile(t: Table, proposal: ProposalRow) -> None:
    t.fakes.gitlab.set_branch(PROJECT_ID, SOURCE_BRANCH, "e" * 40)


async def branch_deleted(t: Table, proposal: ProposalRow) -> None:
    del t.fakes.gitlab.branches[(PROJECT_ID, SOURCE_BRANCH)]


async def mr_closed(t: Table, proposal: ProposalRow) -> None:
    t.fakes.gitlab.set_state(PROJECT_ID, MR_IID, "closed")


async def worktree_moved(t: Table, proposal: ProposalRow) -> None:
    t.fakes.workspace.set_head(Path(proposal.target["worktree"]), "f" * 40)


async def made_stale(t: Table, proposal: ProposalRow) -> None:
    assert await proposals.move(t.sm, proposal.id, proposals.PROPOSED, proposals.STALE)


async def push_rejected(t: Table, proposal: ProposalRow) -> None:
    t.fakes.workspace.faults.fail["push"] = GitError(
        "push", 1, "! [remote rejected] (pre-receive hook declined)"
    )


@dataclass(frozen=True)
class Case:
    name: str
    writes: tuple[str, ...]
    said: str  # in the one reply
    proposal: str  # its status afterwards
    who: GitLabPerson = MAINTAINER
    text: str = "/approve"  # `{older}` is filled in
    where: str = "thread"  # "thread": the proposal's; "other": another thread; "overview": an MR note
    setup: Setup | None = None
    older: bool = False
    outcome: str = status.SUCCEEDED


CASES = [
    Case("a maintainer approves in the thread", SHIPS, "this thread is resolved", proposals.SHIPPED),
    Case("the mention form", SHIPS, "this thread is resolved", proposals.SHIPPED, text="@baton-bot approve"),
    Case("a developer (below maintainer)", REFUSES,
         "/approve is for members with maintainer access or higher; you have developer", proposals.PROPOSED,
         who=DEVELOPER),
    Case("the merge request's author", REFUSES, "the author of a merge request cannot /approve",
         proposals.PROPOSED, who=MR_AUTHOR),
    Case("someone pushed to the branch", REFUSES, f"branch {SOURCE_BRANCH} moved to eeeeeeeeeeee",
         proposals.STALE, setup=pushed_meanwhile),
    Case("the branch was deleted", REFUSES, f"branch {SOURCE_BRANCH} no longer exists", proposals.STALE,
         setup=branch_deleted),
    Case("the merge request was closed", REFUSES, "the merge request is closed; nothing can be pushed",
         proposals.PROPOSED, setup=mr_closed),
    Case("the worktree's HEAD moved", REFUSES, "is no longer what was proposed", proposals.STALE,
         setup=worktree_moved),
    Case("the proposal went stale before", REFUSES, "a newer proposal or a retry replaced it",
         proposals.STALE, setup=made_stale),
    Case("an older proposal's id", REFUSES, "that is not this thread's latest proposal", proposals.PROPOSED,
         text="/approve {older}", older=True),
    Case("another thread has no proposal", REFUSES, "there is no Baton proposal in this thread yet.",
         proposals.PROPOSED, where="other"),
    Case("the MR overview has no /remediate all proposal", REFUSES,
         "there is no Baton proposal in this thread yet.", proposals.PROPOSED, where="overview"),
    Case("the push is rejected", REFUSES, "the push failed", proposals.PROPOSED, setup=push_rejected,
         outcome=status.FAILED),
]  # fmt: skip


async def remediated(t: Table, thread: Discussion) -> tuple[str, ProposalRow]:
    """A developer's `/remediate` in `thread`, and the proposal its run left there (waiting)."""
    _, note = t.fakes.gitlab.add_note(PROJECT_ID, MR_IID, DEVELOPER.user, "/remediate", thread.id)
    run_id = await t.deliver("gitlab", gitlab_note("/remediate", DEVELOPER, note, thread.id))
    proposal = await thread_proposal(t, run_id, thread.id)
    await t.waiting(run_id)
    return run_id, proposal


async def command(t: Table, who: GitLabPerson, text: str, discussion_id: str | None) -> tuple[str, str]:
    """`who` types `text` in `discussion_id` (or on the MR overview): (the run's id, the discussion)."""
    discussion, note = t.fakes.gitlab.add_note(PROJECT_ID, MR_IID, who.user, text, discussion_id)
    return await t.deliver("gitlab", gitlab_note(text, who, note, discussion.id)), discussion.id


async def _world(t: Table, case: Case) -> tuple[Discussion, ProposalRow, ProposalRow | None]:
    seed_gitlab(t)
    thread = t.fakes.gitlab.start_thread(PROJECT_ID, MR_IID, REVIEWER.user, "add() ignores b")
    older = (await remediated(t, thread))[1] if case.older else None
    _, proposal = await remediated(t, thread)
    return thread, proposal, older


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_approve_in_a_merge_request_thread(tmp_path: Path, case: Case) -> None:
    async with table(tmp_path) as t:
        thread, proposal, older = await _world(t, case)
        if case.setup is not None:
            await case.setup(t, proposal)
        where = {"thread": thread.id, "overview": None}.get(case.where, "")
        if case.where == "other":
            where = t.fakes.gitlab.start_thread(PROJECT_ID, MR_IID, REVIEWER.user, "and rename it").id
        head = await t.fakes.gitlab.branch_head(PROJECT_ID, SOURCE_BRANCH)
        t.forget_setup()
        run_id, discussion = await command(
            t, case.who, case.text.format(older=older.id if older else ""), where
        )

        run = await t.job(run_id)

        assert t.writes() == list(case.writes)
        replies = [c for c in t.fakes.gitlab.calls if c[0] == "reply_in_discussion"]
        assert [c[1:4] for c in replies] == [
            (PROJECT_ID, MR_IID, discussion)
        ]  # one reply, where it was typed
        assert case.said in str(replies[0][4]) and f"@{case.who.username}" in str(replies[0][4])
        assert run.status == case.outcome
        after = await proposals.get(t.sm, proposal.id)
        assert after is not None and after.status == case.proposal
        pushed = await t.fakes.gitlab.branch_head(PROJECT_ID, SOURCE_BRANCH)
        assert pushed == (proposal.sha if case.writes == SHIPS else head)  # nothing else reaches the branch


async def test_approving_fast_forwards_exactly_the_proposed_commit_and_resolves_the_thread(
    tmp_path: Path,
) -> None:
    async with table(tmp_path) as t:
        thread, proposal, _ = await _world(t, CASES[0])
        t.forget_setup()
        run_id, _ = await command(t, MAINTAINER, "/approve", thread.id)

        await t.job(run_id)

        remediate_run = proposal.run_id
        assert t.fakes.workspace.calls == [
            ("push", remediate_run, proposal.target["remote_url"], SOURCE_BRANCH, proposal.sha),
            ("remove_worktree", remediate_run, False),
        ]
        assert t.fakes.gitlab.calls[1] == ("resolve_discussion", PROJECT_ID, MR_IID, thread.id, True)
        assert t.fakes.gitlab.thread(PROJECT_ID, MR_IID, thread.id).resolved
        assert (await t.run(remediate_run)).status == status.SUCCEEDED
        assert (await t.last_message(run_id)).startswith(f"pushed proposal {proposal.id}")


@pytest.mark.parametrize("lost", [False, True], ids=["GitLab down at the reply", "the reply's answer lost"])
async def test_a_retried_thread_approve_replies_once(tmp_path: Path, lost: bool) -> None:
    """The first job pushed and then died at the reply; the second resumes its own approval (the branch
    is now at the proposed SHA, which a resuming approval accepts) and replies and resolves once."""
    async with table(tmp_path) as t:
        thread, proposal, _ = await _world(t, CASES[0])
        gitlab = t.fakes.gitlab
        if lost:
            gitlab.faults.lose.add("reply_in_discussion")
        else:
            gitlab.faults.fail["reply_in_discussion"] = GitLabUnavailable("502 (fake)", retry_after=1.0)
        t.forget_setup()
        run_id, _ = await command(t, MAINTAINER, "/approve", thread.id)

        with pytest.raises(Retry):
            await t.job(run_id)
        run = await t.job(run_id)

        assert run.status == status.SUCCEEDED
        assert [c[0] for c in gitlab.calls] == ["reply_in_discussion", "resolve_discussion"]
        bodies = [n.body for n in gitlab.thread(PROJECT_ID, MR_IID, thread.id).notes]
        assert len([b for b in bodies if "this thread is resolved" in b]) == 1
        after = await proposals.get(t.sm, proposal.id)
        assert after is not None and after.status == proposals.SHIPPED
