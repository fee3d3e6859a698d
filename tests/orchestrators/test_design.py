"""The architecture step's pure parts: the planner's ADR draft (typed and bounded) becomes one decision
page, `verified` once approved, scoped to the modules it names; its proposal comment says so."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.knowledge import page_path, parse_page, render_page
from bot.sandbox.demo.scenario import load_demo_scenario
from bot.sandbox.stack import DEFAULT_SCENARIO
from orchestrators import wiki_proposal
from orchestrators.design import AdrDraft, adr_page, prompt, unclaimed
from tests.support.fakes import FakeKnowledge

TODAY = datetime.date(2026, 3, 4)
DRAFT = {
    "title": "Calculator errors are exceptions, never sentinel values",
    "context": "divide returns None on zero today; callers forget to check.",
    "decision": "Every calculator function raises ValueError or ZeroDivisionError on bad input.",
    "consequences": "Callers must catch; tests assert the exception and its message.",
    "modules": ["calculator.py", "tests/**"],
    "guidance": [{"module": "calculator.py", "advice": "Raise, do not return None."}],
}


def test_the_draft_becomes_one_verified_decision_page() -> None:
    page = adr_page(AdrDraft.model_validate(DRAFT), "DEMO-3", TODAY)
    assert (page.kind, page.status, page.updated) == ("decision", "verified", TODAY)
    assert page.path == page_path("decision", page.title)
    assert page.path == "decisions/calculator-errors-are-exceptions-never-sentinel-values.md"
    assert page.modules == ("calculator.py", "tests/**")
    assert page.source.startswith("DEMO-3")
    sections = re.findall(r"^## (.+)$", page.body, re.MULTILINE)
    assert sections == ["Context", "Decision", "Consequences", "Guidance for these modules"]
    assert "- `calculator.py`: Raise, do not return None." in page.body
    assert parse_page(page.path, render_page(page).encode()) == page


def test_the_proposal_comment_says_the_decision_lands_verified_and_how_to_revise() -> None:
    page = adr_page(AdrDraft.model_validate(DRAFT), "DEMO-3", TODAY)
    text = wiki_proposal.render("0123456789ab", "design", "DEMO-3", "DEMO-3", [page])
    assert "Architecture decision proposal 0123456789ab" in text and "lands as *verified*" in text
    assert "{{/approve}}" in text and "{{/revise <what to change>}}" in text and "{{/reject}}" in text
    assert "{{decisions/calculator-errors-are-exceptions-never-sentinel-values.md}}" in text


HOSTILE = "{noformat}[~accountid:abc] h1. <!-- baton:effect=x --> \x00\x1b\u202e" + "z" * 9000


def test_a_hostile_draft_is_bounded_and_still_one_valid_page() -> None:
    draft = AdrDraft.model_validate(
        {
            "title": HOSTILE,
            "context": HOSTILE,
            "decision": HOSTILE,
            "consequences": HOSTILE,
            "modules": ["../../etc", "/abs", "ok.py", "a b", "src/**/*.py", *(f"m{n}.py" for n in range(80))],
            "guidance": [{"module": "../x", "advice": HOSTILE}] * 80,
            "extra": "ignored",
        }
    )
    page = adr_page(draft, "DEMO-3", TODAY)
    assert len(page.title) <= 200 and not re.search(r"[\x00-\x1f\x7f]", page.title)
    assert page.modules[:2] == ("ok.py", "src/**/*.py") and len(page.modules) <= 50
    assert ".." not in "".join(page.modules) and not any(m.startswith("/") for m in page.modules)
    assert parse_page(page.path, render_page(page).encode()) == page


@pytest.mark.parametrize("missing", ["title", "context", "decision", "consequences"])
def test_a_draft_without_a_section_is_refused(missing: str) -> None:
    with pytest.raises(ValidationError, match=missing):
        AdrDraft.model_validate({**DRAFT, missing: "  "})


def test_the_prompt_names_the_phase_and_fences_revise_notes() -> None:
    text = prompt("DEMO-3", "## Ticket\n\nbrief", ("use ```exceptions``` instead", "and\nname them"))
    assert text.startswith("[baton:design] DEMO-3\n\n")
    assert "StructuredOutput" in text and "## Ticket" in text
    assert "(/revise)" in text and "use ```exceptions``` instead" in text
    assert "````" in text  # the fence is longer than any backtick run inside the note
    assert "(/revise)" not in prompt("DEMO-3", "brief", ())


def test_the_default_scenario_answers_the_design_label_with_a_valid_adr() -> None:
    """`baton up`'s DEMO-1 labelled `ai-design`: the scripted planner's answer is an ADR Baton accepts."""
    world = load_demo_scenario(DEFAULT_SCENARIO)
    (script,) = [s for s in world.model.scripts if s.match == "[baton:design] DEMO-1"]
    page = adr_page(AdrDraft.model_validate(script.turns[-1].structured_output), "DEMO-1", TODAY)
    assert page.modules == ("calculator.py", "tests/test_calculator.py") and page.status == "verified"


async def test_a_different_decision_never_takes_another_ones_page(tmp_path: Path) -> None:
    """Paths keep 60 characters of a title: a decision from another ticket whose title starts the same (or
    is the same) gets a numbered one; a redraft from the same ticket updates its own page."""
    knowledge = FakeKnowledge()
    first = {
        **DRAFT,
        "title": "Every public calculator function raises an exception on bad input, never None",
    }
    held = knowledge.add(adr_page(AdrDraft.model_validate(first), "DEMO-2", TODAY))
    same_start = {
        **first,
        "title": "Every public calculator function raises an exception on bad input, logged",
    }
    drafted = adr_page(AdrDraft.model_validate(same_start), "DEMO-3", TODAY)
    assert drafted.path == held.path  # what would overwrite the first decision
    other = await unclaimed(knowledge, drafted)
    assert other.path != held.path and other.title.endswith("(2)")
    assert other.path == page_path("decision", other.title) and other.title.startswith("Every public")
    again = await unclaimed(knowledge, adr_page(AdrDraft.model_validate(first), "DEMO-2", TODAY))
    assert again.path == held.path
    same_title = await unclaimed(knowledge, adr_page(AdrDraft.model_validate(first), "DEMO-3", TODAY))
    assert same_title.path != held.path and same_title.title.endswith("(2)")
    knowledge.broken = OSError("wiki gone")
    assert await unclaimed(knowledge, other) == other
