"""`/verify <page>` (orchestrators/verify.py) as a table over both venues, with the recording fakes: the
page becomes `verified` exactly once (a retried job adopts the first job's write), the reply goes where
the command was typed, an unknown page is refused with close matches, and who may use it follows
config/skills.yaml."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from arq.worker import Retry

from bot.clients.jira import JiraUnavailable
from bot.knowledge import Page, WikiError
from bot.store import status
from config.skills import SkillManifest, default_skills
from orchestrators.knowledge import Unavailable
from orchestrators.verify import effect_key, page_name
from tests.support.tables import (
    APPROVER,
    DEVELOPER,
    ISSUE,
    MAINTAINER,
    MR_IID,
    OUTSIDER,
    PROJECT_ID,
    REQUESTER,
    REVIEWER,
    GitLabPerson,
    JiraPerson,
    Table,
    gitlab_note,
    jira_comment,
    seed_gitlab,
    seed_jira,
    table,
)

GUEST = GitLabPerson(604, "guest")
PITFALL = Page.model_validate(
    {"path": "pitfalls/add-ignored-an-argument.md", "title": "add() once ignored its second argument",
     "kind": "pitfall", "status": "inferred", "modules": ["calc.py"], "source": "TES-7",
     "updated": datetime.date(2025, 3, 1), "body": "A review found add(a, b) returning a."}
)  # fmt: skip
ADR = PITFALL.model_copy(
    update={"path": "decisions/0001-calc-uses-decimal.md", "title": "calc uses Decimal", "kind": "decision",
            "status": "verified"}
)  # fmt: skip
VENUES = ("jira", "gitlab")


@dataclass(frozen=True)
class Case:
    name: str
    command: str
    said: str  # in the one reply
    verified: bool = False  # the page was promoted by this run
    refused: bool = False


CASES = [
    Case("an inferred pitfall", f"/verify {PITFALL.path}",
         f"Verified {{code}}{PITFALL.path}{{end}}", verified=True),
    Case("without .md and with the wiki/ prefix", "/verify wiki/pitfalls/add-ignored-an-argument",
         f"Verified {{code}}{PITFALL.path}{{end}}", verified=True),
    Case("an already verified page", f"/verify {ADR.path}",
         "is already {code}verified{end}; nothing changed."),
    Case("an unknown page: close matches", "/verify pitfalls/add-ignored-an-argumnt.md",
         f"Close matches: {{code}}{PITFALL.path}{{end}}", refused=True),
    Case("an unknown page far from any", "/verify glossary/zzz.md", "No page name is close to it",
         refused=True),
    Case("no page named", "/verify", "say which page to verify.", refused=True),
    Case("a path that climbs out", "/verify ../../etc/passwd", "that is not a page of the wiki",
         refused=True),
    Case("markup in the name", "/verify `pitfalls/<b>x</b>`", "that is not a page of the wiki",
         refused=True),
]  # fmt: skip
CODE = {"jira": ("{{", "}}"), "gitlab": ("`", "`")}


async def _command(
    t: Table, venue: str, text: str, thread: str, who: object = None
) -> tuple[str, tuple[object, ...]]:
    """The command typed in the venue: (its run id, where its reply must go)."""
    if venue == "jira":
        reader = who if isinstance(who, JiraPerson) else APPROVER
        return await t.deliver("jira", jira_comment(text, reader)), ("add_comment", ISSUE)
    member = who if isinstance(who, GitLabPerson) else MAINTAINER
    _, note = t.fakes.gitlab.add_note(PROJECT_ID, MR_IID, member.user, text, thread)
    run_id = await t.deliver("gitlab", gitlab_note(text, member, note, thread))
    return run_id, ("reply_in_discussion", PROJECT_ID, MR_IID, thread)


async def _world(t: Table) -> str:
    seed_gitlab(t)
    seed_jira(t)
    t.fakes.gitlab.add_member(PROJECT_ID, GUEST.id, 10)
    for page in (PITFALL, ADR):
        t.fakes.knowledge.add(page)
    return t.fakes.gitlab.start_thread(PROJECT_ID, MR_IID, REVIEWER.user, "add() ignores b").id


def _replies(t: Table, where: tuple[object, ...]) -> list[str]:
    return [str(c[-1]) for c in t.fakes.journal if c[0] == where[0]]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("venue", VENUES)
async def test_verify(tmp_path: Path, venue: str, case: Case) -> None:
    async with table(tmp_path) as t:
        thread = await _world(t)
        t.forget_setup()
        run_id, where = await _command(t, venue, case.command, thread)

        run = await t.job(run_id)

        assert [c[: len(where)] for c in t.fakes.journal if c[0] != "verify"] == [where]  # one reply, here
        (said,) = _replies(t, where)
        opening, closing = CODE[venue]
        assert case.said.format(code=opening, end=closing) in said
        if venue == "gitlab":
            assert said.startswith(f"@{MAINTAINER.username}")
        assert run.status == status.SUCCEEDED
        verifies = [c for c in t.fakes.knowledge.calls if c[0] == "verify"]
        if case.verified:
            who = APPROVER.display_name if venue == "jira" else MAINTAINER.username
            assert verifies == [("verify", PITFALL.path, who)]
            assert t.fakes.knowledge.pages[PITFALL.path].status == "verified"
            assert "(it was " in said and "inferred" in said
        else:
            assert verifies == []
            assert t.fakes.knowledge.pages[PITFALL.path].status == "inferred"
        assert (await t.last_message(run_id)).startswith("refused: ") == case.refused


def _jira_groups(t: Table, *groups: str) -> None:
    """This team's manifest: /verify only for members of `groups` on Jira."""
    skills = [
        s.model_copy(update={"jira_groups": groups}) if s.name == "verify" else s
        for s in default_skills().skills
    ]
    t.wctx = replace(
        t.wctx, clients=replace(t.wctx.need_clients(), skills=SkillManifest(skills=tuple(skills)))
    )


NOT_ALLOWED = [
    ("gitlab", GUEST, None, "/verify is for members with maintainer access or higher; you have guest"),
    (
        "gitlab",
        DEVELOPER,
        None,
        "/verify is for members with maintainer access or higher; you have developer",
    ),
    ("jira", OUTSIDER, ("wiki-editors",), "/verify is for group wiki-editors."),
    # a verified page changes every project's reviews: on Jira only the project's approvers may verify
    ("jira", OUTSIDER, None, "only these may approve on TES: group baton-approvers."),
    ("jira", REQUESTER, None, "only these may approve on TES: group baton-approvers."),
]


@pytest.mark.parametrize(
    ("venue", "who", "groups", "said"),
    NOT_ALLOWED,
    ids=[
        "gitlab guest",
        "gitlab developer",
        "jira outsider (skill groups)",
        "jira outsider",
        "jira reporter",
    ],
)
async def test_verify_by_someone_not_allowed_changes_nothing(
    tmp_path: Path, venue: str, who: object, groups: tuple[str, ...] | None, said: str
) -> None:
    async with table(tmp_path) as t:
        thread = await _world(t)
        if groups:
            _jira_groups(t, *groups)
            t.fakes.jira.add_to_group("wiki-editors", APPROVER.account_id)
        t.forget_setup()
        run_id, where = await _command(t, venue, f"/verify {PITFALL.path}", thread, who)

        run = await t.job(run_id)

        assert t.writes() == [where[0]]
        assert said in _replies(t, where)[0]
        assert t.fakes.knowledge.calls == []
        assert t.fakes.knowledge.pages[PITFALL.path].status == "inferred"
        assert run.status == status.SUCCEEDED


async def test_a_group_member_may_verify_when_the_skill_names_groups(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        await _world(t)
        _jira_groups(t, "wiki-editors")
        t.fakes.jira.add_to_group("wiki-editors", APPROVER.account_id)
        run_id, _ = await _command(t, "jira", f"/verify {PITFALL.path}", "")
        await t.job(run_id)
        assert [c[0] for c in t.fakes.knowledge.calls] == ["verify"]


RETRIED = [
    ("the wiki write's answer was lost", "verify", True),
    ("the reply failed after the write", "add_comment", False),
    ("the reply's answer was lost", "add_comment", True),
]


@pytest.mark.parametrize(("method", "lost"), [r[1:] for r in RETRIED], ids=[r[0] for r in RETRIED])
async def test_a_retried_verify_job_promotes_the_page_once(tmp_path: Path, method: str, lost: bool) -> None:
    async with table(tmp_path) as t:
        await _world(t)
        fake = t.fakes.knowledge if method == "verify" else t.fakes.jira
        if lost:
            fake.faults.lose.add(method)
        else:
            fake.faults.fail[method] = JiraUnavailable("Jira is busy (fake)", retry_after=1.0)
        t.forget_setup()
        run_id = await t.deliver("jira", jira_comment(f"/verify {PITFALL.path}", APPROVER))

        with pytest.raises(Retry):
            await t.job(run_id)
        assert (await t.run(run_id)).status == status.QUEUED
        run = await t.job(run_id)

        assert run.status == status.SUCCEEDED
        assert [c[0] for c in t.fakes.knowledge.calls] == ["verify"]  # once, whatever the first job did
        assert t.fakes.knowledge.pages[PITFALL.path].status == "verified"
        replies = [b for b in t.fakes.jira.bodies(ISSUE) if "Verified" in b]
        assert len(replies) == 1
        record = await t.wctx.need_clients().ledger.get(effect_key(await t.run(run_id)))
        assert record is not None and record.status == "done"
        again = await t.job(run_id)  # a stray third job for the finished run does nothing
        assert again.status == status.SUCCEEDED and len(t.fakes.knowledge.calls) == 1


BROKEN = [
    pytest.param(WikiError("the wiki is not a bare git repository"), id="wiki"),
    pytest.param(None, id="no-store"),
]


@pytest.mark.parametrize("error", BROKEN)
async def test_verify_with_the_store_down_is_refused_and_says_why(
    tmp_path: Path, error: Exception | None
) -> None:
    async with table(tmp_path) as t:
        await _world(t)
        if error is None:
            clients = replace(
                t.wctx.need_clients(), knowledge=Unavailable("the knowledge store could not be set up")
            )
            t.wctx = replace(t.wctx, clients=clients)
        else:
            t.fakes.knowledge.broken = error
        run_id, where = await _command(t, "jira", f"/verify {PITFALL.path}", "")

        run = await t.job(run_id)

        assert "the team's wiki is unavailable" in _replies(t, where)[0]
        assert run.status == status.SUCCEEDED and t.fakes.knowledge.calls == []


async def test_a_wiki_that_cannot_be_written_is_refused_with_a_retry_hint(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        await _world(t)
        t.fakes.knowledge.faults.fail["verify"] = WikiError("push refused")
        run_id, where = await _command(t, "jira", f"/verify {PITFALL.path}", "")

        await t.job(run_id)

        said = _replies(t, where)[0]
        assert "could not be written (WikiError)" in said and f"/verify {PITFALL.path}" in said


@pytest.mark.parametrize("venue", VENUES)
async def test_help_lists_verify(tmp_path: Path, venue: str) -> None:
    async with table(tmp_path) as t:
        thread = await _world(t)
        run_id, where = await _command(t, venue, "/help", thread)
        await t.job(run_id)
        assert "/verify: confirm a page of the team's wiki" in _replies(t, where)[0]


@pytest.mark.parametrize(
    ("args", "name"),
    [("pitfalls/x.md", "pitfalls/x.md"), ("pitfalls/x", "pitfalls/x.md"), ("`wiki/a/b.md` please", "a/b.md"),
     ("./a.md", "a.md"), ("", ""), ("   ", ""), ("<decisions/0001-x>", "decisions/0001-x.md")],
)  # fmt: skip
def test_page_name(args: str, name: str) -> None:
    assert page_name(args) == name
