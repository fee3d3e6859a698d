"""The simulated Jira's records: users, issues, comments, webhooks, deliveries and the fixed workflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Deployment = Literal["Cloud", "Server"]
DeliveryState = Literal["pending", "delivered", "failed"]


@dataclass
class User:
    """An account: Cloud `account_id`, Data Center `name`; `api_token` (basic auth) or `pat` (Bearer)."""

    account_id: str
    display_name: str
    name: str
    email: str
    api_token: str | None = None
    pat: str | None = None
    groups: set[str] = field(default_factory=set)
    active: bool = True


@dataclass(frozen=True)
class Status:
    id: str
    name: str
    category_id: int
    category_key: str  # "new" | "indeterminate" | "done"
    category_color: str
    category_name: str


@dataclass(frozen=True)
class Transition:
    """A global transition (Jira Cloud's simplified workflows): available from every other status."""

    id: str
    name: str
    to_status: str  # Status.id


STATUSES: tuple[Status, ...] = (
    Status("10000", "To Do", 2, "new", "blue-gray", "To Do"),
    Status("3", "In Progress", 4, "indeterminate", "yellow", "In Progress"),
    Status("10002", "In Review", 4, "indeterminate", "yellow", "In Progress"),
    Status("10001", "Done", 3, "done", "green", "Done"),
)
TRANSITIONS: tuple[Transition, ...] = (
    Transition("11", "To Do", "10000"),
    Transition("21", "In Progress", "3"),
    Transition("41", "In Review", "10002"),
    Transition("31", "Done", "10001"),
)


def status_by_id(status_id: str) -> Status:
    return next(s for s in STATUSES if s.id == status_id)


@dataclass(frozen=True)
class LinkType:
    id: str
    name: str
    inward: str
    outward: str


LINK_TYPES: tuple[LinkType, ...] = (
    LinkType("10000", "Blocks", "is blocked by", "blocks"),
    LinkType("10003", "Relates", "relates to", "relates to"),
)


@dataclass
class Project:
    id: str
    key: str
    name: str
    components: dict[str, str] = field(default_factory=dict)  # component name -> id


@dataclass
class Comment:
    id: str
    issue_key: str
    author: str  # User.account_id
    body: str  # wiki markup, as REST v2 and webhooks carry it
    created: str
    updated: str
    update_author: str


@dataclass
class Issue:
    id: str
    key: str
    project_key: str
    summary: str
    description: str | None
    reporter: str  # User.account_id
    created: str
    updated: str
    issue_type: str = "Story"
    status_id: str = "10000"
    labels: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)  # names of the project's components
    comments: list[Comment] = field(default_factory=list)


@dataclass
class Link:
    """`outward` --type.outward--> `inward` (e.g. DEMO-1 blocks DEMO-2)."""

    id: str
    type_id: str
    outward: str  # issue key
    inward: str  # issue key


@dataclass
class Webhook:
    id: str
    name: str
    url: str
    events: list[str]
    jql: str | None = None
    secret: str | None = None
    exclude_body: bool = False
    enabled: bool = True


@dataclass
class Attempt:
    """One POST of a delivery: the HTTP status, or the connection error's class name."""

    retry: int
    status: int | None
    error: str | None = None


@dataclass
class Delivery:
    """One event sent to one webhook; `identifier` is kept across retries like Jira Cloud's."""

    identifier: str
    webhook_id: str
    event: str
    body: bytes
    attempts: list[Attempt] = field(default_factory=list)
    state: DeliveryState = "pending"


@dataclass(frozen=True)
class ChangeItem:
    """One changelog item (for labels, `fromString`/`toString` are space-separated lists)."""

    field: str
    from_id: str | None
    from_string: str | None
    to_id: str | None
    to_string: str | None


@dataclass(frozen=True)
class Change:
    """What happened, for the webhook sender: an issue update or a comment event, and who did it."""

    kind: Literal["issue_updated", "comment_created", "comment_updated"]
    issue_key: str
    actor: str  # User.account_id
    event_type_name: str = "issue_updated"
    items: tuple[ChangeItem, ...] = ()
    comment_id: str | None = None
    changelog_id: str | None = None
