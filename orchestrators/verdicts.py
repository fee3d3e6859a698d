"""Typed answers the agents return as structured output: triage and review verdicts, size-bounded."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

TRUNCATED = " … [truncated]"
MAX_ITEMS = 50
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def bounded_text(limit: int) -> BeforeValidator:
    """Strip control characters (keeping newlines and tabs) and cut text longer than `limit` with a marker."""

    def clip(value: object) -> object:
        if not isinstance(value, str):
            return value
        text = _CONTROL_RE.sub("", value.replace("\r\n", "\n").replace("\r", "\n")).strip()
        return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED

    return BeforeValidator(clip)


def _first_items(value: object) -> object:
    return value[:MAX_ITEMS] if isinstance(value, list | tuple) else value


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _positive_or_none(value: object) -> object:
    if isinstance(value, bool):
        return None
    return value if not isinstance(value, int) or value >= 1 else None


Summary = Annotated[str, bounded_text(4000)]
Question = Annotated[str, bounded_text(1000)]


class Finding(BaseModel):
    """One review remark, optionally anchored at a file and line."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    file: Annotated[str | None, bounded_text(500), BeforeValidator(_blank_to_none)] = Field(
        default=None, description="repository-relative path the remark is about, if any"
    )
    line: Annotated[int | None, BeforeValidator(_positive_or_none)] = Field(
        default=None, description="1-based line number in the new version of the file, if any"
    )
    text: Annotated[str, bounded_text(2000), Field(min_length=1)] = Field(
        description="what is wrong or what to change, in one or two sentences"
    )


Findings = Annotated[list[Finding], BeforeValidator(_first_items)]


class Triage(BaseModel):
    """The planner's answer to: is this ticket clear enough to implement as written?"""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ready: bool = Field(description="true when the ticket can be implemented without asking anyone")
    questions: Annotated[list[Question], BeforeValidator(_first_items)] = Field(
        default_factory=list, description="what a person must answer first (empty when ready)"
    )
    summary: Summary = Field(description="the change the ticket asks for, in a few sentences")


class Verdict(BaseModel):
    """The reviewer's answer: approve, or the blockers that send the change back to the implementer."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    approve: bool = Field(description="true when the change can be proposed to a human as it is")
    blockers: Findings = Field(default_factory=list, description="must be fixed before proposing")
    suggestions: Findings = Field(default_factory=list, description="worth considering, not required")
    scope_creep: Findings = Field(default_factory=list, description="changes the ticket did not ask for")
    summary: Summary = Field(description="the review in a few sentences")

    @property
    def passes(self) -> bool:
        """Approved and without blockers (a blocker outweighs an inconsistent `approve: true`)."""
        return self.approve and not self.blockers
