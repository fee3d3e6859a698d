"""Wiki pages: front matter + markdown, parsed strictly (pure: bytes in, a Page or a PageError out).

A page is a markdown file that opens with YAML front matter between two `---` lines:

    ---
    title: Retries on the GitLab client must honour Retry-After
    kind: pitfall            # decision | pitfall | ownership | glossary | history
    status: inferred         # verified | inferred | human-provided
    modules: [bot/clients/gitlab.py, "bot/clients/**"]
    source: PROJ-123         # a ticket key, an MR reference or a person
    updated: 2024-08-07
    ---
    The body, in markdown. Decisions (ADRs) use the sections Context / Decision / Consequences.

Parsing never trusts the file: binary content, a missing or malformed header, unknown fields, statuses or
kinds, YAML alias bombs, traversal paths and oversized pages are refused with a message saying which;
a body above the soft cap is truncated with a visible note when read for an agent (never when read to be
written back: `parse_page(..., truncate=False)`).
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from bot.errors import BatonError
from bot.git.branch import slugify
from config.projects import YamlRefused, load_yaml

Status = Literal["verified", "inferred", "human-provided"]
Kind = Literal["decision", "pitfall", "ownership", "glossary", "history"]
STATUSES: tuple[str, ...] = get_args(Status)
KINDS: tuple[str, ...] = get_args(Kind)
KIND_DIRS: dict[str, str] = {
    "decision": "decisions",
    "pitfall": "pitfalls",
    "ownership": "ownership",
    "glossary": "glossary",
    "history": "history",
}
ADR_SECTIONS = ("Context", "Decision", "Consequences")

HARD_CAP_BYTES = 256 * 1024  # a page bigger than this is refused outright
SOFT_CAP_BYTES = 24 * 1024  # a body bigger than this is cut, with TRUNCATED_NOTE at the end
FRONT_MATTER_CAP_BYTES = 16 * 1024
TRUNCATED_NOTE = "\n\n> [truncated by Baton: the page is longer than {cap} bytes; read it in the wiki]"
MAX_PATH_CHARS = 200
MAX_TITLE_CHARS = 200
MAX_SOURCE_CHARS = 200
MAX_MODULES = 50
MAX_MODULE_CHARS = 300
SLUG_CHARS = 60
FIELDS = ("title", "kind", "status", "modules", "source", "updated")

_PATH_SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")  # YAML reads some as line breaks
_MODULE_RE = re.compile(r"[A-Za-z0-9_.*?\[\]{}!/+@,=-]{1,300}")
_FENCE = "---"


class KnowledgeError(BatonError):
    """Base of the knowledge store's errors."""


class PageError(KnowledgeError, ValueError):
    """A page that cannot be read or written; the message names the path and what is wrong."""


def _clean_line(value: str, field: str, cap: int) -> str:
    text = value.strip()
    if not text:
        raise ValueError(f"{field} is empty")
    if len(text) > cap:
        raise ValueError(f"{field} is longer than {cap} characters")
    if _CONTROL_RE.search(text):
        raise ValueError(f"{field} contains control characters")
    return text


def check_module(pattern: str) -> str:
    """A module pattern: a relative path or glob (`bot/git/`, `bot/**/*.py`), no traversal, no spaces."""
    text = pattern.strip().removeprefix("./")
    if not _MODULE_RE.fullmatch(text):
        raise ValueError(
            f"module {pattern[:60]!r} is not a relative path or glob (letters, digits, _.-/*?[]{{}})"
        )
    if text.startswith("/") or any(part == ".." for part in text.split("/")):
        raise ValueError(f"module {pattern[:60]!r} must be relative, without '..'")
    return text.rstrip("/") or text


def check_path(path: str) -> str:
    """A page's path inside the wiki: relative, `/`-separated, safe segments, ending in `.md`."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS:
        raise PageError(f"page path must be 1-{MAX_PATH_CHARS} characters")
    if path.startswith("/") or "\\" in path:
        raise PageError(f"page path {path[:80]!r} must be relative and use '/'")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PageError(f"page path {path[:80]!r} has an empty, '.' or '..' segment")
    if not all(_PATH_SEGMENT_RE.fullmatch(part) for part in parts):
        raise PageError(f"page path {path[:80]!r}: segments are letters, digits, '_', '.', '-'")
    if not path.endswith(".md"):
        raise PageError(f"page path {path[:80]!r} must end in .md")
    return path


class Page(BaseModel):
    """One wiki page: its front matter fields and its markdown body (stripped of outer blank lines)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    title: str
    kind: Kind
    status: Status
    modules: tuple[str, ...] = ()
    source: str
    updated: datetime.date
    body: str

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        try:
            return check_path(value)
        except PageError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return _clean_line(value, "title", MAX_TITLE_CHARS)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _clean_line(value, "source", MAX_SOURCE_CHARS)

    @field_validator("modules", mode="before")
    @classmethod
    def _modules(cls, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ValueError("modules must be a list of paths or globs")
        if len(value) > MAX_MODULES:
            raise ValueError(f"more than {MAX_MODULES} modules")
        if not all(isinstance(item, str) for item in value):
            raise ValueError("modules must be strings")
        return tuple(dict.fromkeys(check_module(item) for item in value))

    @field_validator("body")
    @classmethod
    def _body(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("body contains NUL characters")
        value = value.replace("\r\n", "\n")
        return value.strip("\n").rstrip() if value.strip() else ""

    @property
    def tokens(self) -> int:
        """A rough token count of the page as shown to an agent (4 characters a token)."""
        return estimate_tokens(self.title) + estimate_tokens(self.body) + 12


def estimate_tokens(text: str) -> int:
    """Tokens `text` costs an agent, roughly: one per 4 characters, rounded up."""
    return (len(text) + 3) // 4


def _split(path: str, text: str) -> tuple[str, str]:
    """(front matter, body) of a page's text, or a PageError saying what is missing."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not text.startswith(_FENCE + "\n"):
        raise PageError(f"{path}: no front matter (the page must start with a '---' line)")
    end = re.search(r"^---[ \t]*$", text[4:], re.MULTILINE)
    if end is None:
        raise PageError(f"{path}: the front matter is not closed by a '---' line")
    return text[4 : 4 + end.start()], text[4 + end.end() :]


def _front_matter(path: str, header: str) -> dict[str, Any]:
    if len(header.encode()) > FRONT_MATTER_CAP_BYTES:
        raise PageError(f"{path}: the front matter is larger than {FRONT_MATTER_CAP_BYTES} bytes")
    try:
        data = load_yaml(header, max_bytes=FRONT_MATTER_CAP_BYTES)
    except YamlRefused as exc:
        raise PageError(f"{path}: front matter refused: {exc}") from None
    if not isinstance(data, dict):
        raise PageError(f"{path}: the front matter must be a mapping of {', '.join(FIELDS)}")
    unknown = sorted(str(key)[:40] for key in data if key not in FIELDS)
    if unknown:
        raise PageError(
            f"{path}: unknown front matter field(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})"
        )
    missing = [field for field in FIELDS if field not in data and field != "modules"]
    if missing:
        raise PageError(f"{path}: front matter lacks {', '.join(missing)}")
    for field, allowed in (("status", STATUSES), ("kind", KINDS)):
        if data[field] not in allowed:
            raise PageError(
                f"{path}: unknown {field} {str(data[field])[:40]!r} (one of {', '.join(allowed)})"
            )
    return data


def _truncate(body: str) -> str:
    raw = body.encode("utf-8")
    if len(raw) <= SOFT_CAP_BYTES:
        return body
    cut = raw[:SOFT_CAP_BYTES].decode("utf-8", "ignore")
    return cut.rstrip() + TRUNCATED_NOTE.format(cap=SOFT_CAP_BYTES)


def _decode(path: str, data: bytes) -> str:
    if len(data) > HARD_CAP_BYTES:
        raise PageError(f"{path}: the page is {len(data)} bytes, more than the {HARD_CAP_BYTES} allowed")
    if b"\x00" in data:
        raise PageError(f"{path}: binary content (NUL bytes), not a markdown page")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PageError(f"{path}: not UTF-8 text (binary content?)") from None


def parse_page(path: str, data: bytes, *, truncate: bool = True) -> Page:
    """The Page stored at `path` with content `data`; PageError naming the path and the problem.
    The body is cut to the soft cap (with a note) for showing to an agent; `truncate=False` keeps it
    whole, which is what anything that writes the page back must read."""
    check_path(path)
    header, body = _split(path, _decode(path, data))
    fields = _front_matter(path, header)
    if isinstance(fields.get("updated"), str):
        try:
            fields["updated"] = datetime.date.fromisoformat(fields["updated"].strip())
        except ValueError:
            raise PageError(f"{path}: updated must be an ISO date (YYYY-MM-DD)") from None
    try:
        return Page(path=path, body=_truncate(body) if truncate else body, **fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'page'}: {e['msg']}" for e in exc.errors()
        )
        raise PageError(f"{path}: {problems}") from None


def render_page(page: Page) -> str:
    """The page's file content: YAML front matter, a blank line, the body; `parse_page` reads it back."""
    header = {
        "title": page.title,
        "kind": page.kind,
        "status": page.status,
        "modules": list(page.modules),
        "source": page.source,
        "updated": page.updated,
    }
    front = yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=1000)
    return f"{_FENCE}\n{front}{_FENCE}\n\n{page.body}\n" if page.body else f"{_FENCE}\n{front}{_FENCE}\n"


def page_path(kind: Kind, title: str, number: int | None = None) -> str:
    """Where a page of `kind` titled `title` lives: `pitfalls/<slug>.md`; ADRs `decisions/0007-<slug>.md`
    when given their `number` (see `Wiki.next_decision_number`)."""
    if kind not in KIND_DIRS:
        raise PageError(f"unknown kind {str(kind)[:40]!r} (one of {', '.join(KINDS)})")
    slug = slugify(title, SLUG_CHARS)
    if kind == "decision" and number is not None:
        if not 0 < number < 10_000:
            raise PageError("decision numbers run from 1 to 9999")
        slug = f"{number:04d}-{slug}"
    return f"{KIND_DIRS[kind]}/{slug}.md"


def adr_body(context: str, decision: str, consequences: str) -> str:
    """A decision page's body in the ADR convention: Context / Decision / Consequences."""
    parts = zip(ADR_SECTIONS, (context, decision, consequences), strict=True)
    return "\n\n".join(f"## {name}\n\n{text.strip()}" for name, text in parts)
