"""The simulated Jira's in-memory state; every mutation returns the `Change`s that webhooks announce."""

from __future__ import annotations

import base64
import hmac
import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.sandbox.jira_sim import jql
from bot.sandbox.jira_sim.faults import Faults
from bot.sandbox.jira_sim.model import (
    LINK_TYPES,
    TRANSITIONS,
    Attempt,
    Change,
    ChangeItem,
    Comment,
    Delivery,
    DeliveryState,
    Deployment,
    Issue,
    Link,
    Project,
    Transition,
    User,
    Webhook,
    status_by_id,
)


class SimError(Exception):
    """A request Jira would refuse; rendered as `{"errorMessages": [...], "errors": {...}}`."""

    def __init__(self, status: int, message: str = "", errors: dict[str, str] | None = None) -> None:
        super().__init__(message or str(errors))
        self.status = status
        self.messages = [message] if message else []
        self.errors = errors or {}


@dataclass
class WebhookPolicy:
    """How the simulator delivers: bounded attempts, the pause before each retry, and HTTP timeouts."""

    max_attempts: int = 5
    retry_delays_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 20.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def jira_time(moment: datetime) -> str:
    """Jira's timestamp format, e.g. `2019-02-15T19:11:18.321+0000`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}" + moment.strftime("%z")


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class JiraState:
    """Users, projects, issues, comments, webhooks and deliveries; thread-safe (tests read it too)."""

    def __init__(
        self,
        *,
        deployment: Deployment = "Cloud",
        clock: Callable[[], datetime] = utcnow,
        faults: Faults | None = None,
        webhook_policy: WebhookPolicy | None = None,
        emit_issue_commented: bool = True,
    ) -> None:
        self.deployment: Deployment = deployment
        self.clock = clock
        self.faults = faults or Faults()
        self.webhook_policy = webhook_policy or WebhookPolicy()
        self.emit_issue_commented = emit_issue_commented
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.users: dict[str, User] = {}
        self.projects: dict[str, Project] = {}
        self.issues: dict[str, Issue] = {}
        self.links: list[Link] = []
        self.webhooks: dict[str, Webhook] = {}
        self.deliveries: list[Delivery] = []
        self.transition_log: list[tuple[str, str, str]] = []  # (issue key, transition id, actor)
        self._ids = itertools.count(10000)
        self._keys: dict[str, itertools.count[int]] = {}

    def next_id(self) -> str:
        with self.lock:
            return str(next(self._ids))

    def now(self) -> str:
        return jira_time(self.clock())

    # --- setup -------------------------------------------------------------------------------------------

    def add_user(
        self,
        display_name: str,
        *,
        account_id: str | None = None,
        name: str | None = None,
        email: str | None = None,
        api_token: str | None = None,
        pat: str | None = None,
        groups: Iterable[str] = (),
    ) -> User:
        with self.lock:
            handle = name or display_name.lower().replace(" ", ".")
            account = account_id or f"5b10ac8d82e05b22cc7d{int(self.next_id()):04x}"
            user = User(
                account, display_name, handle, email or f"{handle}@example.com", api_token, pat, set(groups)
            )
            self.users[account] = user
            return user

    def add_project(self, key: str, name: str) -> Project:
        with self.lock:
            project = Project(self.next_id(), key, name)
            self.projects[key] = project
            self._keys[key] = itertools.count(1)
            return project

    def add_component(self, project_key: str, name: str) -> str:
        """Give a project a component (like Jira's project settings); returns its id."""
        with self.lock:
            project = self.projects[project_key]
            if name not in project.components:
                project.components[name] = self.next_id()
            return project.components[name]

    def set_components(self, key: str, names: Iterable[str]) -> None:
        """Set an issue's components (a sandbox seed, no webhook); each must be one of its project's."""
        with self.lock:
            issue = self.issue(key)
            known = self.projects[issue.project_key].components
            wanted = list(dict.fromkeys(names))
            unknown = next((n for n in wanted if n not in known), None)
            if unknown is not None:
                raise SimError(400, "", {"components": f"Component name '{unknown}' is not valid"})
            issue.components = wanted

    def add_issue(
        self,
        project_key: str,
        summary: str,
        description: str | None,
        *,
        reporter: str,
        labels: Iterable[str] = (),
    ) -> Issue:
        with self.lock:
            key = f"{project_key}-{next(self._keys[project_key])}"
            now = self.now()
            issue = Issue(
                self.next_id(),
                key,
                project_key,
                summary,
                description,
                reporter,
                now,
                now,
                labels=list(labels),
            )
            self.issues[key] = issue
            return issue

    def add_link(self, outward: str, inward: str, type_name: str = "Blocks") -> Link:
        with self.lock:
            link_type = next(t for t in LINK_TYPES if t.name == type_name)
            link = Link(self.next_id(), link_type.id, outward, inward)
            self.links.append(link)
            return link

    # --- lookups ------------------------------------------------------------------------------------------

    def find_user(self, ref: str | None) -> User | None:
        """By Cloud account id, Data Center name/key, or email."""
        with self.lock:
            if ref in self.users:
                return self.users[ref]
            return next((u for u in self.users.values() if ref in (u.name, u.email)), None)

    def user(self, ref: str | None) -> User:
        user = self.find_user(ref)
        if user is None:
            raise SimError(404, f"The user with account ID '{ref}' does not exist")
        return user

    def authenticate(self, authorization: str | None) -> User | None:
        """Basic `user:api-token` (Cloud email or DC name) or `Bearer <PAT>`; compares in constant time."""
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() == "bearer":
            return next((u for u in list(self.users.values()) if _same(u.pat, credentials.strip())), None)
        if scheme.lower() != "basic":
            return None
        try:
            login, _, secret = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        user = self.find_user(login)
        return user if user is not None and _same(user.api_token, secret) else None

    def issue(self, key_or_id: str) -> Issue:
        with self.lock:
            found = self.issues.get(key_or_id) or next(
                (i for i in self.issues.values() if i.id == key_or_id), None
            )
        if found is None:
            raise SimError(404, "Issue does not exist or you do not have permission to see it.")
        return found

    def comment(self, issue: Issue, comment_id: str) -> Comment:
        found = next((c for c in issue.comments if c.id == comment_id), None)
        if found is None:
            raise SimError(404, f"Can not find a comment for the id: {comment_id}.")
        return found

    def search(self, query: str) -> list[Issue]:
        try:
            with self.lock:
                return [i for i in self.issues.values() if jql.matches(query, i)]
        except jql.JqlError as exc:
            raise SimError(400, str(exc)) from None

    def links_of(self, key: str) -> list[Link]:
        with self.lock:
            return [link for link in self.links if key in (link.outward, link.inward)]

    def available_transitions(self, issue: Issue) -> list[Transition]:
        return [t for t in TRANSITIONS if t.to_status != issue.status_id]

    # --- mutations ---------------------------------------------------------------------------------------

    def add_comment(self, key: str, author: User, body: str) -> tuple[Comment, list[Change]]:
        if not body.strip():
            raise SimError(400, "", {"comment": "Comment body can not be empty!"})
        with self.changed:
            issue = self.issue(key)
            now = self.now()
            comment = Comment(self.next_id(), issue.key, author.account_id, body, now, now, author.account_id)
            issue.comments.append(comment)
            issue.updated = now
            self.changed.notify_all()
        changes = [Change("comment_created", issue.key, author.account_id, comment_id=comment.id)]
        if self.emit_issue_commented:
            changes.append(
                Change(
                    "issue_updated", issue.key, author.account_id, "issue_commented", comment_id=comment.id
                )
            )
        return comment, changes

    def edit_comment(self, key: str, comment_id: str, actor: User, body: str) -> tuple[Comment, list[Change]]:
        with self.changed:
            issue = self.issue(key)
            comment = self.comment(issue, comment_id)
            if comment.author != actor.account_id:
                raise SimError(403, "You do not have the permission to edit this comment.")
            comment.body, comment.updated, comment.update_author = body, self.now(), actor.account_id
            self.changed.notify_all()
        changes = [Change("comment_updated", issue.key, actor.account_id, comment_id=comment.id)]
        if self.emit_issue_commented:
            changes.append(
                Change(
                    "issue_updated",
                    issue.key,
                    actor.account_id,
                    "issue_comment_edited",
                    comment_id=comment.id,
                )
            )
        return comment, changes

    def update_labels(
        self,
        key: str,
        actor: User,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        set_to: list[str] | None = None,
    ) -> list[Change]:
        wanted = [*add, *remove, *(set_to or [])]
        bad = next((label for label in wanted if not label or any(ch.isspace() for ch in label)), None)
        if bad is not None:
            raise SimError(400, "", {"labels": f"The label '{bad}' contains spaces which is invalid."})
        with self.changed:
            issue = self.issue(key)
            before = list(issue.labels)
            labels = list(set_to) if set_to is not None else list(before)
            labels += [label for label in add if label not in labels]
            labels = [label for label in labels if label not in set(remove)]
            if sorted(labels) == sorted(before):
                return []
            issue.labels, issue.updated = labels, self.now()
            self.changed.notify_all()
        item = ChangeItem("labels", None, " ".join(sorted(before)), None, " ".join(sorted(labels)))
        return [
            Change("issue_updated", issue.key, actor.account_id, items=(item,), changelog_id=self.next_id())
        ]

    def set_text_fields(self, key: str, actor: User, values: dict[str, str | None]) -> list[Change]:
        """PUT issue `fields` for `summary` / `description`."""
        items = []
        with self.changed:
            issue = self.issue(key)
            for name in ("summary", "description"):
                if name in values and values[name] != getattr(issue, name):
                    items.append(ChangeItem(name, None, getattr(issue, name), None, values[name]))
                    setattr(issue, name, values[name])
            if not items:
                return []
            issue.updated = self.now()
            self.changed.notify_all()
        return [
            Change(
                "issue_updated", issue.key, actor.account_id, items=tuple(items), changelog_id=self.next_id()
            )
        ]

    def transition(self, key: str, actor: User, transition_id: str) -> list[Change]:
        with self.changed:
            issue = self.issue(key)
            chosen = next((t for t in self.available_transitions(issue) if t.id == transition_id), None)
            if chosen is None:
                raise SimError(400, f"Transition id '{transition_id}' is not valid for this issue.")
            before, after = status_by_id(issue.status_id), status_by_id(chosen.to_status)
            issue.status_id, issue.updated = after.id, self.now()
            self.transition_log.append((issue.key, chosen.id, actor.account_id))
            self.changed.notify_all()
        item = ChangeItem("status", before.id, before.name, after.id, after.name)
        return [
            Change(
                "issue_updated",
                issue.key,
                actor.account_id,
                "issue_generic",
                (item,),
                changelog_id=self.next_id(),
            )
        ]

    # --- webhooks ----------------------------------------------------------------------------------------

    def register_webhook(
        self,
        name: str,
        url: str,
        events: list[str],
        *,
        jql_filter: str | None = None,
        secret: str | None = None,
        exclude_body: bool = False,
    ) -> Webhook:
        if not url.startswith(("http://", "https://")):
            raise SimError(400, "", {"url": "The webhook URL must be an http(s) URL."})
        if jql_filter:
            self.search(jql_filter)  # validates the filter (400 on unsupported JQL)
        with self.lock:
            hook = Webhook(self.next_id(), name, url, list(events), jql_filter, secret, exclude_body)
            self.webhooks[hook.id] = hook
            return hook

    def record_delivery(self, delivery: Delivery) -> None:
        with self.changed:
            self.deliveries.append(delivery)
            self.changed.notify_all()

    def settle(self, delivery: Delivery, outcome: DeliveryState, attempt: Attempt | None = None) -> None:
        """Record one delivery attempt and its outcome, and wake threads waiting in `wait_for`."""
        with self.changed:
            if attempt is not None:
                delivery.attempts.append(attempt)
            delivery.state = outcome
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block (another thread) until `predicate()` holds or `timeout` seconds pass."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)
