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
    # Baton appends its marker; an earlier one can only be quoted text, so the last one counts.
    matches = _MARKER_RE.findall(text)
    return matches[-1] if matches else None


# Jira wiki markup has no comment syntax (an HTML comment shows as text, and Jira Cloud drops
# `{anchor}` when it converts to ADF), so Jira comments end with a line of white text instead.
# Every key character but letters, digits and "." is percent-encoded so wiki markup cannot mangle it.
JIRA_MARKER_TEXT = "baton.effect="
_JIRA_MARKER_RE = re.compile(r"baton\.effect=([A-Za-z0-9.%]{1,600})")
_ESCAPE_RE = re.compile(r"%([0-9A-F]{2})")


def jira_marker(key: str) -> str:
    """The marker Baton appends to each Jira comment it posts for effect `key`."""
    marker(key)  # validates the key (raises EffectKeyError)
    encoded = "".join(ch if ch.isascii() and (ch.isalnum() or ch == ".") else f"%{ord(ch):02X}" for ch in key)
    return "{color:#ffffff}" + JIRA_MARKER_TEXT + encoded + "{color}"


def with_jira_marker(text: str, key: str) -> str:
    return f"{text}\n\n{jira_marker(key)}"


def find_jira_marker(text: str | None) -> str | None:
    """The effect key in a Jira comment body (the Jira marker, or the generic HTML-comment marker)."""
    if not text:
        return None
    matches = _JIRA_MARKER_RE.findall(text)  # the last one is Baton's own (see find_marker)
    if not matches:
        return find_marker(text)
    key = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), matches[-1])
    return key if _KEY_RE.fullmatch(key) else None


def is_jira_bot_text(text: str | None) -> bool:
    return find_jira_marker(text) is not None


def is_bot_text(text: str | None) -> bool:
    """True when the text carries either of Baton's markers (used to ignore the bot's own posts)."""
    return find_jira_marker(text) is not None
