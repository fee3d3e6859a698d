"""Exactly-once external writes: the ledger interface and the hidden marker posted with each write."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

MARKER_PREFIX = "<!-- baton:effect="
_KEY_RE = re.compile(r"^[A-Za-z0-9:._/#@!+-]{1,200}$")
_MARKER_RE = re.compile(r"<!-- baton:effect=([A-Za-z0-9:._/#@!+-]{1,200}) -->")


class EffectKeyError(ValueError):
    """An effect key with characters that could break out of the hidden marker."""


@dataclass(frozen=True)
class EffectRecord:
    key: str
    kind: str
    status: str  # "pending" (attempted, outcome unknown) or "done"
    external_id: str | None


class EffectLedger(Protocol):
    """Where effect keys are recorded (the `effects` table; an in-memory one in unit tests)."""

    async def get(self, key: str) -> EffectRecord | None: ...

    async def begin(self, key: str, kind: str, run_id: str | None) -> EffectRecord:
        """Record that the write is about to happen; returns the existing record if there is one."""
        ...

    async def complete(self, key: str, external_id: str) -> None: ...


def marker(key: str) -> str:
    """The hidden marker that ends every text Baton posts for effect `key`."""
    if not _KEY_RE.fullmatch(key):
        raise EffectKeyError(f"effect key has unsupported characters: {key[:60]!r}")
    return f"{MARKER_PREFIX}{key} -->"


def with_marker(text: str, key: str) -> str:
    return f"{text}\n\n{marker(key)}"


def find_marker(text: str | None) -> str | None:
    """The effect key embedded in a posted text, if any."""
    if not text:
        return None
    match = _MARKER_RE.search(text)
    return match.group(1) if match else None


def is_bot_text(text: str | None) -> bool:
    """True when the text carries Baton's marker (used to ignore the bot's own notes)."""
    return find_marker(text) is not None
