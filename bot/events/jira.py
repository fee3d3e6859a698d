"""Jira webhook payloads (`jira:issue_updated`, `comment_*`), Cloud and Data Center: PROTOCOLS.md §B2."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from bot.events import EventModel, Id


def _id_text(value: object) -> object:
    """Jira sends ids as strings; accept a plain JSON integer too (never a bool)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


JiraId = Annotated[str, BeforeValidator(_id_text), Field(pattern=r"^[0-9]{1,19}$")]
IssueKey = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,99}-[0-9]{1,19}$")]
CommentEventName = Literal["comment_created", "comment_updated", "comment_deleted"]
_COMMENT_SELF_RE = re.compile(r"/rest/api/[^/?#]+/issue/([0-9]{1,19})/comment/[0-9]{1,19}(?:[?#].*)?$")


class JiraUser(EventModel):
    """A Jira account: `account_id` on Cloud, `name`/`key` on Data Center."""

    account_id: str | None = Field(None, alias="accountId")
    name: str | None = None
    key: str | None = None
    display_name: str | None = Field(None, alias="displayName")

    def identity(self) -> dict[str, str | None]:
        return {
            "account_id": self.account_id,
            "name": self.name,
            "key": self.key,
            "display_name": self.display_name,
        }


class JiraProject(EventModel):
    key: str


class IssueFields(EventModel):
    summary: str | None = None
    labels: list[str] = Field(default_factory=list)
    project: JiraProject | None = None


class JiraIssue(EventModel):
    id: JiraId
    key: IssueKey
    fields: IssueFields = IssueFields()


class ChangeItem(EventModel):
    field: str
    from_string: str | None = Field(None, alias="fromString")
    to_string: str | None = Field(None, alias="toString")


class Changelog(EventModel):
    id: JiraId | None = None
    items: list[ChangeItem] = Field(default_factory=list)


class JiraComment(EventModel):
    id: JiraId
    self_url: str | None = Field(None, alias="self")
    body: str = ""
    author: JiraUser | None = None


@dataclass(frozen=True)
class IssueRef:
    """Which issue an event is about; `key` is None when Data Center sent only the comment."""

    id: str
    key: str | None
    project_key: str | None = None
    summary: str | None = None

    @property
    def key_or_id(self) -> str:
        """Jira's REST paths take either (`/rest/api/2/issue/{issueIdOrKey}`)."""
        return self.key or self.id


def issue_ref(issue: JiraIssue) -> IssueRef:
    project = issue.fields.project
    return IssueRef(issue.id, issue.key, project.key if project else None, issue.fields.summary)


def issue_id_from_comment_url(url: str | None) -> str | None:
    """The issue id in a comment's `self` URL (`…/rest/api/2/issue/<issueId>/comment/<id>`)."""
    match = _COMMENT_SELF_RE.search(url or "")
    return match.group(1) if match else None


class IssueUpdatedEvent(EventModel):
    webhook_event: Literal["jira:issue_updated"] = Field(alias="webhookEvent")
    timestamp: Id | None = None
    issue_event_type_name: str | None = None
    user: JiraUser | None = None
    issue: JiraIssue
    changelog: Changelog | None = None
    comment: JiraComment | None = None


class CommentEvent(EventModel):
    webhook_event: CommentEventName = Field(alias="webhookEvent")
    timestamp: Id | None = None
    comment: JiraComment
    issue: JiraIssue | None = None

    @model_validator(mode="after")
    def _issue_known(self) -> CommentEvent:
        if self.issue is None and issue_id_from_comment_url(self.comment.self_url) is None:
            raise ValueError("issue: missing, and comment.self names no issue")
        return self

    @property
    def issue_ref(self) -> IssueRef:
        if self.issue is not None:
            return issue_ref(self.issue)
        return IssueRef(id=issue_id_from_comment_url(self.comment.self_url) or "", key=None)
