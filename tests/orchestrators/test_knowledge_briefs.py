"""Team knowledge in briefs and reviews (orchestrators/knowledge.py, the assemble phases, the review
prompt), with the recording fakes: the facts for the modules a ticket or an MR thread touches are quoted
with their status tag, facts scoped to other modules are left out, the run records what it used
(`baton show`), and a broken or missing store never stops the run."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

import pytest

from bot.clients.gitlab import FileDiff, Position
from bot.knowledge import Page, WikiError, knowledge_for
from bot.repo_config import RepoConfig, parse_repo_config
from bot.store import runs
from config.settings import load_settings
from orchestrators import implement, prompts, remediate
from orchestrators.brief import KNOWLEDGE_NOTE, NO_KNOWLEDGE
from orchestrators.engine import PhaseContext, Workflow, execute
from orchestrators.knowledge import Unavailable, likely_modules, named_paths
from orchestrators.outputs import ThreadAssembled, TicketAssembled
from orchestrators.ports import Knowledge
from tests.support.tables import (
    DEVELOPER,
    ISSUE,
    MR_IID,
    PROJECT_ID,
    REVIEWER,
    Table,
    gitlab_note,
    labelled,
    seed_gitlab,
    table,
)

DAY = datetime.date(2025, 3, 1)


def page(path: str, kind: str, status: str, title: str, modules: tuple[str, ...], body: str) -> Page:
    return Page.model_validate(
        {"path": path, "title": title, "kind": kind, "status": status, "modules": modules,
         "source": "TES-7", "updated": DAY, "body": body}
    )  # fmt: skip


CALC_ADR = page(
    "decisions/0001-calc-uses-decimal.md", "decision", "verified", "Arithmetic in calc.py uses Decimal",
    ("calc.py",), "## Context\n\nFloats lose cents.\n\n## Decision\n\nadd and sub take and return Decimal.",
)  # fmt: skip
CALC_PITFALL = page(
    "pitfalls/add-ignored-an-argument.md", "pitfall", "inferred", "add() once ignored its second argument",
    ("calc.py",), "A review found add(a, b) returning a; the test only covered b == 0.",
)  # fmt: skip
BILLING_ADR = page(
    "decisions/0002-billing-rounds-half-even.md", "decision", "verified", "Billing rounds half-even",
    ("billing/**",), "Invoices add Decimal amounts and round half-even; never floats in billing.",
)  # fmt: skip
GLOSSARY = page(
    "glossary/decimal.md", "glossary", "human-provided", "Decimal",
    (), "Decimal means Python's decimal.Decimal, never float.",
)  # fmt: skip
SUMMARY = "Make add in calc.py return the sum"
DESCRIPTION = "add(a, b) in calc.py ignores b. Keep using Decimal like the rest of the module."


async def assemble_ticket(t: Table) -> tuple[TicketAssembled, str]:
    t.fakes.jira.add_issue(ISSUE, SUMMARY, DESCRIPTION)
    seed_gitlab(t)
    run = await t.run(await labelled(t))
    result = await implement.assemble(PhaseContext(t.wctx, run, {}, 1))
    return TicketAssembled.model_validate(result.output), run.id


def use_knowledge(t: Table, knowledge: Knowledge) -> None:
    """The worker context's clients with another knowledge store."""
    t.wctx = replace(t.wctx, clients=replace(t.wctx.need_clients(), knowledge=knowledge))


def fill(t: Table, *pages: Page) -> None:
    for each in pages:
        t.fakes.knowledge.add(each)


async def test_the_ticket_brief_quotes_its_modules_facts_with_their_status_and_the_run_records_them(
    tmp_path: Path,
) -> None:
    async with table(tmp_path) as t:
        fill(t, CALC_ADR, CALC_PITFALL, BILLING_ADR, GLOSSARY)
        t.fakes.jira.add_issue(ISSUE, SUMMARY, DESCRIPTION)
        seed_gitlab(t)
        run = await t.run(await labelled(t))

        await execute(Workflow("implement", (("assemble", implement.assemble),)), t.wctx, run)

        detail = await runs.detail(t.sm, run.id)
        used = {(f["path"], f["status"]) for f in detail["knowledge"]}
        assert used == {
            (CALC_ADR.path, "verified"),
            (CALC_PITFALL.path, "inferred"),
            (GLOSSARY.path, "human-provided"),
        }
        brief = await stored_brief(t, run.id)
        assert "### [verified] `Arithmetic in calc.py uses Decimal`" in brief
        assert "### [inferred] `add() once ignored its second argument`" in brief
        assert "### [human-provided] `Decimal`" in brief
        assert f"page `{CALC_ADR.path}`" in brief and "modules `calc.py`" in brief
        assert KNOWLEDGE_NOTE in brief and "`inferred` (drawn by an agent" in brief
        assert "Billing rounds half-even" not in brief  # another module's decision
        assert BILLING_ADR.path not in brief and NO_KNOWLEDGE not in brief
        # decisions and pitfalls of the touched module come first
        assert brief.index("Arithmetic in calc.py") < brief.index("### [human-provided]")


async def stored_brief(t: Table, run_id: str) -> str:
    from sqlalchemy import select

    from bot.store.tables import Phase

    async with t.sm() as session:
        row = (
            await session.execute(select(Phase).where(Phase.run_id == run_id, Phase.name == "assemble"))
        ).scalar_one()
    return str(TicketAssembled.model_validate(row.output).brief)


async def test_no_facts_for_the_modules_says_so(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        fill(t, BILLING_ADR)
        assembled, _ = await assemble_ticket(t)
        assert "## Team knowledge\n\n" + NO_KNOWLEDGE in assembled.brief
        assert assembled.knowledge == () and assembled.knowledge_unavailable == ""


BROKEN = [
    pytest.param(lambda t: setattr(t.fakes.knowledge, "broken", WikiError("git cat-file failed")), id="wiki"),
    pytest.param(lambda t: setattr(t.fakes.knowledge, "broken", OSError("disk full")), id="os-error"),
    pytest.param(
        lambda t: use_knowledge(t, Unavailable("the knowledge store could not be set up: OSError")),
        id="no-store",
    ),
]


@pytest.mark.parametrize("breakage", BROKEN)
async def test_a_broken_or_missing_store_never_stops_the_run(tmp_path: Path, breakage: object) -> None:
    async with table(tmp_path) as t:
        fill(t, CALC_ADR)
        breakage(t)  # type: ignore[operator]
        assembled, _ = await assemble_ticket(t)
        assert "Team knowledge is unavailable for this run (" in assembled.brief
        assert "go on without it" in assembled.brief
        assert assembled.knowledge == () and assembled.knowledge_unavailable
        review = prompts.review(
            ISSUE, assembled.brief, "diff", "", assembled.decisions(), assembled.knowledge_unavailable
        )
        assert "Team knowledge is unavailable for this run (" in review


async def test_a_real_store_over_an_unusable_wiki_directory_leaves_the_run_going(tmp_path: Path) -> None:
    """bot/knowledge's own store, its wiki dir holding something that is not a git repository."""
    async with table(tmp_path) as t:
        wiki = tmp_path / "not-a-wiki"
        wiki.mkdir()
        (wiki / "notes.txt").write_text("someone's notes, not a bare repository")
        settings = load_settings(
            {"BATON_STATE_DIR": str(tmp_path / "state"), "BATON_WIKI_DIR": str(wiki),
             "BATON_KNOWLEDGE_INDEX": str(tmp_path / "k.db")}
        )  # fmt: skip
        use_knowledge(t, knowledge_for(settings))
        assembled, _ = await assemble_ticket(t)
        assert "Team knowledge is unavailable for this run (WikiError" in assembled.brief
        assert assembled.summary == SUMMARY


async def test_the_reviewer_gets_the_decisions_to_check_the_change_against(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        fill(t, CALC_ADR, CALC_PITFALL, BILLING_ADR)
        assembled, _ = await assemble_ticket(t)
        assert [d.path for d in assembled.decisions()] == [CALC_ADR.path]
        prompt = prompts.review(
            ISSUE, assembled.brief, "+x = 1", "test: pytest → passed", assembled.decisions()
        )
        section = prompt[prompt.index("## Decisions to check the change against") :]
        section = section[: section.index("## The repository's checks")]
        assert "### [verified] `Arithmetic in calc.py uses Decimal`" in section
        assert "add and sub take and return Decimal." in section
        assert "is a blocker naming the decision" in section
        assert "add() once ignored" not in section  # a pitfall: in the brief, not a decision
        assert "Billing" not in prompt
        assert prompt.index("## Decisions to check") < prompt.index("## The diff to review")


def test_no_decision_for_the_modules_is_said_plainly() -> None:
    prompt = prompts.review(ISSUE, "the brief", "diff", "")
    assert prompts.NO_DECISIONS in prompt


async def test_an_mr_thread_brief_uses_the_same_selection(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        fill(t, CALC_ADR, CALC_PITFALL, BILLING_ADR)
        seed_gitlab(t)
        gitlab = t.fakes.gitlab
        gitlab.mrs[(PROJECT_ID, MR_IID)].diff = (
            FileDiff(
                "calc.py", "calc.py", "@@ -1,2 +1,2 @@\n-    pass\n+    return a\n", False, False, False
            ),
        )
        where = Position(None, None, None, "calc.py", "calc.py", None, 2, "text")
        thread = gitlab.start_thread(PROJECT_ID, MR_IID, REVIEWER.user, "this ignores b", position=where).id
        _, note = gitlab.add_note(PROJECT_ID, MR_IID, DEVELOPER.user, "/remediate", thread)
        run = await t.run(await t.deliver("gitlab", gitlab_note("/remediate", DEVELOPER, note, thread)))

        result = await remediate.assemble(PhaseContext(t.wctx, run, {}, 1))

        assembled = ThreadAssembled.model_validate(result.output)
        assert "### [verified] `Arithmetic in calc.py uses Decimal`" in assembled.brief
        assert "### [inferred] `add() once ignored its second argument`" in assembled.brief
        assert KNOWLEDGE_NOTE in assembled.brief
        assert "Billing" not in assembled.brief
        assert {f.path for f in assembled.knowledge} == {CALC_ADR.path, CALC_PITFALL.path}
        assert [d.path for d in assembled.decisions()] == [CALC_ADR.path]


def worktree(tmp_path: Path, files: tuple[str, ...]) -> Path:
    root = tmp_path / "wt"
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x\n")
    return root


FILES = ("calc.py", "README.md", "bot/clients/gitlab.py", "bot/git/runner.py", "docs/a.md", ".git/config")
MAP = parse_repo_config("modules:\n  clients: [bot/clients/]\n  git: [bot/git/**]\n")
NONE = RepoConfig()
MODULE_CASES = [
    ("names a file at the top", "Fix `calc.py` rounding", NONE, (), ["calc.py"]),
    ("Jira markup", "The {{calc.py}} module", NONE, (), ["calc.py"]),
    ("a bare name found below", "gitlab.py retries too often", NONE, (), ["bot/clients/gitlab.py"]),
    ("a new file in an existing dir", "add bot/clients/jira_v3.py", NONE, (), ["bot/clients/jira_v3.py"]),
    ("a path into a dir that is not there", "see and/or src/x.py", NONE, (), []),
    ("traversal and absolute paths", "../../etc/passwd /etc/shadow ./../x.py", NONE, (), []),
    ("urls", "see https://example.com/calc.py and http://x/y/z.md", NONE, (), []),
    ("not paths", "e.g. v1.2.3, i.e. 3.14 and 1/2", NONE, (), []),
    ("the git dir", "look at .git/config", NONE, (), []),
    ("a module named in the text", "the Git layer is slow", MAP, (), ["bot/git/**"]),
    ("a module found by a path", "bot/clients/gitlab.py leaks", MAP, (),
     ["bot/clients/gitlab.py", "bot/clients/"]),
    ("touched files first", "nothing named", MAP, ("bot/git/runner.py",),
     ["bot/git/runner.py", "bot/git/**"]),
    ("a touched path that climbs out", "", NONE, ("../x.py",), []),
    ("a name that is also a word", "the clients complained", MAP, (), ["bot/clients/"]),
    ("no false word match", "subclients and git-lfs", MAP, (), []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "repo", "touched", "expected"),
    [c[1:] for c in MODULE_CASES],
    ids=[c[0] for c in MODULE_CASES],
)
def test_likely_modules(
    tmp_path: Path, text: str, repo: RepoConfig, touched: tuple[str, ...], expected: list[str]
) -> None:
    assert likely_modules(text, worktree(tmp_path, FILES), repo, touched) == expected


@pytest.mark.parametrize(
    "text",
    ["x" * 100_000, "a/" * 5_000, "\x00calc.py\u202e", "ünïcode/路径.py calc.py", "`" * 500 + "calc.py"],
)
def test_named_paths_takes_hostile_text(tmp_path: Path, text: str) -> None:
    found = named_paths(text, worktree(tmp_path, FILES))
    assert set(found) <= {"calc.py"}
