"""In-memory GitLab state: every record the simulator holds, changed under one lock."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from bot.sandbox.gitlab_sim.ci_model import CiRecords
from bot.sandbox.gitlab_sim.faults import FaultPlan
from bot.sandbox.gitlab_sim.model import (
    ISSUE,
    MERGE_REQUEST,
    NO_ACCESS,
    Attempt,
    AwardEmoji,
    Delivery,
    Discussion,
    Hook,
    Issue,
    MergeRequest,
    Note,
    Project,
    SimError,
    User,
    new_discussion_id,
    not_found,
    now,
)

T = TypeVar("T")


class GitLabState:
    """Everything the simulator knows; every mutation happens under one lock."""

    def __init__(self, instance_url: str = "http://gitlab.sandbox") -> None:
        self.instance_url = instance_url
        self.users: dict[int, User] = {}
        self.projects: dict[int, Project] = {}
        self.merge_requests: dict[int, MergeRequest] = {}
        self.issues: dict[int, Issue] = {}
        self.notes: dict[int, Note] = {}
        self.discussions: dict[str, Discussion] = {}
        self.awards: dict[int, AwardEmoji] = {}
        self.hooks: dict[int, Hook] = {}
        self.deliveries: list[Delivery] = []
        self.faults = FaultPlan()
        self.ci = CiRecords()  # pipelines and jobs (bot/sandbox/gitlab_sim/ci_model.py)
        self.webhook_timeout_s = 10.0
        self.webhook_retry_delays_s: tuple[float, ...] = (0.05, 0.2, 0.5)
        self._ids: dict[str, int] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)

    # -- ids, locking, waiting -------------------------------------------------------------

    def next_id(self, kind: str, start: int = 1) -> int:
        with self._lock:
            value = self._ids.get(kind, start - 1) + 1
            self._ids[kind] = value
            return value

    def locked(self, fn: Callable[[], T]) -> T:
        """Run `fn` under the state lock and wake anyone waiting for a change."""
        with self._changed:
            result = fn()
            self._changed.notify_all()
            return result

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Block (bounded) until `predicate()` is truthy; returns its value or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("condition not met in time")
                self._changed.wait(min(remaining, 0.05))

    # -- users and projects ------------------------------------------------------------------

    def add_user(
        self, username: str, *, name: str | None = None, bot: bool = False, token: str | None = None
    ) -> User:
        user = User(
            id=self.next_id("user"),
            username=username,
            name=name or username.replace("-", " ").title(),
            email=f"{username}@example.com",
            token=token or f"glpat-{secrets.token_urlsafe(18)}",
            bot=bot,
        )
        return self.locked(lambda: self.users.setdefault(user.id, user))

    def add_project(
        self, path_with_namespace: str, repo_path: Path, *, default_branch: str = "main"
    ) -> Project:
        project = Project(self.next_id("project"), path_with_namespace, default_branch, repo_path)
        return self.locked(lambda: self.projects.setdefault(project.id, project))

    def add_member(self, project: Project, user: User, access_level: int) -> None:
        self.locked(lambda: project.members.__setitem__(user.id, access_level))

    def add_issue(self, project: Project, title: str, *, author: User | None = None) -> Issue:
        iid = self.next_id(f"issue-iid:{project.id}")
        issue = Issue(self.next_id("issue"), iid, project.id, title, author_id=author.id if author else 0)
        return self.locked(lambda: self.issues.setdefault(issue.id, issue))

    def user_by_token(self, token: str) -> User | None:
        """Constant-time comparison against every token (no early exit on a match)."""
        found: User | None = None
        for user in list(self.users.values()):
            if secrets.compare_digest(user.token.encode(), token.encode()):
                found = user
        return found

    def user_named(self, username: str) -> User:
        with self._lock:
            for user in self.users.values():
                if user.username == username:
                    return user
        raise not_found("User")

    def project(self, ref: str | int) -> Project:
        """A project by numeric id or by full path."""
        text = str(ref)
        with self._lock:
            for project in self.projects.values():
                if str(project.id) == text or project.path_with_namespace == text:
                    return project
        raise not_found("Project")

    def project_at(self, repo_path: Path) -> Project | None:
        """The project whose bare repository is `repo_path`."""
        wanted = repo_path.resolve()
        with self._lock:
            return next((p for p in self.projects.values() if p.repo_path.resolve() == wanted), None)

    def access_level(self, project: Project, user: User) -> int:
        return project.members.get(user.id, NO_ACCESS)

    # -- merge requests and issues -------------------------------------------------------------

    def merge_request(self, project: Project, iid: int) -> MergeRequest:
        with self._lock:
            for mr in self.merge_requests.values():
                if mr.project_id == project.id and mr.iid == iid:
                    return mr
        raise not_found("Merge Request")

    def merge_requests_of(self, project: Project) -> list[MergeRequest]:
        with self._lock:
            return [mr for mr in self.merge_requests.values() if mr.project_id == project.id]

    def issue(self, project: Project, iid: int) -> Issue:
        with self._lock:
            for issue in self.issues.values():
                if issue.project_id == project.id and issue.iid == iid:
                    return issue
        raise not_found("Issue")

    def record_head(self, project: Project, branch: str, head: str) -> list[tuple[MergeRequest, str | None]]:
        """Note that `branch` now points at `head`; returns the open MRs that moved, with their old head."""

        def update() -> list[tuple[MergeRequest, str | None]]:
            moved = []
            for mr in self.merge_requests.values():
                on_branch = (mr.project_id, mr.source_branch, mr.state) == (project.id, branch, "opened")
                if on_branch and mr.head_sha != head:
                    moved.append((mr, mr.head_sha))
                    mr.head_sha = head
            return moved

        return self.locked(update)

    def create_merge_request(self, project: Project, author: User, fields: dict[str, Any]) -> MergeRequest:
        def create() -> MergeRequest:
            source, target = fields["source_branch"], fields["target_branch"]
            for other in self.merge_requests.values():
                same = (other.project_id, other.source_branch, other.target_branch) == (
                    project.id,
                    source,
                    target,
                )
                if same and other.state == "opened":
                    raise SimError(
                        409, f"Another open merge request already exists for this source branch: !{other.iid}"
                    )
            mr = MergeRequest(
                id=self.next_id("mr", 1000),
                iid=self.next_id(f"mr-iid:{project.id}"),
                project_id=project.id,
                title=fields["title"],
                description=fields.get("description") or "",
                source_branch=source,
                target_branch=target,
                author_id=author.id,
                labels=list(fields.get("labels") or []),
                draft=bool(fields.get("draft")),
                head_sha=fields.get("head_sha"),
            )
            self.merge_requests[mr.id] = mr
            return mr

        return self.locked(create)

    # -- notes and discussions -----------------------------------------------------------------

    def add_note(
        self,
        project: Project,
        noteable: MergeRequest | Issue,
        author: User,
        body: str,
        *,
        thread: bool = False,
        position: dict[str, Any] | None = None,
    ) -> Note:
        """A new top-level note: a plain comment, or the first note of a thread (`thread`/`position`)."""
        kind = MERGE_REQUEST if isinstance(noteable, MergeRequest) else ISSUE
        note_type = "DiffNote" if position else ("DiscussionNote" if thread else None)

        def create() -> Note:
            discussion = Discussion(
                new_discussion_id(), project.id, kind, noteable.iid, individual_note=note_type is None
            )
            note = Note(
                id=self.next_id("note", 500),
                project_id=project.id,
                noteable_type=kind,
                noteable_id=noteable.id,
                noteable_iid=noteable.iid,
                author_id=author.id,
                body=body,
                discussion_id=discussion.id,
                type=note_type,
                position=position,
            )
            discussion.note_ids.append(note.id)
            self.discussions[discussion.id] = discussion
            self.notes[note.id] = note
            return note

        return self.locked(create)

    def reply(self, discussion: Discussion, author: User, body: str) -> Note:
        """A reply in a thread; replying to a plain comment turns it into a thread, as GitLab does."""

        def create() -> Note:
            first = self.notes[discussion.note_ids[0]]
            if discussion.individual_note:
                discussion.individual_note = False
                for note_id in discussion.note_ids:
                    self.notes[note_id].type = "DiscussionNote"
            note = Note(
                id=self.next_id("note", 500),
                project_id=first.project_id,
                noteable_type=first.noteable_type,
                noteable_id=first.noteable_id,
                noteable_iid=first.noteable_iid,
                author_id=author.id,
                body=body,
                discussion_id=discussion.id,
                type=first.type or "DiscussionNote",
                position=first.position,
            )
            discussion.note_ids.append(note.id)
            self.notes[note.id] = note
            return note

        return self.locked(create)

    def edit_note(self, note: Note, body: str) -> Note:
        def edit() -> Note:
            note.body = body
            note.updated_at = now()
            return note

        return self.locked(edit)

    def resolve(self, discussion: Discussion, user: User, resolved: bool) -> Discussion:
        def apply() -> Discussion:
            notes = [self.notes[i] for i in discussion.note_ids]
            if not any(n.resolvable for n in notes):
                raise SimError(400, "400 Bad request - discussion is not resolvable")
            for note in notes:
                if note.resolvable:
                    note.resolved = resolved
                    note.resolved_by_id = user.id if resolved else None
                    note.resolved_at = now() if resolved else None
            return discussion

        return self.locked(apply)

    def discussion(self, project: Project, noteable: MergeRequest | Issue, discussion_id: str) -> Discussion:
        found = self.discussions.get(discussion_id)
        if found is None or found.project_id != project.id or found.noteable_iid != noteable.iid:
            raise not_found("Discussion")
        return found

    def notes_of(self, noteable: MergeRequest | Issue) -> list[Note]:
        kind = MERGE_REQUEST if isinstance(noteable, MergeRequest) else ISSUE
        with self._lock:
            return [
                n for n in self.notes.values() if n.noteable_type == kind and n.noteable_id == noteable.id
            ]

    def discussions_of(self, noteable: MergeRequest | Issue) -> list[Discussion]:
        kind = MERGE_REQUEST if isinstance(noteable, MergeRequest) else ISSUE
        with self._lock:
            found = [
                d
                for d in self.discussions.values()
                if d.noteable_type == kind
                and d.noteable_iid == noteable.iid
                and d.project_id == noteable.project_id
            ]
        return sorted(found, key=lambda d: d.note_ids[0])

    # -- award emoji ---------------------------------------------------------------------------

    def award(self, awardable_type: str, awardable_id: int, user: User, name: str) -> AwardEmoji:
        def create() -> AwardEmoji:
            for other in self.awards.values():
                if (other.awardable_type, other.awardable_id, other.user_id, other.name) == (
                    awardable_type,
                    awardable_id,
                    user.id,
                    name,
                ):
                    raise SimError(404, "404 Award Emoji Name has already been taken Not Found")
            award = AwardEmoji(self.next_id("award"), name, user.id, awardable_type, awardable_id)
            self.awards[award.id] = award
            return award

        return self.locked(create)

    def awards_on(self, awardable_type: str, awardable_id: int) -> list[AwardEmoji]:
        with self._lock:
            return [
                a
                for a in self.awards.values()
                if (a.awardable_type, a.awardable_id) == (awardable_type, awardable_id)
            ]

    # -- hooks and deliveries --------------------------------------------------------------------

    def add_hook(
        self, project: Project, url: str, *, token: str = "", events: Mapping[str, bool] | None = None
    ) -> Hook:
        """Register a project hook; `events` sets flags such as `note_events`, `merge_requests_events`."""
        flags = dict(events or {})
        hook = Hook(
            self.next_id("hook"),
            project.id,
            url,
            token,
            uuid=str(uuid.uuid4()),
            push_events=flags.get("push_events", True),
            note_events=flags.get("note_events", False),
            merge_requests_events=flags.get("merge_requests_events", False),
            issues_events=flags.get("issues_events", False),
            pipeline_events=flags.get("pipeline_events", False),
            job_events=flags.get("job_events", False),
            enable_ssl_verification=flags.get("enable_ssl_verification", True),
        )
        return self.locked(lambda: self.hooks.setdefault(hook.id, hook))

    def hooks_of(self, project_id: int) -> list[Hook]:
        with self._lock:
            return [h for h in self.hooks.values() if h.project_id == project_id]

    def hooks_for(self, project_id: int, event_flag: str) -> list[Hook]:
        with self._lock:
            return [h for h in self.hooks.values() if h.project_id == project_id and getattr(h, event_flag)]

    def record_delivery(self, delivery: Delivery) -> None:
        self.locked(lambda: self.deliveries.append(delivery))

    def record_attempt(self, delivery: Delivery, attempt: Attempt) -> None:
        self.locked(lambda: delivery.attempts.append(attempt))

    def deliveries_of(self, event: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if event is None or d.event == event]
