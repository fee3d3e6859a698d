"""GitLab webhook payloads (Note, Merge Request, Push and Pipeline hooks), as PROTOCOLS.md §A3 describes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from bot.events import EventModel, Id

_SEGMENT = r"[A-Za-z0-9_.][A-Za-z0-9_.-]*"


def _no_dot_segments(path: str) -> str:
    if any(not segment.strip(".") for segment in path.split("/")):
        raise ValueError("a path segment may not be only dots")
    return path


ProjectPath = Annotated[
    str, Field(pattern=rf"^{_SEGMENT}(/{_SEGMENT})*$", max_length=1000), AfterValidator(_no_dot_segments)
]
Sha = Annotated[str, Field(pattern=r"^[0-9a-f]{7,64}$")]
DiscussionId = Annotated[str, Field(pattern=r"^[0-9a-f]{1,64}$")]


class User(EventModel):
    id: Id
    username: str
    name: str = ""


class Project(EventModel):
    id: Id
    path_with_namespace: ProjectPath


class LinePoint(EventModel):
    line_code: str | None = None
    type: str | None = None
    old_line: int | None = None
    new_line: int | None = None


class LineRange(EventModel):
    start: LinePoint | None = None
    end: LinePoint | None = None


class Position(EventModel):
    """Where a DiffNote sits in the diff (`position_type` is "text", "image" or "file")."""

    base_sha: str | None = None
    start_sha: str | None = None
    head_sha: str | None = None
    old_path: str | None = None
    new_path: str | None = None
    position_type: str | None = None
    old_line: int | None = None
    new_line: int | None = None
    line_range: LineRange | None = None


class NoteAttributes(EventModel):
    id: Id
    note: str
    type: str | None = None
    discussion_id: DiscussionId | None = None
    system: bool = False
    action: str | None = None
    noteable_type: str
    author_id: Id | None = None
    updated_at: str | None = None
    position: Position | None = None
    url: str | None = None
    internal: bool | None = None
    confidential: bool | None = None


class LastCommit(EventModel):
    id: Sha


class MergeRequestRef(EventModel):
    iid: Id
    source_branch: str
    target_branch: str
    state: str | None = None
    last_commit: LastCommit | None = None


class IssueRef(EventModel):
    iid: Id


class NoteEvent(EventModel):
    object_kind: Literal["note"]
    event_type: str | None = None
    user: User
    project: Project
    project_id: Id | None = None
    object_attributes: NoteAttributes
    merge_request: MergeRequestRef | None = None
    issue: IssueRef | None = None

    @model_validator(mode="after")
    def _merge_request_present(self) -> NoteEvent:
        if self.object_attributes.noteable_type == "MergeRequest" and self.merge_request is None:
            raise ValueError("merge_request: required on a note about a merge request")
        return self

    @property
    def confidential(self) -> bool:
        attrs = self.object_attributes
        return self.event_type == "confidential_note" or bool(attrs.internal) or bool(attrs.confidential)


class MergeRequestAttributes(EventModel):
    iid: Id
    action: str | None = None
    source_branch: str
    target_branch: str
    state: str
    last_commit: LastCommit | None = None
    oldrev: Sha | None = None
    url: str | None = None


class Label(EventModel):
    title: str


class MergeRequestEvent(EventModel):
    object_kind: Literal["merge_request"]
    user: User
    project: Project
    object_attributes: MergeRequestAttributes
    labels: list[Label] = Field(default_factory=list)
    changes: dict[str, Any] = Field(default_factory=dict)


class PushEvent(EventModel):
    object_kind: Literal["push"]
    ref: str
    before: Sha
    after: Sha
    checkout_sha: Sha | None = None
    user_id: Id
    user_username: str
    project: Project


class PipelineAttributes(EventModel):
    id: Id
    status: str
    ref: str | None = None
    sha: Sha | None = None
    source: str | None = None


class PipelineMergeRequest(EventModel):
    """`merge_request` of a Pipeline Hook: set only for merge request pipelines."""

    iid: Id
    source_branch: str
    target_branch: str
    source_project_id: Id | None = None
    state: str | None = None


class PipelineEvent(EventModel):
    object_kind: Literal["pipeline"]
    object_attributes: PipelineAttributes
    project: Project
    merge_request: PipelineMergeRequest | None = None
    user: User | None = None
