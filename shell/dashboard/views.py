"""Pure helpers for the dashboard's pages: durations, money, links to Jira and GitLab, and what a run's
stored phase outputs say (the brief, the agents' summaries, the checks), read leniently so that outputs
stored by any version render."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from markupsafe import Markup, escape
from pydantic import BaseModel, ConfigDict, ValidationError

from config.settings import Settings

COMMENT_EFFECTS = frozenset({"jira_comment", "gitlab.note", "gitlab.reply"})
PHASE_MARKS = {"done": "✓", "running": "▶", "failed": "✗", "pending": "○"}  # in every common font


# --- numbers -------------------------------------------------------------------------------------


def span(seconds: float | None) -> str:
    """`0.8 s`, `42 s`, `3 min 4 s`, `2 h 5 min`, `3 d 4 h`; `–` for none."""
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{max(seconds, 0):.1f} s"
    whole = int(seconds)
    for unit, size, smaller, small_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60)):
        if whole >= size:
            rest = (whole % size) // small_size
            return f"{whole // size} {unit} {rest} {smaller}" if rest else f"{whole // size} {unit}"
    if whole >= 60:
        return f"{whole // 60} min {whole % 60} s" if whole % 60 else f"{whole // 60} min"
    return f"{whole} s"


def age(moment: datetime | str, now: datetime) -> str:
    """How long since `moment`: `3 min`."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return span((now - value).total_seconds())


def ago(moment: datetime | str, now: datetime) -> str:
    """`3 min ago`, or `just now` within a second."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    seconds = (now - value).total_seconds()
    return "just now" if seconds < 1 else f"{span(seconds)} ago"


def money(usd: float | None) -> str:
    """`$0.0123` below a dollar, `$12.34` above."""
    value = usd or 0.0
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def count(n: int | None) -> str:
    return f"{n or 0:,}"


def clip(text: str, limit: int = 200) -> str:
    """At most `limit` characters, with `…` when shortened (list pages show one line per run)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stamp(moment: datetime | str | None) -> str:
    """`2025-01-31 14:05 UTC`."""
    if moment is None:
        return "–"
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.strftime("%Y-%m-%d %H:%M UTC")


# --- links ---------------------------------------------------------------------------------------


def _base(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return url.rstrip("/") if parts.scheme in ("http", "https") and parts.netloc else None


@dataclass(frozen=True)
class Links:
    """Where a subject, a comment or a merge request lives, from the configured GitLab and Jira URLs."""

    jira: str | None
    gitlab: str | None

    @classmethod
    def of(cls, settings: Settings) -> Links:
        return cls(_base(settings.jira_url), _base(settings.gitlab_url))

    def subject(self, subject: str) -> str | None:
        """The Jira ticket (`jira:KEY-1`) or the merge request (`gitlab:group/app!3`)."""
        source, _, ref = subject.partition(":")
        if source == "jira" and self.jira and ref:
            return f"{self.jira}/browse/{quote(ref, safe='')}"
        if source == "gitlab" and self.gitlab and "!" in ref:
            path, _, iid = ref.rpartition("!")
            return self.merge_request(path, iid)
        return None

    def anchor(self, subject: str) -> Markup:
        """The subject as a link to its ticket or merge request (as text when there is none)."""
        url = self.subject(subject)
        return Markup('<a href="{}" rel="noreferrer">{}</a>').format(url, subject) if url else escape(subject)

    def comment(self, subject: str, comment_id: str | None) -> str | None:
        """The exact comment (Jira) or thread note (GitLab) that posted something, to reply to."""
        where = self.subject(subject)
        if where is None or not comment_id:
            return None
        ident = quote(comment_id, safe="")
        if subject.startswith("jira:"):
            return f"{where}?focusedCommentId={ident}#comment-{ident}"
        return f"{where}#note_{ident}"

    def posted(self, subject: str, kind: str, external_id: str) -> str | None:
        """Where one of Baton's writes (an effect of `kind`) can be seen, when it is a comment."""
        return self.comment(subject, external_id) if kind in COMMENT_EFFECTS else None

    def merge_request(self, project_path: str, iid: str | int | None) -> str | None:
        if not self.gitlab or not project_path or iid in (None, ""):
            return None
        return f"{self.gitlab}/{quote(project_path, safe='/')}/-/merge_requests/{quote(str(iid), safe='')}"


# --- what the phases stored ----------------------------------------------------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Finding(_Lenient):
    file: str | None = None
    line: int | None = None
    text: str = ""


class Verdict(_Lenient):
    approve: bool | None = None
    summary: str = ""
    blockers: list[Finding] = []
    suggestions: list[Finding] = []
    scope_creep: list[Finding] = []


class Check(_Lenient):
    stage: str = ""
    command: str = ""
    status: str = ""
    exit_code: int | None = None
    duration_s: float = 0.0


class Denial(_Lenient):
    tool: str = ""
    reason: str = ""


class Transcript(_Lenient):
    """What a run's phases recorded, for people: every field optional."""

    triage_summary: str = ""
    questions: list[str] = []
    brief: str = ""
    brief_tokens: int = 0
    branch: str = ""
    implement_summary: str = ""
    turns: int = 0
    denials: list[Denial] = []
    checks: list[Check] = []
    ci_changes: list[str] = []
    feedback: str = ""
    verdict: Verdict | None = None
    refused: str = ""

    @property
    def empty(self) -> bool:
        return self == Transcript()


def _part(output: dict[str, Any] | None, **names: str) -> dict[str, Any]:
    """`{ours: output[theirs]}` for the keys present in a stored output."""
    if not isinstance(output, dict):
        return {}
    return {ours: output[theirs] for ours, theirs in names.items() if theirs in output}


def transcript(outputs: dict[str, dict[str, Any]]) -> Transcript:
    """The transcript summary of a run from its phases' stored outputs; a field that does not fit is
    left out rather than failing the page."""
    fields = {
        **_part(outputs.get("triage"), triage_summary="summary", questions="questions"),
        **_part(outputs.get("assemble"), brief="brief", brief_tokens="brief_tokens", branch="branch"),
        **_part(outputs.get("assemble"), refused="refused"),
        **_part(outputs.get("implement"), implement_summary="summary", turns="turns", denials="denials"),
        **_part(outputs.get("validate"), checks="checks", ci_changes="ci_changes", feedback="feedback"),
        **_part(outputs.get("review"), verdict="verdict"),
    }
    kept: dict[str, Any] = {}
    for name, value in fields.items():
        try:
            Transcript.model_validate({name: value})
        except ValidationError:
            continue
        kept[name] = value
    return Transcript.model_validate(kept)
