"""The learning loop and knowledge proposals through the worker's job function, on a real SQLite store
with the ports' recording fakes: a merge of Baton's branch → `learn` reads the ticket's runs and posts one
knowledge proposal; `/approve` lands it once (same checks as a code proposal); `/reject` drops it;
`/revise` redrafts an ADR but not learned facts."""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from arq.worker import Retry

from bot.clients.gitlab import FileDiff
from bot.knowledge import Page
from bot.store import proposals, runs, status
from bot.store.proposals import ProposalRow
from bot.store.runs import add_activity
from bot.store.tables import Phase
from config.projects import ProjectMap
from orchestrators import wiki_proposal
from orchestrators.engine import SENT_BACK
from orchestrators.outputs import Check, Reviewed, Validated
from orchestrators.verdicts import Finding, Verdict
from tests.support.deliveries import fixture, label_added
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

MERGED_IID = 2
FAILED = Validated(
    passed=False,
    feedback="$ pytest -q\n(test) exit 1:\nFAILED tests/test_calc.py::test_add - assert 1 == 3",
    checks=(Check(stage="test", command="pytest -q", status="failed", exit_code=1),),
)
PASSED = Validated(
    passed=True, checks=(Check(stage="test", command="pytest -q", status="passed", exit_code=0),)
)
BLOCKER = Finding(file="calc.py", line=2, text="add ignores its second argument")
BLOCKED = Reviewed(verdict=Verdict(approve=False, blockers=[BLOCKER], summary="no"), feedback="blocked")
APPROVED = Reviewed(verdict=Verdict(approve=True, summary="add is right now"))


async def store_rounds(t: Table, run_id: str) -> None:
    """The shipped run's phases as the engine leaves them, and the two rounds that were sent back."""
    outputs = {"validate": PASSED.model_dump(mode="json"), "review": APPROVED.model_dump(mode="json")}
    async with t.sm.begin() as session:
        for position, (name, stored) in enumerate(outputs.items()):
            session.add(
                Phase(run_id=run_id, name=name, position=position, status="done", attempts=2, output=stored)
            )
        session.add(Phase(run_id=run_id, name="implement", position=9, status="done", attempts=3, output={}))
        sent_back: tuple[tuple[str, Validated | Reviewed], ...] = (("validate", FAILED), ("review", BLOCKED))
        for phase, output in sent_back:
            data = output.model_dump(mode="json")
            await add_activity(
                session, run_id, "baton", SENT_BACK, f"{phase} sent it back", phase=phase, output=data
            )


async def shipped(t: Table) -> ProposalRow:
    """TES-41's history: a proposal rejected with a reason, then a run revised once whose proposal shipped."""
    first = await labelled(t)
    await ticket_proposal(t, first, "def add(a, b):\n    return a\n")
    await t.waiting(first)
    await t.job(await t.deliver("jira", jira_comment("/reject it must not change the signature", APPROVER)))
    implement = await labelled(t)
    await t.waiting(implement)
    assert await runs.reopen(t.sm, implement, "table", "revise", revisions=["keep add() pure"])
    proposal = await ticket_proposal(t, implement)
    await store_rounds(t, implement)
    await t.waiting(implement)
    assert await proposals.approve(t.sm, proposal.id, "an-approve-run")
    assert await proposals.move(t.sm, proposal.id, proposals.APPROVED, proposals.SHIPPED)
    await runs.settle(t.sm, implement, status.SUCCEEDED, "baton", "shipped")
    gitlab = t.fakes.gitlab
    gitlab.set_branch(PROJECT_ID, proposal.target["branch"], proposal.sha)
    gitlab.add_merge_request(PROJECT_ID, proposal.target["branch"], iid=MERGED_IID, state="merged")
    diff = FileDiff("calc.py", "calc.py", "@@ -1 +1 @@\n-x\n+y\n", False, False, False)
    gitlab.mrs[(PROJECT_ID, MERGED_IID)].diff = (diff,)
    assert isinstance(proposal, ProposalRow)
    return proposal


def merge_hook(branch: str) -> dict[str, Any]:
    """The recorded Merge Request Hook as GitLab sends it for the merge of `branch` in the table's project."""
    payload = copy.deepcopy(fixture("gitlab/merge_request_open.json"))
    payload["project"].update(id=PROJECT_ID, path_with_namespace=PROJECT_PATH)
    payload["object_attributes"].update(
        action="merge", state="merged", iid=MERGED_IID, source_branch=branch, target_branch="main"
    )
    return payload


async def learned(t: Table) -> tuple[str, ProposalRow]:
    """The learn run after its job, and the knowledge proposal it left on the ticket."""
    code = await shipped(t)
    t.forget_setup()
    learn = await t.deliver("gitlab", merge_hook(code.target["branch"]))
    await t.job(learn)
    knowledge = await proposals.latest(t.sm, f"jira:{ISSUE}")
    assert knowledge is not None and wiki_proposal.is_knowledge(knowledge)
    return learn, knowledge


async def test_a_merge_proposes_what_the_ticket_taught_as_one_knowledge_proposal(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        learn, knowledge = await learned(t)

        run = await t.run(learn)
        assert (run.kind, run.status) == ("learn", status.WAITING)
        pages = wiki_proposal.pages_of(knowledge)
        assert [p.title for p in pages] == [
            "TES-41: FAILED tests/test_calc.py::test_add - assert 1 == 3",
            "TES-41: review blocker: add ignores its second argument",
            "TES-41: asked for a revision: keep add() pure",
            "TES-41: rejected a proposal: it must not change the signature",
            "TES-41: Unit test summary 1",
        ]
        assert {p.status for p in pages} == {"inferred"} and {p.modules for p in pages} == {("calc.py",)}
        assert {p.source for p in pages} == {f"TES-41 {PROJECT_PATH}!{MERGED_IID}"}
        assert knowledge.target["project_path"] == PROJECT_PATH and knowledge.target["origin"] == "learn"
        assert t.writes() == ["add_comment"]  # one comment on the ticket, nothing in the wiki yet
        ((_, key, body),) = t.fakes.jira.calls
        assert key == ISSUE and all("{{" + p.path + "}}" in str(body) for p in pages)
        assert t.fakes.knowledge.pages == {}
        await t.job(learn)  # a stray second job for the waiting run does nothing
        assert t.writes() == ["add_comment"]


async def test_the_merge_of_a_branch_baton_never_proposed_teaches_nothing(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        learn = await t.deliver("gitlab", merge_hook("baton/TES-41-made-by-hand"))
        run = await t.job(learn)
        assert run.status == status.SUCCEEDED and t.writes() == []
        assert (await t.last_message(learn)).startswith("nothing to learn: no proposal Baton shipped")


@dataclass(frozen=True)
class Case:
    name: str
    writes: tuple[str, ...]
    said: str
    proposal: str
    who: JiraPerson = APPROVER
    args: str = ""
    projects: ProjectMap | None = None
    shipped_before: bool = False


LANDS = ("land", "add_comment")
CASES = [
    Case("an approver lands the pages", LANDS, "📚 Landed 5 page(s) in the wiki at", proposals.SHIPPED),
    Case("naming the proposal by id", LANDS, "📚 Landed 5 page(s)", proposals.SHIPPED, args="{id}"),
    Case("someone outside the approvers", ("add_comment",), "only these may approve on TES",
         proposals.PROPOSED, who=OUTSIDER),
    Case("another proposal's id", ("add_comment",), "that is not the latest proposal", proposals.PROPOSED,
         args="0123456789ab"),
    Case("the project is no longer mapped", ("add_comment",), "is no longer in the project mapping",
         proposals.PROPOSED, projects=ProjectMap()),
    Case("already landed", ("add_comment",), "is already shipped", proposals.SHIPPED, shipped_before=True),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_approve_of_a_knowledge_proposal(tmp_path: Path, case: Case) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        learn, knowledge = await learned(t)
        if case.projects is not None:
            t.use_projects(case.projects)
        if case.shipped_before:
            assert await proposals.approve(t.sm, knowledge.id, "earlier")
            assert await proposals.move(t.sm, knowledge.id, proposals.APPROVED, proposals.SHIPPED)
        t.forget_setup()
        command = f"/approve {case.args.format(id=knowledge.id)}".strip()

        run = await t.job(await t.deliver("jira", jira_comment(command, case.who)))

        assert run.status == status.SUCCEEDED and t.writes() == list(case.writes)
        assert case.said in str(t.fakes.jira.calls[-1][2])
        after = await proposals.get(t.sm, knowledge.id)
        assert after is not None and after.status == case.proposal
        landed = case.writes == LANDS
        pages = wiki_proposal.pages_of(knowledge)
        assert t.fakes.knowledge.pages == ({p.path: p for p in pages} if landed else {})
        assert (await t.run(learn)).status == (status.SUCCEEDED if landed else status.WAITING)


async def test_a_lost_wiki_answer_is_not_landed_twice(tmp_path: Path) -> None:
    """The first job's wiki write happened but its answer was lost; the retried job finds the pages
    there as proposed and adopts the write: one landing, one comment."""
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        _, knowledge = await learned(t)
        t.fakes.knowledge.faults.lose.add("land")
        t.forget_setup()
        approve = await t.deliver("jira", jira_comment("/approve", APPROVER))
        with pytest.raises(Retry):
            await t.job(approve)
        run = await t.job(approve)
        assert run.status == status.SUCCEEDED and t.writes() == ["land", "add_comment"]
        assert "📚 Landed 5 page(s) in the wiki:" in str(t.fakes.jira.calls[-1][2])  # the commit is unknown
        after = await proposals.get(t.sm, knowledge.id)
        assert after is not None and after.status == proposals.SHIPPED


async def test_reject_drops_the_facts_and_revise_does_not_redraft_them(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        learn, knowledge = await learned(t)
        t.forget_setup()
        revise = await t.job(await t.deliver("jira", jira_comment("/revise say it differently", APPROVER)))
        assert revise.status == status.SUCCEEDED and "are not redrafted" in str(t.fakes.jira.calls[-1][2])
        await t.job(await t.deliver("jira", jira_comment("/reject these are wrong", APPROVER)))
        after = await proposals.get(t.sm, knowledge.id)
        assert after is not None and after.status == proposals.REJECTED
        assert (await t.run(learn)).status == status.CANCELLED
        assert "land" not in t.writes() and t.fakes.knowledge.pages == {}


ADR = Page.model_validate(
    {"path": "decisions/calc-adds-exactly.md", "title": "calc adds exactly", "kind": "decision",
     "status": "verified", "modules": ["calc.py"], "source": "TES-41", "updated": datetime.date(2026, 1, 2),
     "body": "## Context\n\nx\n\n## Decision\n\ny\n\n## Consequences\n\nz"}
)  # fmt: skip


async def designed(t: Table) -> tuple[str, ProposalRow]:
    """A design run on TES-41 (the labeller is REQUESTER) that proposed ADR and waits."""
    design = await t.deliver("jira", label_added("ai-design"))
    run = await t.run(design)
    assert run.kind == "design"
    proposal = await wiki_proposal.propose(
        t.wctx, run, "design", ISSUE, [ADR], project_path=PROJECT_PATH, ref=ISSUE
    )
    await t.waiting(design)
    return design, proposal


async def test_an_adr_lands_verified_and_its_requester_cannot_approve_it(tmp_path: Path) -> None:
    async with table(tmp_path, project_map(jira_groups=("baton-approvers",), jira_users=("admin",))) as t:
        seed_gitlab(t)
        seed_jira(t)
        design, _ = await designed(t)
        t.forget_setup()
        refused = await t.job(await t.deliver("jira", jira_comment("/approve", REQUESTER)))
        assert refused.status == status.SUCCEEDED and t.writes() == ["add_comment"]
        assert "who asked for this work cannot approve it" in str(t.fakes.jira.calls[-1][2])
        await t.job(await t.deliver("jira", jira_comment("/approve", APPROVER)))
        assert t.fakes.knowledge.pages == {ADR.path: ADR} and ADR.status == "verified"
        assert (await t.run(design)).status == status.SUCCEEDED
        assert "reply {{/verify <page>}}" not in str(t.fakes.jira.calls[-1][2])  # nothing left to verify


async def test_revise_redrafts_an_adr_from_its_draft_phase(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        design, proposal = await designed(t)
        t.forget_setup()
        await t.job(await t.deliver("jira", jira_comment("/revise name the error type", APPROVER)))
        after = await proposals.get(t.sm, proposal.id)
        assert after is not None and after.status == proposals.STALE
        reopened = await t.run(design)
        assert reopened.status == status.QUEUED and design in t.queue.jobs
        assert reopened.trigger.revisions == ("name the error type",)  # type: ignore[union-attr]
        assert "Revising proposal" in str(t.fakes.jira.calls[-1][2])
