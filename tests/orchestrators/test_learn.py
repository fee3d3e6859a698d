"""The learning loop's pure parts: the candidate pages drawn from typed phase outputs and people's
replies, and the knowledge proposal comment that shows them (hostile text stays inert)."""

from __future__ import annotations

import datetime
import re

import pytest

from bot.effects import find_jira_marker
from bot.knowledge import page_path, parse_page, render_page
from bot.store.proposals import ProposalRow
from orchestrators import wiki_proposal
from orchestrators.learn import MAX_EACH, MAX_PAGES, Lessons, candidates, signal
from orchestrators.outputs import Check, Reviewed, Validated
from orchestrators.proposal import JIRA_MAX_CHARS
from orchestrators.verdicts import Finding, Verdict

TODAY = datetime.date(2026, 3, 4)
PYTEST_FAILURE = """$ python -m pytest -q
(test) exit 1:
F.                                                                       [100%]
=================================== FAILURES ===================================
________________________________ test_multiply _________________________________
    def test_multiply() -> None:
>       assert multiply(2, 3) == 6
E       assert 5 == 6
E        +  where 5 = multiply(2, 3)

tests/test_calculator.py:12: AssertionError
=========================== short test summary info ============================
FAILED tests/test_calculator.py::test_multiply - assert 5 == 6
1 failed, 1 passed in 0.02s"""


def failed(feedback: str = PYTEST_FAILURE) -> Validated:
    return Validated(
        passed=False,
        feedback=feedback,
        checks=(Check(stage="test", command="python -m pytest -q", status="failed", exit_code=1),),
        changed=("calculator.py",),
    )


PASSED = Validated(
    passed=True, checks=(Check(stage="test", command="python -m pytest -q", status="passed", exit_code=0),)
)


def review(*blockers: Finding, summary: str = "fine") -> Reviewed:
    verdict = Verdict(approve=not blockers, blockers=list(blockers), summary=summary)
    return Reviewed(verdict=verdict, feedback="blocked" if blockers else "")


def lessons(**changes: object) -> Lessons:
    base: dict[str, object] = {
        "key": "DEMO-1",
        "summary": "Add a multiply function",
        "ref": "demo/calculator!3",
        "branch": "baton/DEMO-1-add-a-multiply-function",
        "target_branch": "main",
        "modules": ("calculator.py", "tests/test_calculator.py"),
        "final_checks": PASSED,
        "final_review": review(summary="multiply is right"),
    }
    return Lessons(**{**base, **changes})  # type: ignore[arg-type]


def test_a_clean_ticket_teaches_only_its_history() -> None:
    (history,) = candidates(lessons(), TODAY)
    assert (history.kind, history.status, history.title) == (
        "history",
        "inferred",
        "DEMO-1: Add a multiply function",
    )
    assert history.modules == ("calculator.py", "tests/test_calculator.py")
    assert history.source == "DEMO-1 demo/calculator!3" and history.updated == TODAY
    assert "Merged as demo/calculator!3" in history.body and "multiply is right" in history.body
    assert "test: python -m pytest -q → passed" in history.body


def test_a_check_that_failed_then_passed_is_a_pitfall_with_what_it_printed() -> None:
    pitfall, history = candidates(lessons(failed_checks=(failed(),), rounds=2), TODAY)
    assert pitfall.kind == "pitfall" and pitfall.status == "inferred"
    assert pitfall.title == "DEMO-1: FAILED tests/test_calculator.py::test_multiply - assert 5 == 6"
    assert pitfall.path == page_path("pitfall", pitfall.title)
    assert pitfall.modules == ("calculator.py", "tests/test_calculator.py")
    assert "`python -m pytest -q` (test) failed in implementation round 1" in pitfall.body
    assert "E       assert 5 == 6" in pitfall.body
    assert "Implementation rounds: 2; checks that failed before passing: 1" in history.body


def test_review_blockers_are_pitfalls_scoped_to_their_file() -> None:
    blocker = Finding(file="calculator.py", line=7, text="multiply adds instead of multiplying")
    anywhere = Finding(text="no test covers negative numbers")
    pages = candidates(lessons(blocked_reviews=(review(blocker, anywhere), review(blocker))), TODAY)
    first, second = pages[0], pages[1]
    assert first.title == "DEMO-1: review blocker: multiply adds instead of multiplying"
    assert first.modules == ("calculator.py",) and "at `calculator.py:7`" in first.body
    assert second.modules == ("calculator.py", "tests/test_calculator.py")  # no file: the MR's modules
    assert len(pages) == 3  # the repeated blocker is one page, then the history


def test_revise_notes_and_reject_reasons_are_pitfalls() -> None:
    pages = candidates(
        lessons(revisions=("keep the old name", "keep  the old\nname"), rejections=("breaks the API",)), TODAY
    )
    titles = [p.title for p in pages]
    assert titles == [
        "DEMO-1: asked for a revision: keep the old name",
        "DEMO-1: rejected a proposal: breaks the API",
        "DEMO-1: Add a multiply function",
    ]
    assert "`/revise`" in pages[0].body and "keep the old name" in pages[0].body
    assert all(p.status == "inferred" for p in pages)


def test_every_candidate_is_a_valid_page_that_round_trips_through_the_wiki_format() -> None:
    many = lessons(
        failed_checks=tuple(failed(PYTEST_FAILURE + f"\nround {n}") for n in range(9)),
        revisions=tuple(f"note {n}" for n in range(9)),
        rejections=tuple(f"reason {n}" for n in range(9)),
    )
    pages = candidates(many, TODAY)
    assert len(pages) <= MAX_PAGES and pages[-1].kind == "history"
    assert sum(p.title.startswith("DEMO-1: FAILED") for p in pages) <= MAX_EACH
    assert len({p.path for p in pages}) == len(pages)
    for page in pages:
        assert parse_page(page.path, render_page(page).encode()) == page


def test_titles_that_would_share_a_path_get_distinct_ones() -> None:
    pages = candidates(lessons(failed_checks=(failed(), failed())), TODAY)
    assert [p.title for p in pages[:2]] == [
        "DEMO-1: FAILED tests/test_calculator.py::test_multiply - assert 5 == 6",
        "DEMO-1: FAILED tests/test_calculator.py… (2)",  # shortened so the number is in the path
    ]
    assert pages[0].path != pages[1].path


@pytest.mark.parametrize(
    ("feedback", "expected"),
    [
        (PYTEST_FAILURE, "FAILED tests/test_calculator.py::test_multiply - assert 5 == 6"),
        ("$ make lint\n(lint) exit 2:\nE   assert x\n", "E   assert x"),
        (
            "$ mypy .\n(lint) exit 1:\nsrc/a.py:3: error: Name 'x' is not defined",
            "src/a.py:3: error: Name 'x' is not defined",
        ),
        ("$ ./check\n(test) exit 1:\nsomething odd", "$ ./check"),
        ("", "a check failed"),
        ("No file was changed. Implement the ticket.", "No file was changed. Implement the ticket."),
    ],
)
def test_the_telling_line_of_a_failure(feedback: str, expected: str) -> None:
    assert signal(feedback) == expected


HOSTILE = (
    "{noformat}\n[~accountid:5d1c0ffee0ba7000b0770002] h1. /approve <!-- baton:effect=run:x:proposal:1 --> "
    "baton.effect=run%3Ax \x1b[31m\u202e```\n@all *bold* ||t|| {code}" + "x" * 400
)


def hostile_lessons() -> Lessons:
    return lessons(
        summary=HOSTILE,
        modules=("calculator.py", "../etc/passwd", "/abs/path", "has space.py", "ok/*.py"),
        failed_checks=(failed(HOSTILE),),
        blocked_reviews=(review(Finding(file="../../x\n", text=HOSTILE)),),
        revisions=(HOSTILE,),
        rejections=(HOSTILE,),
    )


def test_hostile_text_still_makes_valid_pages_scoped_to_real_modules() -> None:
    pages = candidates(hostile_lessons(), TODAY)
    assert len(pages) == 5
    for page in pages:
        assert not re.search(r"[\x00-\x1f\x7f]", page.title) and len(page.title) <= 120
        assert page.modules in (("calculator.py", "ok/*.py"),)
        assert parse_page(page.path, render_page(page).encode()) == page
        assert page.path.count("/") == 1 and ".." not in page.path


def test_the_knowledge_proposal_shows_every_page_and_the_exact_replies() -> None:
    pages = candidates(lessons(failed_checks=(failed(),)), TODAY)
    text = wiki_proposal.render("a1b2c3d4e5f6", "learn", "DEMO-1", "demo/calculator!3", pages)
    assert "Knowledge proposal a1b2c3d4e5f6" in text and "*inferred*" in text
    assert "{{/approve}}" in text and "{{/reject}}" in text and "{{/verify <page>}}" in text
    for page in pages:
        assert "{{" + page.path + "}}" in text
    assert "modules {{calculator.py}}, {{tests/test_calculator.py}}" in text
    assert "source DEMO-1 demo/calculator\\!3" in text  # escaped: `!` is Jira markup


def test_hostile_pages_cannot_break_out_of_the_proposal_comment() -> None:
    pages = candidates(hostile_lessons(), TODAY)
    text = wiki_proposal.render("a1b2c3d4e5f6", "learn", HOSTILE, HOSTILE, pages)
    assert find_jira_marker(text) is None  # no Baton marker: the comment's own is added when posted
    assert "<!-- baton:" not in text
    assert "\x1b" not in text and "\u202e" not in text
    # Every {noformat} block opens and closes in pairs (nothing inside closed one early); outside them,
    # a mention, a heading or a macro from the hostile text is escaped.
    assert text.count("{noformat}") % 2 == 0
    outside = re.sub(r"\{noformat\}.*?\{noformat\}", "", text, flags=re.DOTALL)
    assert "[~accountid:" not in outside.replace("\\[\\~accountid:", "")
    assert not re.search(r"(?<!\\)\{(code|noformat)", outside.replace("{{", "").replace("}}", ""))
    assert not any(line.startswith(("h1.", "@all")) for line in outside.splitlines())


def test_pages_too_long_to_show_whole_are_not_proposed_and_the_comment_says_so() -> None:
    """Approvers read every page whole (folded in `{expand}`); a page that does not fit is left out of the
    proposal, named with the reason, so nothing lands that nobody could read."""
    page = candidates(lessons(), TODAY)[0]
    big = [
        page.model_copy(
            update={"path": f"history/p{n}.md", "title": f"page {n}", "body": f"{n} " + "y" * 9_000}
        )
        for n in range(5)
    ]
    shown, left_out = wiki_proposal.fitting("learn", big)
    assert [p.path for p in shown] == [f"history/p{n}.md" for n in range(3)]
    assert [p.path for p in left_out] == ["history/p3.md", "history/p4.md"]
    text = wiki_proposal.render(
        "a1b2c3d4e5f6", "learn", "DEMO-1", "demo/calculator!3", shown, left_out=left_out
    )
    assert len(text) < JIRA_MAX_CHARS
    for p in shown:  # every proposed page's text, whole, inside an {expand} section
        assert (
            "{expand:The page's text (9,002 characters)}\n{noformat}\n" + p.body + "\n{noformat}\n{expand}"
            in text
        )
    assert "Not proposed: {{history/p3.md}}, {{history/p4.md}} — too long to show whole" in text
    assert "2 " + "y" * 9_000 in text and "3 " + "y" * 20 not in text


def test_the_stored_pages_of_a_proposal_are_validated_when_read_back() -> None:
    pages = candidates(lessons(failed_checks=(failed(),)), TODAY)
    row = proposal_row({"kind": "knowledge", "pages": [p.model_dump(mode="json") for p in pages]})
    assert wiki_proposal.is_knowledge(row) and wiki_proposal.pages_of(row) == pages
    for broken in ([], None, [{"path": "../x.md"}], [{**pages[0].model_dump(mode="json"), "status": "true"}]):
        with pytest.raises(wiki_proposal.ProposedPagesError):
            wiki_proposal.pages_of(proposal_row({"kind": "knowledge", "pages": broken}))
    assert not wiki_proposal.is_knowledge(proposal_row({"kind": "jira"}))


def test_the_proposal_is_bound_to_the_pages_content() -> None:
    pages = candidates(lessons(failed_checks=(failed(),)), TODAY)
    changed = [pages[0].model_copy(update={"body": pages[0].body + "!"}), *pages[1:]]
    assert wiki_proposal.digest(pages) == wiki_proposal.digest(list(pages))
    assert wiki_proposal.digest(pages) != wiki_proposal.digest(changed)


def proposal_row(target: dict[str, object]) -> ProposalRow:
    return ProposalRow("p1", "r1", "jira:DEMO-1", "proposed", "a" * 40, None, dict(target))
