"""Agent profiles: which tools each role is offered and what the policy lets it do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ProfileName = Literal["implementer", "reviewer", "planner"]

READ_TOOLS = ("Read", "Glob", "Grep")
EDIT_TOOLS = ("Edit", "Write", "MultiEdit", "NotebookEdit")
STRUCTURED_OUTPUT_TOOL = "StructuredOutput"


@dataclass(frozen=True)
class Profile:
    """One agent role: the tool set the CLI offers and whether edits and Bash are allowed."""

    name: ProfileName
    tools: tuple[str, ...]
    may_edit: bool
    may_run_commands: bool

    @property
    def read_only(self) -> bool:
        return not self.may_edit and not self.may_run_commands


IMPLEMENTER = Profile("implementer", (*READ_TOOLS, *EDIT_TOOLS, "Bash"), may_edit=True, may_run_commands=True)
REVIEWER = Profile("reviewer", READ_TOOLS, may_edit=False, may_run_commands=False)
PLANNER = Profile("planner", READ_TOOLS, may_edit=False, may_run_commands=False)

PROFILES: dict[ProfileName, Profile] = {p.name: p for p in (IMPLEMENTER, REVIEWER, PLANNER)}


def get_profile(name: ProfileName) -> Profile:
    """The profile for a role name."""
    return PROFILES[name]
