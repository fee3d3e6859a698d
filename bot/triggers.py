"""What starts a run, typed across the queue: one model per trigger, dumped into the inbox by ingress
and validated when the worker loads the run (`bot/store/runs.py`), so a workflow reads fields, never
dict keys.

Old rows (stored before the `trigger` tag existed) carry the same keys; the tag is inferred from them.
A row that validates as none of these becomes `Unreadable`, which the worker refuses at claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

Source = Literal["gitlab", "jira"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Person(_Model):
    """Who asked or acted, the same shape from both sources.

    GitLab gives `id` and `username`; Jira Cloud `account_id` and `display_name`, Data Center `name`
    and `key`. Unknown fields stay None.
    """

    id: int | None = None
    username: str | None = None
    account_id: str | None = None
    name: str | None = None
    key: str | None = None
    display_name: str | None = None

    def called(self) -> str:
        """How to name them in text: display name, else a user name, else "someone"."""
        return self.display_name or self.username or self.name or "someone"

    def same_as(self, other: Person) -> bool:
        """The same account: any identifier both carry is equal."""
        pairs = ((self.id, other.id), (self.username, other.username), (self.account_id, other.account_id))
        return any(a and a == b for a, b in (*pairs, (self.name, other.name)))


class TicketLabelled(_Model):
    """The trigger label was added to a Jira ticket: an `implement` run (the design label: a `design` run)."""

    trigger: Literal["ticket_labelled"] = "ticket_labelled"
    issue_key: str | None = None
    issue_id: str
    project_key: str | None = None
    summary: str | None = None
    actor: Person = Person()
    revisions: tuple[str, ...] = ()  # /revise notes, appended by the worker


class TicketCommand(_Model):
    """A slash command in a Jira comment."""

    trigger: Literal["ticket_command"] = "ticket_command"
    issue_key: str | None = None
    issue_id: str
    comment_id: str
    args: str = ""
    author: Person = Person()


class ThreadCommand(_Model):
    """A slash command in a merge request note: an overview note or a reply in a discussion."""

    trigger: Literal["thread_command"] = "thread_command"
    project_id: int
    project_path: str
    mr_iid: int
    note_id: int
    discussion_id: str | None = None
    note_type: str | None = None  # "DiffNote"/"DiscussionNote" in a thread; None on the overview
    position: dict[str, Any] | None = None
    args: str = ""
    author: Person = Person()
    revisions: tuple[str, ...] = ()


class MergeRequestPushed(_Model):
    """Someone pushed new commits to a merge request's source branch."""

    trigger: Literal["mr_pushed"] = "mr_pushed"
    project_id: int
    mr_iid: int
    source_branch: str
    head_sha: str
    oldrev: str | None = None
    actor: Person = Person()


class MergeRequestMerged(_Model):
    """A merge request whose source branch Baton made (`baton/...`) was merged: a `learn` run."""

    trigger: Literal["mr_merged"] = "mr_merged"
    project_id: int
    project_path: str
    mr_iid: int
    source_branch: str
    target_branch: str
    head_sha: str | None = None
    web_url: str | None = None
    actor: Person = Person()


class PipelineFailed(_Model):
    """A pipeline failed on a merge request whose source branch Baton made (`baton/...`): a CI analysis."""

    trigger: Literal["pipeline_failed"] = "pipeline_failed"
    project_id: int
    project_path: str
    mr_iid: int
    pipeline_id: int
    source_branch: str
    sha: str | None = None
    actor: Person = Person()
    revisions: tuple[str, ...] = ()  # /revise notes, appended by the worker


class JiraReplyTarget(_Model):
    kind: Literal["jira_comment"] = "jira_comment"
    issue_key: str


class ThreadReplyTarget(_Model):
    kind: Literal["gitlab_discussion"] = "gitlab_discussion"
    project_id: int
    mr_iid: int
    discussion_id: str | None = None


class ReplyRequest(_Model):
    """A handler's answer (e.g. "did you mean /approve?"), posted once by a `reply` run."""

    trigger: Literal["reply"] = "reply"
    target: Annotated[JiraReplyTarget | ThreadReplyTarget, Field(discriminator="kind")]
    text: str


class Unreadable(_Model):
    """Stored input that validates as no trigger; the worker refuses the run, saying why."""

    trigger: Literal["unreadable"] = "unreadable"
    error: str


Command = TicketCommand | ThreadCommand


def _tag(data: Any) -> str | None:
    """The stored `trigger` tag, or (rows from before the tag) the one its keys imply."""
    if not isinstance(data, Mapping):
        return getattr(data, "trigger", None)
    tag = data.get("trigger")
    if isinstance(tag, str):
        return tag
    for key, implied in (("text", "reply"), ("comment_id", "ticket_command"), ("note_id", "thread_command")):
        if key in data:
            return implied
    if "target_branch" in data:
        return "mr_merged"
    return "mr_pushed" if "head_sha" in data else "ticket_labelled"


Trigger = Annotated[
    Annotated[TicketLabelled, Tag("ticket_labelled")]
    | Annotated[TicketCommand, Tag("ticket_command")]
    | Annotated[ThreadCommand, Tag("thread_command")]
    | Annotated[MergeRequestPushed, Tag("mr_pushed")]
    | Annotated[MergeRequestMerged, Tag("mr_merged")]
    | Annotated[PipelineFailed, Tag("pipeline_failed")]
    | Annotated[ReplyRequest, Tag("reply")],
    Discriminator(_tag),
]
_ADAPTER: TypeAdapter[Trigger] = TypeAdapter(Trigger)
AnyTrigger = (
    TicketLabelled
    | TicketCommand
    | ThreadCommand
    | MergeRequestPushed
    | MergeRequestMerged
    | PipelineFailed
    | ReplyRequest
)


def parse(data: Mapping[str, Any]) -> AnyTrigger | Unreadable:
    """A stored run input as its trigger model, or `Unreadable` naming the first problem."""
    try:
        return _ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        return Unreadable(error=f"{where}: {first['msg']}"[:300])


def dump(trigger: AnyTrigger | Unreadable) -> dict[str, Any]:
    """The JSON the inbox stores."""
    return trigger.model_dump(mode="json")
