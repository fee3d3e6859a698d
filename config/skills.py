"""The skill manifest (`config/skills.yaml`): the one registry for dispatch, authorization and /help."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.projects import ACCESS_LEVELS, YamlRefused, load_yaml

PACKAGED = Path(__file__).with_name("skills.yaml")
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
Where = Literal["jira", "gitlab"]


class SkillError(ValueError):
    """The manifest is unusable; the message names the skill and the field."""


class Skill(BaseModel):
    """One command: its names, the workflow it starts, who may use it and how it is described."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    aliases: tuple[str, ...] = ()
    orchestrator: str
    help: str
    usage: str = ""
    examples: tuple[str, ...] = ()
    where: tuple[Where, ...] = ("jira", "gitlab")
    gitlab_min_access: str = "developer"
    gitlab_users: tuple[str, ...] = ()
    jira_groups: tuple[str, ...] = ()
    jira_users: tuple[str, ...] = ()
    self_service: bool = True
    rate_limited: bool = False

    @field_validator("name", "orchestrator")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value):
            raise ValueError("must be lower-case letters, digits and dashes")
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for alias in values:
            cls._name(alias)
        return values

    @field_validator("gitlab_min_access")
    @classmethod
    def _access(cls, value: str) -> str:
        if value.lower() not in ACCESS_LEVELS:
            raise ValueError(f"unknown access level {value!r}; expected one of {', '.join(ACCESS_LEVELS)}")
        return value.lower()

    @property
    def min_access_level(self) -> int:
        return ACCESS_LEVELS[self.gitlab_min_access]

    def help_line(self) -> str:
        names = " ".join(f"/{n}" for n in (self.name, *self.aliases))
        usage = f" — `{self.usage}`" if self.usage else ""
        return f"{names}: {self.help}{usage}"


class SkillManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    skills: tuple[Skill, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> SkillManifest:
        seen: set[str] = set()
        for skill in self.skills:
            for name in (skill.name, *skill.aliases):
                if name in seen:
                    raise ValueError(f"the command /{name} is defined twice")
                seen.add(name)
        return self

    @property
    def names(self) -> Mapping[str, str]:
        """Every command name and alias → the skill's name."""
        return {n: s.name for s in self.skills for n in (s.name, *s.aliases)}

    @property
    def aliases(self) -> Mapping[str, str]:
        return {alias: s.name for s in self.skills for alias in s.aliases}

    def lookup(self, name: str) -> Skill | None:
        target = self.names.get(name.lower())
        return next((s for s in self.skills if s.name == target), None)

    def for_orchestrator(self, kind: str) -> Skill | None:
        return next((s for s in self.skills if s.orchestrator == kind), None)

    def help_lines(self, where: Where | None = None) -> list[str]:
        return [s.help_line() for s in self.skills if where is None or where in s.where]

    def check_workflows(self, known: Collection[str]) -> None:
        """Refuse a skill whose `orchestrator` is not among `known` (the names of the worker's workflow
        table, which the shell passes in: config imports no orchestrator)."""
        unknown = [s for s in self.skills if s.orchestrator not in known]
        if unknown:
            named = "; ".join(
                f"the skill {s.name!r} names the unknown workflow {s.orchestrator!r}" for s in unknown
            )
            listed = ", ".join(sorted(k for k in known if _NAME_RE.fullmatch(k)))
            raise SkillError(f"skills manifest: {named}; known workflows: {listed}")


def load_skills(text: str) -> SkillManifest:
    try:
        data = load_yaml(text)
    except YamlRefused as exc:
        raise SkillError(str(exc)) from None
    try:
        return SkillManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SkillError(f"skills manifest: {where}: {first['msg']}") from None


@lru_cache(maxsize=1)
def default_skills() -> SkillManifest:
    """The packaged manifest (what a deployment uses unless BATON_SKILLS_FILE points elsewhere)."""
    return load_skills(PACKAGED.read_text())


def skills_from(path: Path | None) -> SkillManifest:
    """The manifest in force: the file BATON_SKILLS_FILE names, else the packaged one. The shell loads it
    once when Baton starts (`shell.wiring.load_manifest`, which also checks it against the workflow
    table) and hands that object to the webhook handlers and to the worker's jobs, so a team's command
    is parsed, dispatched and listed alike."""
    return load_skills(path.read_text()) if path is not None else default_skills()
