"""What an agent call that ended without the CLI's result (a timeout, /cancel, a killed CLI) cost: the
tokens its assistant messages reported as they streamed, priced per model family. The CLI's own
`total_cost_usd` is used whenever there is one; this is the estimate for when there is none."""

from __future__ import annotations

from bot.agent.result import TokenUsage

# USD per million tokens: fresh input, output, written to the cache (5 minutes), read from the cache.
PER_MTOK: dict[str, tuple[float, float, float, float]] = {
    "opus": (15.0, 75.0, 18.75, 1.50),
    "sonnet": (3.0, 15.0, 3.75, 0.30),
    "haiku": (1.0, 5.0, 1.25, 0.10),
}
DEAREST = PER_MTOK["opus"]  # a model of no family named here: the estimate errs high, not low


def rates(model: str | None) -> tuple[float, float, float, float]:
    """The per-million rates of `model`'s family (`claude-sonnet-4-5` → sonnet), else the dearest."""
    name = (model or "").lower()
    return next((r for family, r in PER_MTOK.items() if family in name), DEAREST)


def estimate(usage: TokenUsage, model: str | None) -> float:
    """The USD the tokens of `usage` cost on `model`."""
    fresh, out, write, read = rates(model)
    total = (
        usage.input_tokens * fresh
        + usage.output_tokens * out
        + usage.cache_creation_input_tokens * write
        + usage.cache_read_input_tokens * read
    )
    return total / 1_000_000
