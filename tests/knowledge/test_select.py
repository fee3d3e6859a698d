"""What goes into a brief: the most relevant pages within the token budget, ADRs and pitfalls of the
touched modules first."""

from __future__ import annotations

from bot.knowledge.index import Hit
from bot.knowledge.pages import Kind, Page
from bot.knowledge.select import select
from tests.knowledge.support import page


def hit(title: str, score: float, *, kind: Kind = "history", matched: bool = False, words: int = 10) -> Hit:
    return Hit(page(title, " ".join(["word"] * words), kind=kind), score, matched)


def titles(pages: list[Page]) -> list[str]:
    return [p.title for p in pages]


def test_decisions_and_pitfalls_of_matched_modules_come_first() -> None:
    hits = [
        hit("history, best text", 3.0),
        hit("glossary of the module", 2.5, kind="glossary", matched=True),
        hit("pitfall of the module", 0.4, kind="pitfall", matched=True),
        hit("decision of the module", 0.9, kind="decision", matched=True),
        hit("pitfall elsewhere", 2.0, kind="pitfall"),
    ]
    assert titles(select(hits, 10_000)) == [
        "decision of the module",
        "pitfall of the module",
        "history, best text",
        "glossary of the module",
        "pitfall elsewhere",
    ]


def test_the_budget_is_never_exceeded_and_smaller_pages_still_fit() -> None:
    hits = [hit("big", 3.0, words=2000), hit("small one", 2.0), hit("small two", 1.0)]
    chosen = select(hits, 200)
    assert titles(chosen) == ["small one", "small two"]
    assert sum(p.tokens for p in chosen) <= 200
    for budget in range(0, 400, 7):
        assert sum(p.tokens for p in select(hits, budget)) <= budget


def test_nothing_fits_a_zero_or_negative_budget_and_each_page_appears_once() -> None:
    one = hit("same page", 1.0)
    assert select([one, one], 0) == []
    assert select([one], -5) == []
    assert titles(select([one, Hit(one.page, 0.5, True)], 1000)) == ["same page"]
    assert select([], 1000) == []
