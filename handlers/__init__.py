"""Route a parsed webhook payload to the pure handler for its event; every route ends in an Action."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from bot.events.gitlab import MergeRequestEvent, NoteEvent, PipelineEvent, PushEvent
from bot.events.jira import CommentEvent, IssueUpdatedEvent
from handlers import gitlab_mr, gitlab_note, jira_comment, jira_issue
from handlers.actions import Action, Ignore
from handlers.context import HandlerContext

Source = Literal["gitlab", "jira"]
E = TypeVar("E", bound=BaseModel)

MAX_REASON = 200
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_:.\-]")


class PayloadInvalid(ValueError):
    """A payload Baton cannot read; the message is one line (field path and problem, never the value)."""


@dataclass(frozen=True)
class Route(Generic[E]):
    """One event: the model its payload must match and the handler that turns it into an Action."""

    model: type[E]
    handle: Callable[[E, HandlerContext], Action]

    def __call__(self, payload: Mapping[str, Any], ctx: HandlerContext) -> Action:
        return self.handle(parse(self.model, payload), ctx)


GITLAB_ROUTES: Mapping[str, Route[Any]] = MappingProxyType(
    {
        "note": Route(NoteEvent, gitlab_note.note_posted),
        "merge_request": Route(MergeRequestEvent, gitlab_mr.merge_request_changed),
        "push": Route(PushEvent, gitlab_mr.branch_pushed),
        "pipeline": Route(PipelineEvent, gitlab_mr.pipeline_changed),
    }
)
JIRA_ROUTES: Mapping[str, Route[Any]] = MappingProxyType(
    {
        "jira:issue_updated": Route(IssueUpdatedEvent, jira_issue.issue_updated),
        "comment_created": Route(CommentEvent, jira_comment.comment_created),
        "comment_updated": Route(CommentEvent, jira_comment.comment_changed),
        "comment_deleted": Route(CommentEvent, jira_comment.comment_changed),
    }
)
_SOURCES: Mapping[str, tuple[str, str, Mapping[str, Route[Any]]]] = MappingProxyType(
    {"gitlab": ("GitLab", "object_kind", GITLAB_ROUTES), "jira": ("Jira", "webhookEvent", JIRA_ROUTES)}
)


def safe_text(text: object, limit: int = 40) -> str:
    """A name from a payload, reduced to harmless characters for a reason or an error message."""
    return _UNSAFE_RE.sub("?", str(text)[:limit])


def describe(error: ValidationError) -> str:
    """One line naming the first bad field and what is wrong with it (pydantic never sees our values here)."""
    first = error.errors(include_url=False, include_context=False, include_input=False)[0]
    path = ".".join(safe_text(part) for part in first["loc"]) or "payload"
    problem = first["msg"].removeprefix("Value error, ")
    line = f"{path}: {problem}" if first["loc"] else problem
    return " ".join(line.split())[:MAX_REASON]


def parse(model: type[E], payload: Mapping[str, Any]) -> E:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise PayloadInvalid(describe(exc)) from None
    except RecursionError:
        raise PayloadInvalid("payload: nested too deeply") from None


def route(source: Source, payload: object, ctx: HandlerContext) -> Action:
    """The Action for one delivery; raises PayloadInvalid when a known event has the wrong shape."""
    if source not in _SOURCES:
        raise ValueError(f"unknown source {safe_text(source)!r}")
    label, kind_field, routes = _SOURCES[source]
    if not isinstance(payload, Mapping):
        raise PayloadInvalid("payload: expected a JSON object")
    kind = payload.get(kind_field)
    if not isinstance(kind, str):
        raise PayloadInvalid(f"{kind_field}: missing or not a string")
    handler = routes.get(kind)
    if handler is None:
        return Ignore(f"{label} {safe_text(kind)!r} events are not handled")
    return handler(payload, ctx)
