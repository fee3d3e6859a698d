"""`/approve` on a Jira ticket (orchestrators/ship.py), as a table of decisions.

Each case: who types `/approve` (and what argument), what changed since the proposal → the writes the
job makes, in order, across GitLab, Jira and the workspace (the ports' recording fakes), what the one
reply says and where it goes, and how the run and the proposal end. The run is started from the
recorded Jira comment delivery and executed by the worker's job function on a real SQLite store.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from arq.worker import Retry

from bot.clients.jira import JiraUnavailable
from bot.git.errors import HeadMoved
from bot.store import proposals, status
from bot.store.proposals import ProposalRow
from config.projects import ProjectMap
from tests.support.tables import (
    APPROVER,
    ISSUE,
    OUTSIDER,
    PROJECT_ID,
    PROJECT_PATH,
    REQUESTER,
    JiraPerson,
    Table,
    jira_comment,
    labelled,
    project_map,
    seed_gitlab,
    seed_jira,
    table,
    ticket_proposal,
)

SHIPS = ("push", "create_merge_request", "add_comment", "remove_worktree")
REFUSES = ("add_comment",)
Setup = Callable[[Table, ProposalRow], Awaitable[None]]


async def branch_moved(t: Table, proposal: ProposalRow) -> None:
    t.fakes.gitlab.set_branch(PROJECT_ID, proposal.target["branch"], "e" * 40)


async def worktree_moved(t: Table, proposal: ProposalRow) -> None:
    t.fakes.workspace.set_head(Path(proposal.target["worktree"]), "f" * 40)


async def worktree_gone(t: Table, proposal: ProposalRow) -> None:
    shutil.rmtree(proposal.target["worktree"])


async def already_shipped(t: Table, proposal: ProposalRow) -> None:
    assert await proposals.approve(t.sm, proposal.id, "someone-elses-run")
    assert await proposals.move(t.sm, proposal.id, proposals.APPROVED, proposals.SHIPPED)


async def head_moves_during_push(t: Table, proposal: ProposalRow) -> None:
    t.fakes.workspace.faults.fail["push"] = HeadMoved("worktree HEAD is 0000, not the approved one")


@dataclass(frozen=True)
class Case:
    name: str
    writes: tuple[str, ...]
    said: str  # in the one Jira comment the job posts
    proposal: str  # the proposal's status afterwards
    who: JiraPerson = APPROVER
    args: str = ""  # `{id}`, `{sha}` and `{older}` are filled in
    setup: Setup | None = None
    projects: ProjectMap | None = None
    older: bool = False  # an older proposal (another implement run) exists too
    proposed: bool = True  # False: the ticket has no proposal at all


CASES = [
    Case("an approver ships the latest proposal", SHIPS, "✅ Shipped: merge request [!2|", proposals.SHIPPED),
    Case("naming the latest proposal by id", SHIPS, "✅ Shipped", proposals.SHIPPED, args="{id}"),
    Case("naming it by 7 characters of its SHA", SHIPS, "✅ Shipped", proposals.SHIPPED, args="{sha7}"),
    Case("an approver listed by name, not group", SHIPS, "✅ Shipped", proposals.SHIPPED, who=OUTSIDER,
         projects=project_map(jira_users=("olaf",))),
    Case("someone outside the approvers", REFUSES, "only these may approve on TES: group baton-approvers",
         proposals.PROPOSED, who=OUTSIDER),
    Case("the person who asked for the work", REFUSES, "who asked for this work cannot approve it",
         proposals.PROPOSED, who=REQUESTER, projects=project_map(jira_groups=("baton-approvers",),
                                                              jira_users=("admin",))),
    Case("an older proposal's id", REFUSES, "that is not the latest proposal (the latest is {id}",
         proposals.PROPOSED, args="{older}", older=True),
    Case("someone pushed to the proposal's branch", REFUSES, "is stale: branch baton/TES-41-",
         proposals.PROPOSED, setup=branch_moved),
    Case("the worktree's HEAD moved", REFUSES, "is no longer what was proposed", proposals.PROPOSED,
         setup=worktree_moved),
    Case("the worktree is gone", REFUSES, "is no longer what was proposed", proposals.PROPOSED,
         setup=worktree_gone),
    Case("the proposal was already shipped", REFUSES, "is already shipped", proposals.SHIPPED,
         setup=already_shipped),
    Case("the project is no longer mapped", REFUSES, "is no longer in the project mapping",
         proposals.PROPOSED, projects=ProjectMap()),
    Case("HEAD moves between the check and the push", REFUSES, "the proposal went stale", proposals.STALE,
         setup=head_moves_during_push),
    Case("there is no proposal yet", REFUSES, "there is no proposal on this ticket yet.", "none",
         proposed=False),
]  # fmt: skip


async def _proposal(t: Table, case: Case) -> tuple[ProposalRow | None, ProposalRow | None]:
    """(older, latest) proposals on the ticket, each from its own implement run, as propose leaves them."""
    older = None
    if case.older:
        first = await labelled(t)
        older = await ticket_proposal(t, first, "def add(a, b):\n    return b + a\n")
        await t.waiting(first)
    if not case.proposed:
        return older, None
    implement = await labelled(t)
    latest = await ticket_proposal(t, implement)
    await t.waiting(implement)
    return older, latest


def _args(case: Case, older: ProposalRow | None, latest: ProposalRow | None) -> str:
    return case.args.format(
        id=latest.id if latest else "", sha7=latest.sha[:7] if latest else "", older=older.id if older else ""
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_approve_on_a_ticket(tmp_path: Path, case: Case) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        if case.projects is not None:
            t.use_projects(case.projects)
        older, latest = await _proposal(t, case)
        if case.setup is not None and latest is not None:
            await case.setup(t, latest)
        t.forget_setup()
        run_id = await t.deliver(
            "jira", jira_comment(f"/approve {_args(case, older, latest)}".strip(), case.who)
        )

        run = await t.job(run_id)

        assert t.writes() == list(case.writes)
        comments = t.fakes.jira.calls
        assert [c[:2] for c in comments] == [("add_comment", ISSUE)]  # one reply, on the ticket
        assert case.said.format(id=latest.id if latest else "") in str(comments[0][2])
        assert run.status == status.SUCCEEDED
        message = await t.last_message(run_id)
        assert message.startswith("shipped proposal" if case.writes == SHIPS else "refused: ")
        if latest is not None:
            after = await proposals.get(t.sm, latest.id)
            assert after is not None and after.status == case.proposal
        if older is not None:  # an older proposal is never touched
            kept = await proposals.get(t.sm, older.id)
            assert kept is not None and kept.status == proposals.STALE


async def test_shipping_pushes_the_proposed_sha_opens_one_mr_and_links_it(tmp_path: Path) -> None:
    """The happy path's writes in full: exactly the proposed SHA, the MR from its branch, the link."""
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        implement = await labelled(t)
        proposal = await ticket_proposal(t, implement)
        await t.waiting(implement)
        t.forget_setup()
        run_id = await t.deliver("jira", jira_comment("/approve", APPROVER))

        await t.job(run_id)

        branch, remote = proposal.target["branch"], proposal.target["remote_url"]
        mr = t.fakes.gitlab.mrs[(PROJECT_ID, 2)].mr
        assert t.fakes.workspace.calls == [
            ("push", implement, remote, branch, proposal.sha),
            ("remove_worktree", implement, True),  # the branch is kept: the MR needs it
        ]
        assert t.fakes.gitlab.calls == [("create_merge_request", PROJECT_PATH, branch, "main", mr.title)]
        assert mr.title.startswith(f"[{ISSUE}] ") and mr.source_branch == branch
        link = f"✅ Shipped: merge request [!2|{mr.web_url}] opens branch {{{{{branch}}}}} for review."
        assert t.fakes.jira.calls == [("add_comment", ISSUE, link)]
        assert await t.fakes.gitlab.branch_head(PROJECT_ID, branch) == proposal.sha
        assert (await t.run(implement)).status == status.SUCCEEDED  # the implement run is done


@dataclass(frozen=True)
class Retried:
    name: str
    method: str  # the Jira or GitLab write that goes wrong in the first job
    lost: bool  # True: it happened but its answer was lost; False: it failed before happening


RETRIED = [
    Retried("Jira down when linking the MR", "add_comment", lost=False),
    Retried("the link's answer was lost", "add_comment", lost=True),
    Retried("the MR's answer was lost", "create_merge_request", lost=True),
]


@pytest.mark.parametrize("case", RETRIED, ids=[c.name for c in RETRIED])
async def test_a_retried_approve_job_posts_nothing_twice(tmp_path: Path, case: Retried) -> None:
    """The first job dies on a retryable error; the second resumes its own approval and completes it:
    one MR, one link comment, whatever the first job managed before it died."""
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        implement = await labelled(t)
        proposal = await ticket_proposal(t, implement)
        await t.waiting(implement)
        fake = t.fakes.jira if case.method == "add_comment" else t.fakes.gitlab
        if case.lost:
            fake.faults.lose.add(case.method)
        else:
            fake.faults.fail[case.method] = JiraUnavailable("Jira is busy (fake)", retry_after=1.0)
        t.forget_setup()
        run_id = await t.deliver("jira", jira_comment("/approve", APPROVER))

        with pytest.raises(Retry):
            await t.job(run_id)
        assert (await t.run(run_id)).status == status.QUEUED  # handed back to the queue
        run = await t.job(run_id)

        assert run.status == status.SUCCEEDED
        assert [c[0] for c in t.fakes.gitlab.calls] == ["create_merge_request"]
        assert [c[0] for c in t.fakes.jira.calls] == ["add_comment"]
        shipped = [b for b in t.fakes.jira.bodies(ISSUE) if "Shipped" in b]
        assert len(shipped) == 1 and len(t.fakes.gitlab.mrs) == 2  # MR !1 and the one the job opened
        after = await proposals.get(t.sm, proposal.id)
        assert after is not None and after.status == proposals.SHIPPED
        again = await t.job(run_id)  # a stray third job for the finished run does nothing
        assert again.status == status.SUCCEEDED and len(t.fakes.jira.calls) == 1
