"""A tiny JQL subset for the simulator: `field = value` / `field in (a, b)` clauses joined by AND."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.sandbox.jira_sim.model import Issue, status_by_id

_ORDER_BY_RE = re.compile(r"\s+order\s+by\s+.*$", re.IGNORECASE | re.DOTALL)
_AND_RE = re.compile(r"\s+and\s+", re.IGNORECASE)
_CLAUSE_RE = re.compile(
    r"""^\s*(\w+)\s*(=|!=|\bin\b)\s*("[^"]*"|'[^']*'|\([^()]*\)|[^\s()"']+)\s*$""", re.IGNORECASE
)
_FIELDS: dict[str, Callable[[Issue], set[str]]] = {
    "project": lambda i: {i.project_key.lower()},
    "key": lambda i: {i.key.lower()},
    "issuekey": lambda i: {i.key.lower()},
    "id": lambda i: {i.id},
    "labels": lambda i: {label.lower() for label in i.labels},
    "component": lambda i: {name.lower() for name in i.components},
    "status": lambda i: {status_by_id(i.status_id).name.lower()},
}


class JqlError(ValueError):
    """A query outside the supported subset."""


@dataclass(frozen=True)
class Clause:
    field: str
    negate: bool
    values: frozenset[str]

    def matches(self, issue: Issue) -> bool:
        hit = bool(_FIELDS[self.field](issue) & self.values)
        return hit != self.negate


def _values(text: str) -> frozenset[str]:
    if text.startswith("(") and text.endswith(")"):
        parts = [p for p in text[1:-1].split(",") if p.strip()]
    else:
        parts = [text]
    return frozenset(p.strip().strip("\"'").lower() for p in parts)


def parse(jql: str) -> list[Clause]:
    """Parse the subset; raises JqlError on anything else (Jira answers 400 then)."""
    text = _ORDER_BY_RE.sub("", jql).strip()
    if not text:
        return []
    clauses = []
    for part in _AND_RE.split(text):
        match = _CLAUSE_RE.match(part)
        if not match or match.group(1).lower() not in _FIELDS:
            raise JqlError(f"Error in the JQL Query: unsupported clause {part.strip()[:80]!r}")
        field, op, value = match.group(1).lower(), match.group(2).lower(), match.group(3)
        clauses.append(Clause(field, op == "!=", _values(value)))
    return clauses


def matches(jql: str | None, issue: Issue) -> bool:
    return all(clause.matches(issue) for clause in parse(jql or ""))
