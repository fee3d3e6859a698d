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
# A line that could be a command or a mention of the bot (quoted lines never are).
_COMMAND_RE = re.compile(r"(?m)^[ \t]*(?:/[A-Za-z]|@[A-Za-z0-9_.\-]|\[~)")


class PayloadInvalid(ValueError):
    """A payload Baton cannot read; the message is one line (field path and problem, never the value)."""


def _at(payload: Mapping[str, Any], *path: str) -> object:
    """The value at `path` in a raw payload, or None wherever the shape differs."""
    value: object = payload
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _never(_payload: Mapping[str, Any]) -> bool:
    return False


def _command_in(*path: str) -> Callable[[Mapping[str, Any]], bool]:
    def relevant(payload: Mapping[str, Any]) -> bool:
        text = _at(payload, *path)
        return isinstance(text, str) and _COMMAND_RE.search(text) is not None

    return relevant


def _new_commits(payload: Mapping[str, Any]) -> bool:
    """New commits on a merge request, or the merge of one of Baton's (`baton/…` branches)."""
    action = _at(payload, "object_attributes", "action")
    if action == "merge":
        branch = _at(payload, "object_attributes", "source_branch")
        return isinstance(branch, str) and branch.startswith("baton/")
    return action == "update" and bool(_at(payload, "object_attributes", "oldrev"))


def _labels_changed(payload: Mapping[str, Any]) -> bool:
    items = _at(payload, "changelog", "items")
    return isinstance(items, list) and any(
        isinstance(i, Mapping) and "labels" in (i.get("field"), i.get("fieldId")) for i in items
    )


@dataclass(frozen=True)
class Route(Generic[E]):
    """One event: the model its payload must match, the handler that turns it into an Action, and
    `relevant`: whether a payload of this event could be one Baton acts on (a command in a note, a
    label change, new commits). An unreadable payload is refused (400) only when it could be; any
    other is ignored (200), since GitLab disables a webhook whose deliveries keep failing."""

    model: type[E]
    handle: Callable[[E, HandlerContext], Action]
    relevant: Callable[[Mapping[str, Any]], bool] = _never

    def __call__(self, payload: Mapping[str, Any], ctx: HandlerContext) -> Action:
        return self.handle(parse(self.model, payload), ctx)


GITLAB_ROUTES: Mapping[str, Route[Any]] = MappingProxyType(
    {
        "note": Route(NoteEvent, gitlab_note.note_posted, _command_in("object_attributes", "note")),
        "merge_request": Route(MergeRequestEvent, gitlab_mr.merge_request_changed, _new_commits),
        "push": Route(PushEvent, gitlab_mr.branch_pushed),
        "pipeline": Route(PipelineEvent, gitlab_mr.pipeline_changed),
    }
)
JIRA_ROUTES: Mapping[str, Route[Any]] = MappingProxyType(
    {
        "jira:issue_updated": Route(IssueUpdatedEvent, jira_issue.issue_updated, _labels_changed),
        "comment_created": Route(CommentEvent, jira_comment.comment_created, _command_in("comment", "body")),
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
    """The Action for one delivery. Raises PayloadInvalid for a body that is not a JSON object, or for
    an event Baton could act on (see `Route.relevant`) whose payload has the wrong shape; any other
    event, whatever its shape (group and system hooks, missing optional objects), is an Ignore."""
    if source not in _SOURCES:
        raise ValueError(f"unknown source {safe_text(source)!r}")
    label, kind_field, routes = _SOURCES[source]
    if not isinstance(payload, Mapping):
        raise PayloadInvalid("payload: expected a JSON object")
    kind = payload.get(kind_field)
    if not isinstance(kind, str):
        named = payload.get("event_name") if isinstance(payload.get("event_name"), str) else None
        what = f"{label} {safe_text(named)!r} events" if named else f"{label} events without {kind_field}"
        return Ignore(f"{what} are not handled")
    handler = routes.get(kind)
    if handler is None:
        return Ignore(f"{label} {safe_text(kind)!r} events are not handled")
    try:
        return handler(payload, ctx)
    except PayloadInvalid as exc:
        if handler.relevant(payload):
            raise
        return Ignore(
            f"{label} {safe_text(kind)!r} event of an unexpected shape ({exc}); nothing to act on"[
                :MAX_REASON
            ]
        )
