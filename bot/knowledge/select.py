"""Choosing what goes into a brief (pure): the most relevant pages that fit a token budget."""

from __future__ import annotations

from collections.abc import Sequence

from bot.knowledge.index import Hit
from bot.knowledge.pages import Page

FIRST_KINDS = frozenset({"decision", "pitfall"})  # a touched module's ADRs and pitfalls come before the rest


def priority(hit: Hit) -> tuple[int, float, str]:
    """Sort key: decisions and pitfalls of matched modules first, then by score, then by path."""
    first = hit.modules_matched and hit.page.kind in FIRST_KINDS
    return (0 if first else 1, -hit.score, hit.page.path)


def select(hits: Sequence[Hit], budget_tokens: int) -> list[Page]:
    """Pages in priority order whose rough token counts (`Page.tokens`) add up to at most `budget_tokens`;
    a page too big for what is left is skipped and smaller ones after it may still fit. Each page once."""
    chosen: list[Page] = []
    seen: set[str] = set()
    left = budget_tokens
    for hit in sorted(hits, key=priority):
        if hit.page.path in seen or hit.page.tokens > left:
            continue
        chosen.append(hit.page)
        seen.add(hit.page.path)
        left -= hit.page.tokens
    return chosen
