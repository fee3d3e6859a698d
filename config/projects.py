"""Project mapping (Jira project ↔ GitLab project), parsed from YAML into typed, validated entries."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

MAX_YAML_BYTES = 256 * 1024
MAX_YAML_NODES = 20_000
ACCESS_LEVELS: Mapping[str, int] = {
    "guest": 10,
    "reporter": 20,
    "developer": 30,
    "maintainer": 40,
    "owner": 50,
}
DEFAULT_TRIGGER_LABEL = "ai-implement"

_JIRA_KEY_RE = re.compile(r"[A-Z][A-Z0-9_]{0,49}")
_GITLAB_PATH_RE = re.compile(
    r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}(?:/[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}){1,20}"
)
_NAME_RE = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_LABEL_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,255}")
_SAFE_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BAD_REF_RE = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(?:/|$)")


class YamlRefused(ValueError):
    """A YAML document that is too big, too deep, self-referencing or syntactically broken."""


class ProjectConfigError(ValueError):
    """The project mapping is invalid; the message names the entry index and the field."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int], visiting: set[int]) -> int:
    """How many nodes the document holds once every alias is expanded (refuses cycles)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in visiting:
        raise YamlRefused("an alias refers to itself")
    visiting.add(key)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
        _refuse_duplicate_keys(node)
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, visiting)
        if total > MAX_YAML_NODES:
            raise YamlRefused(f"the document expands to more than {MAX_YAML_NODES} values")
    visiting.discard(key)
    sizes[key] = total
    return total


def _refuse_duplicate_keys(node: yaml.MappingNode) -> None:
    seen: set[str] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            if key_node.value in seen:
                raise YamlRefused(
                    f"duplicate key {key_node.value[:60]!r} (line {key_node.start_mark.line + 1})"
                )
            seen.add(key_node.value)


def load_yaml(text: str, *, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """`yaml.safe_load` behind limits: size, expanded node count (alias bombs), cycles, duplicate keys.
    The document is composed once, checked, then constructed from those nodes (libyaml's safe loader
    when PyYAML has it: ~10× faster than the pure-Python one)."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise YamlRefused(f"the document is larger than {max_bytes} bytes")
    try:
        loader = _SAFE_LOADER(text)  # the pure-Python reader checks the characters here
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _expanded_size(node, {}, set())
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own depth limit
            raise YamlRefused("the document is nested too deeply") from None
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise YamlRefused(f"not valid YAML: {problem}{where}") from None
    except RecursionError:
        raise YamlRefused("the document is nested too deeply") from None
    except UnicodeError:  # lone surrogates: libyaml reads UTF-8
        raise YamlRefused("not valid YAML: characters that are not Unicode text") from None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Approvers(BaseModel):
    """Who may `/approve` a proposal for this project (checked again when the approval runs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jira_groups: tuple[str, ...] = ()
    jira_users: tuple[str, ...] = ()
    gitlab_min_access: str = "maintainer"
    gitlab_users: tuple[str, ...] = ()

    @field_validator("jira_groups", "jira_users", "gitlab_users")
    @classmethod
    def _names(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not _NAME_RE.fullmatch(value) or not value.strip():
                raise ValueError(f"invalid name {_short(value)} (1-255 printable characters)")
        return values

    @field_validator("gitlab_min_access", mode="before")
    @classmethod
    def _access(cls, value: object) -> str:
        level = value.strip().lower() if isinstance(value, str) else value
        if level not in ACCESS_LEVELS:
            raise ValueError(
                f"unknown access level {_short(value)}; expected one of {', '.join(ACCESS_LEVELS)}"
            )
        return str(level)

    @property
    def gitlab_min_access_level(self) -> int:
        """GitLab's numeric access level (maintainer = 40) for comparing with a member's level."""
        return ACCESS_LEVELS[self.gitlab_min_access]


MAX_BUDGET_USD = 1_000_000.0


def check_cap(value: float | None) -> float | None:
    """A cost cap in USD: positive and finite (at most a million), or None for no cap."""
    if value is None:
        return None
    if isinstance(value, bool) or not 0 < value <= MAX_BUDGET_USD:  # NaN fails both comparisons
        raise ValueError(
            f"must be a positive amount in USD, at most {MAX_BUDGET_USD:,.0f} (got {_short(value)})"
        )
    return float(value)


class Budget(BaseModel):
    """Cost caps in USD (orchestrators/budget.py): per ticket or merge request (every run on it), and per
    team (this Jira project and its GitLab project) per calendar month, UTC. Unset: the BATON_BUDGET_*
    default, or no cap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticket_usd: float | None = None
    month_usd: float | None = None

    @field_validator("ticket_usd", "month_usd", mode="before")
    @classmethod
    def _cap(cls, value: object) -> float | None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"must be a number of USD, not {_short(value)}")
        return check_cap(value)


class Project(BaseModel):
    """One mapping: a Jira project (optionally one component) ↔ a GitLab project."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jira_project: str
    component: str | None = None
    gitlab_project: str
    trigger_label: str = DEFAULT_TRIGGER_LABEL
    approvers: Approvers = Field(default_factory=Approvers)
    requester_may_approve: StrictBool = False
    target_branch: str | None = None
    budget: Budget = Field(default_factory=Budget)

    @field_validator("jira_project", mode="before")
    @classmethod
    def _jira_key(cls, value: object) -> str:
        if not isinstance(value, str) or not _JIRA_KEY_RE.fullmatch(value.strip().upper()):
            raise ValueError(f"not a Jira project key: {_short(value)} (like DEMO or ABC_2)")
        return value.strip().upper()

    @field_validator("component")
    @classmethod
    def _component(cls, value: str | None) -> str | None:
        if value is not None and (not _NAME_RE.fullmatch(value) or not value.strip()):
            raise ValueError(f"invalid component name {_short(value)}")
        return value.strip() if value is not None else None

    @field_validator("gitlab_project", mode="before")
    @classmethod
    def _gitlab_project(cls, value: object) -> str:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return str(value)
        if isinstance(value, str):
            text = value.strip().strip("/")
            if (text.isdigit() and int(text) > 0) or (_GITLAB_PATH_RE.fullmatch(text) and ".." not in text):
                return text
        raise ValueError(f"not a GitLab project path (group/name) or numeric id: {_short(value)}")

    @field_validator("trigger_label")
    @classmethod
    def _label(cls, value: str) -> str:
        if not _LABEL_RE.fullmatch(value):
            raise ValueError(f"invalid Jira label {_short(value)} (no spaces, 1-255 characters)")
        return value

    @field_validator("target_branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        if value is None:
            return None
        bad_edges = value.startswith(("-", "/", ".")) or value.endswith(("/", "."))
        if not value or len(value) > 255 or bad_edges or _BAD_REF_RE.search(value):
            raise ValueError(f"not a valid git branch name: {_short(value)}")
        return value

    def matches_gitlab(self, path_or_id: str | int) -> bool:
        return self.gitlab_project.casefold() == _gitlab_key(path_or_id)


def _gitlab_key(path_or_id: str | int) -> str:
    return str(path_or_id).strip().strip("/").casefold()


class ProjectMap(BaseModel):
    """Every configured mapping, looked up from either side."""

    model_config = ConfigDict(frozen=True)

    projects: tuple[Project, ...] = ()

    def for_jira(self, project_key: str, components: Iterable[str] = ()) -> Project | None:
        """The entry for a Jira project; one for any of the issue's components wins over the plain one."""
        key = project_key.strip().upper()
        wanted = {c.strip().casefold() for c in components}
        candidates = [p for p in self.projects if p.jira_project == key]
        specific = [p for p in candidates if p.component is not None and p.component.casefold() in wanted]
        general = [p for p in candidates if p.component is None]
        found = specific or general
        return found[0] if found else None

    def all_for_jira(self, project_key: str, components: Iterable[str] = ()) -> list[Project]:
        """Every entry for one of the issue's components (configuration order): several make the ticket a
        multi-repository one, and its planner may choose only among these."""
        key = project_key.strip().upper()
        wanted = {c.strip().casefold() for c in components}
        return [
            p
            for p in self.projects
            if p.jira_project == key and p.component is not None and p.component.casefold() in wanted
        ]

    def for_gitlab(self, path_or_id: str | int) -> Project | None:
        """The entry for a GitLab project, by `path_with_namespace` (any case) or numeric id."""
        return next((p for p in self.projects if p.matches_gitlab(path_or_id)), None)


def _location(index: int, loc: tuple[int | str, ...]) -> str:
    path = f"projects[{index}]"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _explain(index: int, exc: ValidationError) -> str:
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a typo explains "missing"
    where = _location(index, tuple(err["loc"]))
    if err["type"] == "extra_forbidden":
        field = str(err["loc"][-1])
        known = list(Project.model_fields) + list(Approvers.model_fields) + list(Budget.model_fields)
        close = difflib.get_close_matches(field, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{where}: unknown field{hint}"
    if err["type"] == "missing":
        return f"{where}: required field is missing"
    return f"{where}: {str(err['msg']).removeprefix('Value error, ')}"


def _entries(data: object) -> list[object]:
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ProjectConfigError(
            f"the project mapping must be a mapping with a 'projects' list, not {_kind(data)}"
        )
    unknown = sorted(str(k) for k in data if k != "projects" and not str(k).startswith("x-"))
    if unknown:
        raise ProjectConfigError(
            f"unknown top-level key {unknown[0][:60]!r}; only 'projects' and 'x-…' keys (anchors) are allowed"
        )
    entries = data.get("projects")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ProjectConfigError(f"'projects' must be a list of entries, not {_kind(entries)}")
    return entries


def _kind(value: object) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _parse_entry(index: int, entry: object) -> Project:
    if not isinstance(entry, dict):
        raise ProjectConfigError(f"projects[{index}]: an entry must be a mapping, not {_kind(entry)}")
    try:
        return Project.model_validate(entry)
    except ValidationError as exc:
        raise ProjectConfigError(_explain(index, exc)) from None


def _refuse_duplicates(projects: list[Project]) -> None:
    jira_seen: dict[tuple[str, str | None], int] = {}
    gitlab_seen: dict[str, int] = {}
    for index, project in enumerate(projects):
        component = project.component.casefold() if project.component else None
        jira = (project.jira_project, component)
        if jira in jira_seen:
            what = f"{project.jira_project}" + (f" component {project.component!r}" if component else "")
            raise ProjectConfigError(
                f"projects[{index}].jira_project: {what} is already mapped by projects[{jira_seen[jira]}]"
            )
        gitlab = project.gitlab_project.casefold()
        if gitlab in gitlab_seen:
            raise ProjectConfigError(
                f"projects[{index}].gitlab_project: {project.gitlab_project} is already mapped by "
                f"projects[{gitlab_seen[gitlab]}]; a GitLab project belongs to one entry"
            )
        jira_seen[jira], gitlab_seen[gitlab] = index, index


def load_projects(text: str) -> ProjectMap:
    """Parse the project mapping YAML; `ProjectConfigError` names the entry and field that is wrong."""
    try:
        data = load_yaml(text)
    except YamlRefused as exc:
        raise ProjectConfigError(f"project mapping refused: {exc}") from None
    projects = [_parse_entry(index, entry) for index, entry in enumerate(_entries(data))]
    _refuse_duplicates(projects)
    return ProjectMap(projects=tuple(projects))
