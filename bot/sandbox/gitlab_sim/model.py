"""The simulator's records: users, projects, merge requests, issues, notes, threads, emoji, hooks."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NO_ACCESS = 0
GUEST = 10
REPORTER = 20
DEVELOPER = 30
MAINTAINER = 40
OWNER = 50

MERGE_REQUEST = "MergeRequest"
ISSUE = "Issue"


class SimError(Exception):
    """A request the simulated GitLab refuses; `status` and `message` become the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(what: str = "") -> SimError:
    return SimError(404, f"404 {what} Not Found" if what else "404 Not found")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class User:
    id: int
    username: str
    name: str
    email: str
    token: str = field(repr=False)
    bot: bool = False


@dataclass
class Project:
    id: int
    path_with_namespace: str
    default_branch: str
    repo_path: Path
    members: dict[int, int] = field(default_factory=dict)  # user id -> access level
    created_at: datetime = field(default_factory=now)
    description: str = ""

    @property
    def name(self) -> str:
        return self.path_with_namespace.rsplit("/", 1)[-1]

    @property
    def namespace(self) -> str:
        return self.path_with_namespace.rsplit("/", 1)[0]


@dataclass
class MergeRequest:
    id: int
    iid: int
    project_id: int
    title: str
    description: str
    source_branch: str
    target_branch: str
    author_id: int
    labels: list[str]
    draft: bool
    head_sha: str | None  # source branch head when last seen (for `oldrev` in MR hooks)
    state: str = "opened"
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    merge_commit_sha: str | None = None  # set when merged (`PUT .../merge`)
    merged_base: str | None = None  # the merge base when merged: the MR's diff stays what it was


@dataclass
class Issue:
    id: int
    iid: int
    project_id: int
    title: str
    description: str = ""
    author_id: int = 0
    state: str = "opened"
    created_at: datetime = field(default_factory=now)


@dataclass
class Note:
    id: int
    project_id: int
    noteable_type: str  # MergeRequest | Issue
    noteable_id: int
    noteable_iid: int
    author_id: int
    body: str
    discussion_id: str
    type: str | None  # None (plain comment), "DiscussionNote" or "DiffNote"
    position: dict[str, Any] | None = None
    system: bool = False
    resolved: bool = False
    resolved_by_id: int | None = None
    resolved_at: datetime | None = None
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)

    @property
    def resolvable(self) -> bool:
        return self.noteable_type == MERGE_REQUEST and self.type is not None and not self.system


@dataclass
class Discussion:
    id: str
    project_id: int
    noteable_type: str
    noteable_iid: int
    individual_note: bool
    note_ids: list[int] = field(default_factory=list)


@dataclass
class AwardEmoji:
    id: int
    name: str
    user_id: int
    awardable_type: str  # MergeRequest | Issue | Note
    awardable_id: int
    created_at: datetime = field(default_factory=now)


@dataclass
class Hook:
    id: int
    project_id: int
    url: str
    token: str = field(repr=False)
    uuid: str
    push_events: bool = True
    note_events: bool = False
    merge_requests_events: bool = False
    issues_events: bool = False
    pipeline_events: bool = False
    job_events: bool = False
    enable_ssl_verification: bool = True
    created_at: datetime = field(default_factory=now)


@dataclass
class Attempt:
    status: int | None  # None: no HTTP answer (connection error or timeout)
    error: str | None
    at: float


@dataclass
class Delivery:
    hook_id: int
    url: str
    event: str
    idempotency_key: str
    event_uuid: str
    payload: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].status is not None and self.attempts[-1].status < 300


def new_discussion_id() -> str:
    return secrets.token_hex(20)
