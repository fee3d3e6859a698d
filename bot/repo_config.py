"""The target repository's `.baton.yml`: its commands, protected paths, module map and sparse checkout."""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config.projects import YamlRefused, load_yaml

FILENAME = ".baton.yml"
ALWAYS_PROTECTED: tuple[str, ...] = (".gitlab-ci.yml", ".github/**", ".baton.yml")
Stage = Literal["format", "lint", "test"]
STAGES: tuple[Stage, ...] = ("format", "lint", "test")
DEFAULT_TIMEOUT_S = 600
MAX_BYTES = 64 * 1024
MAX_COMMAND_CHARS = 2000
MAX_GLOB_CHARS = 500
MAX_CHECKOUT_DIRS = 100
_GLOB_CHARS_RE = re.compile(r"[*?\[\]\\!]")

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class RepoConfigError(ValueError):
    """`.baton.yml` is invalid; the message is one line naming the field."""


def _command(value: str) -> str:
    if not value.strip() or len(value) > MAX_COMMAND_CHARS or _CONTROL_RE.search(value):
        raise ValueError(f"a command must be one line of 1-{MAX_COMMAND_CHARS} characters")
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"cannot split {value[:60]!r} into arguments: {exc}") from None
    if not argv:
        raise ValueError("a command must name a program")
    return value.strip()


def _glob(value: str) -> str:
    if not value.strip() or len(value) > MAX_GLOB_CHARS or _CONTROL_RE.search(value):
        raise ValueError(f"a path pattern must be one line of 1-{MAX_GLOB_CHARS} characters")
    return value.strip()


def _checkout_dir(value: str) -> str:
    """A directory for the sparse checkout: repository-relative, no pattern characters, no `..`."""
    text = _glob(value).strip("/")
    normal = normalize_path(text)
    if (
        normal is None
        or normal != text
        or _GLOB_CHARS_RE.search(text)
        or text.startswith("-")
        or text.split("/")[0] == ".git"
    ):
        raise ValueError(f"{value[:60]!r} is not a directory of the repository (no patterns, no ..)")
    return normal


def _as_list(value: object) -> object:
    """A lone string is accepted where a list of strings is expected."""
    return [value] if isinstance(value, str) else value


class Commands(BaseModel):
    """The repository's own format, lint and test commands, run in that order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: tuple[str, ...] = ()
    lint: tuple[str, ...] = ()
    test: tuple[str, ...] = ()

    @field_validator("format", "lint", "test", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return _as_list(value)

    @field_validator("format", "lint", "test")
    @classmethod
    def _valid(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_command(v) for v in values)

    def staged(self) -> list[tuple[Stage, str]]:
        """Every `(stage, command)` in run order: format, then lint, then test."""
        return [(stage, command) for stage in STAGES for command in getattr(self, stage)]


class RepoConfig(BaseModel):
    """What `.baton.yml` declares; a repository without one gets these defaults (no commands).

    Parsed once per run (by its assemble phase) and stored in the phase output as
    `model_dump(mode="json")`, which validates back to an equal config.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    commands: Commands = Field(default_factory=Commands)
    protected_paths: tuple[str, ...] = ()
    modules: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    timeout_s: int = Field(default=DEFAULT_TIMEOUT_S, ge=1, le=24 * 3600)
    # The directories a run's worktree checks out: when set, a sparse checkout of these (and the files at
    # the repository root), not of every file. An optimisation, not a limit on what a ticket may change:
    # a file the agent writes outside them is committed like any other (protected_paths limits changes).
    checkout: tuple[str, ...] = Field(default=(), max_length=MAX_CHECKOUT_DIRS)

    @field_validator("checkout")
    @classmethod
    def _checkout(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_checkout_dir(v) for v in values))

    @field_validator("protected_paths", "checkout", mode="before")
    @classmethod
    def _paths_list(cls, value: object) -> object:
        return _as_list(value)

    @field_validator("protected_paths")
    @classmethod
    def _paths(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_glob(v) for v in values)

    @field_validator("modules", mode="before")
    @classmethod
    def _modules_lists(cls, value: object) -> object:
        if isinstance(value, dict):
            return {name: _as_list(globs) for name, globs in value.items()}
        return value

    @field_validator("modules")
    @classmethod
    def _module_globs(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name in value:
            if not name.strip() or len(name) > 100 or _CONTROL_RE.search(name):
                raise ValueError(f"invalid module name {name[:60]!r}")
        return {name.strip(): tuple(_glob(g) for g in globs) for name, globs in value.items()}

    @property
    def all_protected(self) -> tuple[str, ...]:
        """The always-protected CI and Baton files, then the repository's own patterns."""
        return ALWAYS_PROTECTED + tuple(p for p in self.protected_paths if p not in ALWAYS_PROTECTED)

    @property
    def declared_commands(self) -> tuple[str, ...]:
        """Every command, for the agent's Bash allowlist."""
        return tuple(command for _, command in self.commands.staged())


def _reason(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    msg = (
        "unknown field" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
    )
    return f"{where or 'the file'}: {msg}"


def parse_repo_config(text: str | None) -> RepoConfig:
    """Parse `.baton.yml` (None or empty: defaults); `RepoConfigError` says what is wrong in one line."""
    if text is None:
        return RepoConfig()
    try:
        data = load_yaml(text, max_bytes=MAX_BYTES)
    except YamlRefused as exc:
        raise RepoConfigError(f"{FILENAME}: {exc}") from None
    if data is None:
        return RepoConfig()
    if not isinstance(data, dict):
        raise RepoConfigError(f"{FILENAME}: the top level must be a mapping, not {type(data).__name__}")
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as exc:
        raise RepoConfigError(f"{FILENAME}: {_reason(exc)}") from None


def read_repo_config(worktree: Path) -> tuple[str | None, RepoConfig]:
    """A worktree's `.baton.yml`: its text (None when there is none) and the parsed config."""
    path = worktree / FILENAME
    text = path.read_text() if path.is_file() else None
    return text, parse_repo_config(text)


def _pattern_segments(pattern: str) -> tuple[str, ...]:
    """`a/**/b` → ("a", "**", "b").

    As in `.gitignore`: a `/` at the start or in the middle anchors the pattern at the repository root,
    otherwise it matches at any depth; a trailing `/` means everything below.
    """
    text = pattern.strip()
    segments = [s for s in text.split("/") if s]
    if "/" not in text.rstrip("/"):
        segments.insert(0, "**")
    if text.endswith("/"):
        segments.append("**")
    return tuple(segments)


def glob_matches(pattern: str, path: str) -> bool:
    """Gitignore-like: `**` spans directories, `*`/`?`/`[..]` stay in one; the path or a parent may match.

    Matching is a table over (pattern segment, path segment) with `fnmatchcase` per segment, so a
    hostile pattern cannot make it backtrack exponentially.
    """
    names = path.split("/")
    reach = [True] + [False] * len(names)  # reach[j]: the pattern so far matches names[:j]
    for segment in _pattern_segments(pattern):
        if segment == "**":
            for j in range(1, len(reach)):
                reach[j] = reach[j] or reach[j - 1]
        else:
            reach = [False] + [reach[j] and fnmatchcase(names[j], segment) for j in range(len(names))]
    return any(reach[1:])


def normalize_path(path: str) -> str | None:
    """A repository-relative POSIX path, or None when it is absolute or climbs out of the repository."""
    unified = path.replace("\\", "/")
    if not unified or unified.startswith("/"):
        return None
    cleaned = posixpath.normpath(unified)
    if cleaned in (".", "..") or cleaned.startswith("../"):
        return None
    return cleaned


def matches(path: str, patterns: Iterable[str]) -> bool:
    """True when the path, or a directory above it, matches one of the patterns."""
    return any(glob_matches(pattern, path) for pattern in patterns)


def touched_protected(paths: Iterable[str], cfg: RepoConfig) -> list[str]:
    """The paths (as given, in order, once each) that hit a protected pattern or leave the repository."""
    hits: list[str] = []
    for path in paths:
        normal = normalize_path(path)
        if (normal is None or matches(normal, cfg.all_protected)) and path not in hits:
            hits.append(path)
    return hits


def modules_for(paths: Iterable[str], modules: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The module names (in map order) whose patterns match any of the paths."""
    normal = [n for n in (normalize_path(p) for p in paths) if n is not None]
    return [name for name, globs in modules.items() if any(matches(p, globs) for p in normal)]
