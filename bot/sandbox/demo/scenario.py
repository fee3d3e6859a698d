"""Demo scenario files: the ticket, the repository and the scripted model turns `baton demo` plays.

The format is documented in docs/scenarios.md; `bot/sandbox/scenarios/demo.yaml` is the default.
Every mistake is reported as one line naming the field, e.g.
`demo.yaml: repository.files['../x']: a path must stay inside the repository`.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.repo_config import FILENAME as REPO_CONFIG_FILE
from bot.repo_config import RepoConfigError, normalize_path, parse_repo_config
from bot.sandbox.gitlab_sim.seed import DEMO_PROJECT
from bot.sandbox.jira_sim.demo import DEMO_COMPONENTS
from bot.sandbox.scenario import Scenario
from config.projects import YamlRefused, load_yaml

TICKET_PROJECT = "DEMO"
TICKET_KEY = f"{TICKET_PROJECT}-1"  # the scenario's ticket always becomes the first issue of project DEMO
MAX_FILE_BYTES = 1024 * 1024
MAX_REPO_FILES = 500
MAX_REPO_FILE_BYTES = 256 * 1024
MAX_DESCRIPTION_CHARS = 32_000  # Jira refuses longer text fields
MAX_LABELS = 20
MAX_PATH_CHARS = 400

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_LABEL_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,255}")
_SECTIONS = ("ticket", "repository", "repositories", "model", "expect")
_KEYED = ("files", "repositories")  # mappings whose keys are names (paths), not fields
# The service repositories a scenario may seed: Jira component <name> <-> GitLab project demo/<name>
# (config/projects.example.yaml maps them so).
SERVICE_REPOSITORIES = {name: f"demo/{name}" for name in DEMO_COMPONENTS}


class ScenarioError(ValueError):
    """A scenario file that cannot be played; the message is one line naming the file and the field."""


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


class Ticket(BaseModel):
    """The Jira issue the demo works on (it becomes DEMO-1); `description` is Jira wiki markup."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    summary: str
    description: str = ""
    labels: tuple[str, ...] = ()
    components: tuple[str, ...] = ()

    @field_validator("summary")
    @classmethod
    def _summary(cls, value: str) -> str:
        text = _encodable(value).strip()
        if not text or len(text) > 255 or _CONTROL_RE.search(text):
            raise ValueError("the summary must be one line of 1-255 characters")
        return text

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        if len(_encodable(value)) > MAX_DESCRIPTION_CHARS:
            raise ValueError(f"the description is longer than {MAX_DESCRIPTION_CHARS} characters")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if len(values) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        for label in values:
            if not _LABEL_RE.fullmatch(_encodable(label)):
                raise ValueError(f"invalid Jira label {label[:60]!r} (no spaces, 1-255 characters)")
        if len(set(values)) != len(values):
            raise ValueError("a label is listed twice")
        return values

    @field_validator("components")
    @classmethod
    def _components(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for name in values:
            if name not in SERVICE_REPOSITORIES:
                known = ", ".join(SERVICE_REPOSITORIES)
                raise ValueError(f"unknown component {name[:60]!r}; project DEMO has {known}")
        if len(set(values)) != len(values):
            raise ValueError("a component is listed twice")
        return values


def _repo_path(path: str) -> str:
    if len(path) > MAX_PATH_CHARS or _CONTROL_RE.search(_encodable(path)):
        raise ValueError(f"path {path[:60]!r}: one line of at most {MAX_PATH_CHARS} characters")
    normal = normalize_path(path)
    if normal is None or normal != path:
        raise ValueError(f"path {path[:60]!r}: a relative path inside the repository, like src/app.py")
    if any(part.casefold() == ".git" for part in normal.split("/")):
        raise ValueError(f"path {path[:60]!r}: nothing may be written under .git")
    return normal


class Repository(BaseModel):
    """The repository's first commit on `main`: path → text (include `.baton.yml` to declare commands)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    files: dict[str, str] = Field(min_length=1)

    @field_validator("files")
    @classmethod
    def _files(cls, files: dict[str, str]) -> dict[str, str]:
        if len(files) > MAX_REPO_FILES:
            raise ValueError(f"at most {MAX_REPO_FILES} files")
        for path, content in files.items():
            _repo_path(path)
            if len(_encodable(content).encode("utf-8")) > MAX_REPO_FILE_BYTES:
                raise ValueError(f"{path[:60]!r} is larger than {MAX_REPO_FILE_BYTES} bytes")
        names = set(files)
        for path in files:
            parent = path.rpartition("/")[0]
            while parent:
                if parent in names:
                    raise ValueError(f"{parent!r} is a file but {path[:60]!r} puts a file inside it")
                parent = parent.rpartition("/")[0]
        if REPO_CONFIG_FILE in files:
            try:
                parse_repo_config(files[REPO_CONFIG_FILE])
            except RepoConfigError as exc:
                raise ValueError(str(exc)) from None
        return files


class Expect(BaseModel):
    """What the demo waits for: a proposal, then (after `/approve`) an MR; or clarifying questions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    proposal: StrictBool | None = None
    mr: StrictBool | None = None
    needs_info: StrictBool = False

    @model_validator(mode="after")
    def _consistent(self) -> Expect:
        if self.needs_info and (self.proposal or self.mr):
            raise ValueError("needs_info means the ticket gets questions, not a proposal or an MR")
        if self.mr and self.proposal is False:
            raise ValueError("an MR needs a proposal to approve first")
        if not self.needs_info and self.proposal is False and not self.mr:
            raise ValueError("expect nothing? set proposal, mr or needs_info")
        return self

    @property
    def wants_proposal(self) -> bool:
        return not self.needs_info and self.proposal is not False

    @property
    def wants_mr(self) -> bool:
        """An MR is expected unless the scenario stops at the proposal or at the questions."""
        return self.wants_proposal and self.mr is not False


class DemoScenario(BaseModel):
    """One playable scenario: `ticket`, `repository` (demo/calculator) and/or `repositories` (the service
    repositories, by GitLab path), `model` (scripted turns) and optional `expect`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticket: Ticket
    repository: Repository | None = None
    repositories: dict[str, Repository] = Field(default_factory=dict)
    model: Scenario
    expect: Expect = Field(default_factory=Expect)

    @field_validator("repositories")
    @classmethod
    def _repositories(cls, values: dict[str, Repository]) -> dict[str, Repository]:
        known = set(SERVICE_REPOSITORIES.values())
        for path in values:
            if path == DEMO_PROJECT:
                raise ValueError(f"{DEMO_PROJECT} is the `repository` section, not one of `repositories`")
            if path not in known:
                names = ", ".join(sorted(known))
                raise ValueError(f"unknown repository {path[:60]!r}; the sandbox has {names}")
        return values

    @model_validator(mode="after")
    def _world(self) -> DemoScenario:
        if self.repository is None and not self.repositories:
            raise ValueError("`repository` (demo/calculator) or `repositories` is required")
        for name in self.ticket.components:
            if SERVICE_REPOSITORIES[name] not in self.repositories:
                raise ValueError(
                    f"ticket.components: {name!r} maps to {SERVICE_REPOSITORIES[name]}, "
                    "which `repositories` does not declare"
                )
        return self

    @property
    def several_repositories(self) -> bool:
        """The ticket spans several repositories (its components map to more than one)."""
        return len(self.ticket.components) > 1

    def triage_questions(self) -> list[str]:
        """The questions the scripted planner asks about the ticket (what a needs-info demo waits for)."""
        first_line = f"[baton:triage] {TICKET_KEY}"
        script = next((s for s in self.model.scripts if s.match in first_line), None)
        for turn in script.turns if script else []:
            questions = (turn.structured_output or {}).get("questions")
            if isinstance(questions, list):
                return [str(q) for q in questions]
        return []


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for index, part in enumerate(loc):
        files = index > 0 and loc[index - 1] in _KEYED
        text += f"[{part!r}]" if files else f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "the file"


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `Turn`, `list[Script]` or `ToolUse | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_nested_model, get_args(annotation)) if m is not None), None)


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The field names allowed where an unknown field was found (for the "did you mean" hint)."""
    model: type[BaseModel] = DemoScenario
    for index, part in enumerate(loc[:-1]):
        if index > 0 and loc[index - 1] in _KEYED:
            continue  # a repository's path, not a field
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        nested = _nested_model(field.annotation) if field is not None else None
        if isinstance(part, str) and nested is None:
            return []
        model = nested or model
    return list(model.model_fields)


def explain(exc: ValidationError) -> str:
    """The first problem of a validation error as `where: what` (unknown fields get a suggestion)."""
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    where = _location(loc)
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc), n=1)
        return f"{where}: unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
    if err["type"] == "missing":
        return f"{where}: required field is missing"
    return f"{where}: {str(err['msg']).removeprefix('Value error, ')}"


def _top_level(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ScenarioError(f"the top level must be a mapping with {', '.join(_SECTIONS)}, not {kind}")
    if "scripts" in data and "model" not in data:
        raise ScenarioError("this looks like a model-only script file: put its `scripts` under `model:`")
    return data


def parse_demo_scenario(text: str) -> DemoScenario:
    """Parse scenario YAML; `ScenarioError` says what is wrong in one line."""
    try:
        data = _top_level(load_yaml(text, max_bytes=MAX_FILE_BYTES))
        return DemoScenario.model_validate(data)
    except YamlRefused as exc:
        raise ScenarioError(_one_line(str(exc))) from None
    except ValidationError as exc:
        raise ScenarioError(_one_line(explain(exc))) from None


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def load_demo_scenario(path: Path) -> DemoScenario:
    """Read and parse a scenario file; the error names the file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ScenarioError(f"the file is larger than {MAX_FILE_BYTES} bytes")
        return parse_demo_scenario(path.read_text(encoding="utf-8"))
    except ScenarioError as exc:
        raise ScenarioError(f"{path.name}: {exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path.name}: not UTF-8 text") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
