"""Knowledge proposals next to other proposals on one ticket, and /approve when the wiki fails, through the
worker's job function (tests/support/tables.py): a wiki that cannot be written is retried by the same
approve run and, when the tries run out, the proposal is open again; proposals of different families
(code, ADR, learned facts) never make each other stale, and a bare command with several open is refused
with the replies that name each; an identical redraft is a new proposal; an ADR never lands over another
decision's page; page text is redacted before it is stored."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

import pytest
from arq.worker import Retry

from bot.git.errors import GitError
from bot.knowledge import Page, WikiError
from bot.store import proposals, status
from bot.store.tables import Proposal
from orchestrators import wiki_proposal
from orchestrators.knowledge import select_facts
from tests.orchestrators.test_learn_table import ADR, designed, learned
from tests.support.deliveries import label_added
from tests.support.fakes import FakeKnowledge
from tests.support.tables import (
    APPROVER,
    ISSUE,
    PROJECT_PATH,
    Table,
    jira_comment,
    labelled,
    seed_gitlab,
    seed_jira,
    table,
    ticket_proposal,
)


def said(t: Table) -> str:
    return str(t.fakes.jira.calls[-1][2])


async def approve(t: Table, text: str = "/approve") -> str:
    return await t.deliver("jira", jira_comment(text, APPROVER))


@pytest.mark.parametrize(
    "fault", [WikiError("the wiki remote: unreachable"), GitError("push", 1, "! [remote rejected] main")]
)
async def test_a_wiki_that_cannot_be_written_is_tried_again_by_the_same_approve_run(
    tmp_path: Path, fault: Exception
) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        learn, knowledge = await learned(t)
        t.fakes.knowledge.faults.fail["land"] = fault
        t.forget_setup()
        run_id = await approve(t)
        with pytest.raises(Retry):
            await t.job(run_id)
        held = await proposals.get(t.sm, knowledge.id)
        assert held is not None and held.status == proposals.APPROVED and t.writes() == []
        run = await t.job(run_id)  # the worker's next try resumes the proposal it approved
        assert run.status == status.SUCCEEDED and t.writes() == ["land", "add_comment"]
        assert "📚 Landed 5 page(s) in the wiki at" in said(t)
        after = await proposals.get(t.sm, knowledge.id)
        assert after is not None and after.status == proposals.SHIPPED
        assert (await t.run(learn)).status == status.SUCCEEDED


async def test_when_the_tries_run_out_the_proposal_is_open_again_and_the_approver_is_told(
    tmp_path: Path,
) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        _, knowledge = await learned(t)
        t.wctx = replace(t.wctx, settings=t.settings.model_copy(update={"max_run_attempts": 2}))
        t.forget_setup()
        run_id = await approve(t)
        t.fakes.knowledge.faults.fail["land"] = WikiError("the wiki remote: unreachable")
        with pytest.raises(Retry):
            await t.job(run_id)
        t.fakes.knowledge.faults.fail["land"] = WikiError("the wiki remote: unreachable")
        run = await t.job(run_id)  # the last try: no retry left
        assert run.status == status.SUCCEEDED and t.writes() == ["add_comment"]
        assert f"proposal {knowledge.id} did not land: the team" in said(t) and "after 2 tries" in said(t)
        assert "Reply /approve to try again later" in said(t)
        held = await proposals.get(t.sm, knowledge.id)
        assert held is not None and held.status == proposals.PROPOSED
        again = await t.job(await approve(t))  # a second /approve is not "already approved": it lands
        assert again.status == status.SUCCEEDED and "📚 Landed 5 page(s)" in said(t)
        assert set(t.fakes.knowledge.pages) == {p.path for p in wiki_proposal.pages_of(knowledge)}


async def test_pages_that_cannot_land_leave_the_proposal_open_with_the_reason(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        _, knowledge = await learned(t)
        async with t.sm.begin() as session:  # written by another version: a page that no longer validates
            row = await session.get(Proposal, knowledge.id)
            assert row is not None
            row.target = {**row.target, "pages": [{"path": "../escape.md"}]}
        t.forget_setup()
        run = await t.job(await approve(t))
        assert run.status == status.SUCCEEDED and t.writes() == ["add_comment"]
        assert "did not land: its pages cannot land" in said(t) and "a stored page is invalid" in said(t)
        held = await proposals.get(t.sm, knowledge.id)
        assert held is not None and held.status == proposals.PROPOSED


async def test_code_adr_and_learned_proposals_never_make_each_other_stale(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        implement = await labelled(t)
        code = await ticket_proposal(t, implement)
        await t.waiting(implement)
        design, adr = await designed(t)
        code_now = await proposals.get(t.sm, code.id)
        assert code_now is not None and code_now.status == proposals.PROPOSED
        assert (await t.run(implement)).status == status.WAITING
        t.forget_setup()

        bare = await t.job(await approve(t))  # two families open: say which
        assert bare.status == status.SUCCEEDED and t.writes() == ["add_comment"]
        assert "2 proposals are open on this ticket, so say which" in said(t)
        assert f"for the architecture decision reply {{{{/approve {adr.id}}}}}" in said(t)
        assert f"for the code change reply {{{{/approve {code.id}}}}}" in said(t)
        rejected = await t.job(await t.deliver("jira", jira_comment("/reject not now", APPROVER)))
        assert rejected.status == status.SUCCEEDED and f"{{{{/reject {adr.id}}}}}" in said(t)

        await t.job(await approve(t, f"/approve {adr.id}"))  # the ADR, named, lands; the code waits
        assert t.fakes.knowledge.pages == {ADR.path: ADR} and (await t.run(design)).status == status.SUCCEEDED
        code_now = await proposals.get(t.sm, code.id)
        assert code_now is not None and code_now.status == proposals.PROPOSED
        await t.job(await t.deliver("jira", jira_comment(f"/reject {code.id} wrong approach", APPROVER)))
        code_now = await proposals.get(t.sm, code.id)
        assert code_now is not None and code_now.status == proposals.REJECTED
        assert f"Rejected proposal {code.id}" in said(t)


async def test_retry_of_the_implement_run_leaves_an_open_adr_proposal_alone(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        implement = await labelled(t)
        code = await ticket_proposal(t, implement)
        await t.waiting(implement)
        _, adr = await designed(t)
        await t.job(await t.deliver("jira", jira_comment("/retry", APPROVER)))
        adr_now, code_now = await proposals.get(t.sm, adr.id), await proposals.get(t.sm, code.id)
        assert adr_now is not None and adr_now.status == proposals.PROPOSED
        assert code_now is not None and code_now.status == proposals.STALE  # the retried run's own


async def test_a_learned_proposal_and_an_adr_proposal_both_stay_open(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        _, knowledge = await learned(t)
        _, adr = await designed(t)
        learned_now = await proposals.get(t.sm, knowledge.id)
        assert learned_now is not None and learned_now.status == proposals.PROPOSED
        t.forget_setup()
        await t.job(await approve(t, f"/approve {knowledge.id}"))
        assert "📚 Landed 5 page(s)" in said(t)
        adr_now = await proposals.get(t.sm, adr.id)
        assert adr_now is not None and adr_now.status == proposals.PROPOSED
        await t.job(await approve(t))  # the only open one now: a bare /approve means it
        assert ADR.path in t.fakes.knowledge.pages


async def test_an_identical_redraft_after_revise_is_a_new_proposal(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        design, first = await designed(t)
        await t.job(await t.deliver("jira", jira_comment("/revise name the error type", APPROVER)))
        t.forget_setup()
        again = await wiki_proposal.propose(
            t.wctx, await t.run(design), "design", ISSUE, [ADR], project_path=PROJECT_PATH, ref=ISSUE
        )
        assert again.id != first.id and again.status == proposals.PROPOSED
        assert t.writes() == ["add_comment"] and f"proposal {again.id}*" in said(t)
        await t.job(await approve(t))
        assert t.fakes.knowledge.pages == {ADR.path: ADR}


async def test_an_adr_whose_path_was_taken_since_it_was_drafted_does_not_land(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        _, adr = await designed(t)
        other = t.fakes.knowledge.add(ADR.model_copy(update={"title": "another decision", "source": "TES-7"}))
        t.forget_setup()
        run = await t.job(await approve(t))
        assert run.status == status.SUCCEEDED and t.writes() == ["add_comment"]
        assert f"{ADR.path} now holds another decision" in said(t) and "Reply /revise" in said(t)
        assert t.fakes.knowledge.pages == {ADR.path: other}
        adr_now = await proposals.get(t.sm, adr.id)
        assert adr_now is not None and adr_now.status == proposals.PROPOSED


async def test_the_comment_says_when_a_page_replaces_one_already_in_the_wiki(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        t.fakes.knowledge.add(ADR.model_copy(update={"body": "the earlier draft"}))
        await designed(t)
        assert f"Replaces the page now at {{{{{ADR.path}}}}}" in said(t)
        await t.job(await approve(t))  # the same decision (same source): an update, it lands
        assert t.fakes.knowledge.pages == {ADR.path: ADR}


async def test_page_text_is_redacted_before_it_is_stored_and_landed(tmp_path: Path) -> None:
    token = "gitlab-api-token-for-tests"  # BATON_GITLAB_TOKEN of the table's settings
    leaky = ADR.model_copy(
        update={
            "title": f"calc {token}",
            "source": f"TES-41 {token}",
            "body": f"curl -H 'PRIVATE-TOKEN: {token}'",
        }
    )
    async with table(tmp_path) as t:
        seed_gitlab(t)
        seed_jira(t)
        design = await t.deliver("jira", label_added("ai-design"))
        proposal = await wiki_proposal.propose(
            t.wctx, await t.run(design), "design", ISSUE, [leaky], project_path=PROJECT_PATH, ref=ISSUE
        )
        assert token not in repr(proposal.target)
        stored = await proposals.get(t.sm, proposal.id)
        assert stored is not None and token not in repr(stored.target) and "[redacted]" in repr(stored.target)
        await t.waiting(design)
        await t.job(await approve(t))
        (page,) = t.fakes.knowledge.pages.values()
        assert token not in page.model_dump_json() and "[redacted]" in page.body


async def test_module_scoped_facts_are_left_out_when_no_module_is_guessed() -> None:
    knowledge = FakeKnowledge()
    knowledge.add(ADR)  # modules: calc.py
    everywhere = knowledge.add(
        Page.model_validate(
            {**ADR.model_dump(), "path": "glossary/calc.md", "kind": "glossary", "modules": [],
             "title": "calc adds exactly (glossary)", "updated": datetime.date(2026, 1, 2)}
        )
    )  # fmt: skip
    unguessed = await select_facts(knowledge, "calc adds exactly: reword the docs", modules=[])
    assert [f.path for f in unguessed.facts] == [everywhere.path]
    other = await select_facts(knowledge, "calc adds exactly: reword the docs", modules=["README.md"])
    assert [f.path for f in other.facts] == [everywhere.path]
    ours = await select_facts(knowledge, "calc adds exactly: reword the docs", modules=["calc.py"])
    assert {f.path for f in ours.facts} == {ADR.path, everywhere.path}
