"""Ports: what the workflows use of the outside world, as narrow `typing.Protocol`s grouped by role.

Orchestrators depend on these, never on the concrete adapters: `Clients` (orchestrators/resources.py)
types its fields with the composites at the bottom, and the adapters satisfy them structurally (mypy
proves it where shell/wiring.py builds `Clients` from `GitLabClient`, `JiraClient`, `Workspace`,
`StoreEffectLedger` and bot/knowledge's `Knowledge`). The recording fakes in tests/support/fakes.py
implement the same Protocols.

Every signature is exactly the adapter's. Writes take an `effect_key` and happen once per key: the
adapter records the key in the ledger and ends the posted text with the hidden marker
(`bot/effects.py`), so a retried job adopts an earlier post instead of posting again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from bot.clients.gitlab import (
    Discussion,
    GitLabUser,
    Job,
    MergeRequest,
    MergeRequestDiff,
    Pipeline,
    Project,
    ProjectRef,
)
from bot.clients.jira import JiraConfig, JiraIssue
from bot.effects import EffectLedger
from bot.git.diffstat import DiffStat
from bot.git.workspace import Arriving, Secret
from bot.knowledge import Hit, Page

# --- GitLab ---------------------------------------------------------------------------------------


class Repositories(Protocol):
    """A GitLab project and its branches (reads)."""

    async def project(self, project: ProjectRef) -> Project: ...

    async def branch_head(self, project: ProjectRef, branch: str) -> str | None:
        """The SHA at the head of `branch`; None when the branch does not exist."""
        ...


class MergeRequests(Protocol):
    """Read a merge request and its diff; open one (exactly once per effect key)."""

    async def merge_request(self, project: ProjectRef, iid: int) -> MergeRequest: ...

    async def mr_diff(self, project: ProjectRef, iid: int) -> MergeRequestDiff: ...

    async def create_merge_request(
        self,
        project: ProjectRef,
        source_branch: str,
        target_branch: str,
        title: str,
        description: str,
        labels: Iterable[str],
        draft: bool,
        effect_key: str,
        *,
        run_id: str | None = None,
    ) -> MergeRequest: ...


class Access(Protocol):
    """Who the bot is and what a member may do on a project."""

    async def bot_user(self) -> GitLabUser: ...

    async def member_access_level(self, project: ProjectRef, user_id: int) -> int:
        """The effective access level; 0 when the user is not a member."""
        ...


class Threads(Protocol):
    """Merge request discussions: read them, reply once per effect key, resolve."""

    async def discussions(self, project: ProjectRef, iid: int) -> list[Discussion]: ...

    async def reply_in_discussion(
        self,
        project: ProjectRef,
        iid: int,
        discussion_id: str,
        body: str,
        effect_key: str,
        *,
        run_id: str | None = None,
    ) -> int: ...

    async def resolve_discussion(
        self, project: ProjectRef, iid: int, discussion_id: str, *, resolved: bool = True
    ) -> None: ...


class Notes(Protocol):
    """Notes on the merge request itself: post once, edit in place, award an emoji once."""

    async def post_note(
        self, project: ProjectRef, iid: int, body: str, effect_key: str, *, run_id: str | None = None
    ) -> int: ...

    async def edit_note(
        self, project: ProjectRef, iid: int, note_id: int, body: str, *, effect_key: str | None = None
    ) -> None: ...

    async def award_emoji(
        self,
        project: ProjectRef,
        iid: int,
        note_id: int | None,
        name: str,
        effect_key: str,
        *,
        run_id: str | None = None,
    ) -> int: ...


class Pipelines(Protocol):
    """CI: a pipeline, its jobs with their retry history, a job's log (tail only); start an MR thread once."""

    async def pipeline(self, project: ProjectRef, pipeline_id: int) -> Pipeline: ...

    async def latest_pipeline(self, project: ProjectRef, ref: str) -> Pipeline | None: ...

    async def pipeline_jobs(self, project: ProjectRef, pipeline_id: int) -> list[Job]: ...

    async def job_trace(self, project: ProjectRef, job_id: int, tail_bytes: int = ...) -> tuple[bytes, bool]:
        """The log's last `tail_bytes`, and whether it was longer."""
        ...

    async def start_discussion(
        self, project: ProjectRef, iid: int, body: str, effect_key: str, *, run_id: str | None = None
    ) -> str:
        """A new thread on the MR (its discussion id), once per effect key."""
        ...


# --- Jira -----------------------------------------------------------------------------------------


class Tickets(Protocol):
    """Read a Jira ticket; `config.url` builds the ticket's browse links."""

    @property
    def config(self) -> JiraConfig: ...

    async def issue(self, key: str) -> JiraIssue: ...


class Comments(Protocol):
    """Comments on a ticket: post once per effect key, edit in place (the status comment)."""

    async def add_comment(
        self, key: str, body: str, effect_key: str, *, run_id: str | None = None
    ) -> str: ...

    async def edit_comment(self, key: str, comment_id: str, body: str) -> None: ...


class Groups(Protocol):
    """Jira group membership (who may approve or use a command)."""

    async def user_in_group(self, account: str, group: str) -> bool: ...


# --- the git workspace ----------------------------------------------------------------------------


class Worktrees(Protocol):
    """A mirror per repository, a worktree per run."""

    async def ensure_mirror(self, repo_id: str, remote_url: str, token: Secret | None) -> Path: ...

    async def create_worktree(
        self,
        repo_id: str,
        run_id: str,
        base_ref: str,
        branch: str,
        *,
        sparse: Sequence[str] = (),
        arriving: Arriving | None = None,
    ) -> Path: ...

    async def read_at(self, repo_id: str, base_ref: str, path: str) -> str | None: ...

    async def remove_worktree(self, run_id: str, *, keep_branch: bool = False) -> None: ...


class Commits(Protocol):
    """Commit the worktree, read its HEAD, push exactly an approved SHA (HeadMoved if HEAD moved)."""

    async def commit_all(self, worktree: Path, message: str) -> str: ...

    async def head(self, worktree: Path) -> str: ...

    async def tree_of(self, worktree: Path, commit: str) -> str: ...

    async def push(
        self, worktree: Path, remote_url: str, branch: str, token: Secret | None, expected_sha: str
    ) -> None: ...


class Diffs(Protocol):
    """The worktree's changes since it left `base` (committed or not); with `at`, those of that commit
    or `snapshot` of the worktree (its tree is read instead of the working tree's)."""

    async def snapshot(self, worktree: Path) -> str: ...

    async def diff(self, worktree: Path, base: str, *, at: str | None = None) -> str: ...

    async def diffstat(self, worktree: Path, base: str, *, at: str | None = None) -> DiffStat: ...


# --- the team's knowledge base --------------------------------------------------------------------


class WikiPages(Protocol):
    """Reading one page of the wiki (bot/knowledge/wiki.py `Wiki`)."""

    async def get(self, path: str, at: str | None = None) -> Page | None:
        """The page at `path`; None when there is none, PageError when the path or page is invalid."""
        ...


class Knowledge(Protocol):
    """The wiki and its search index (bot/knowledge `Knowledge`): facts for briefs, close matches for a
    page name, writes (one commit each). Callers treat any error as "knowledge unavailable"."""

    @property
    def wiki(self) -> WikiPages: ...

    async def relevant(self, text: str, modules: Sequence[str], budget_tokens: int) -> list[Page]:
        """The pages a brief about `text` touching `modules` should show, within `budget_tokens`."""
        ...

    async def search(self, text: str, modules: Sequence[str] = (), limit: int = 8) -> list[Hit]: ...

    async def land(self, pages: Sequence[Page], message: str, author: str = "Baton") -> str:
        """Commit `pages` (nothing when unchanged); the commit SHA."""
        ...

    async def verify(self, path: str, who: str) -> Page:
        """Mark the page `verified` by `who` and commit it; PageError when there is no such page."""
        ...


# --- what `Clients` must provide ------------------------------------------------------------------


class GitLab(Repositories, MergeRequests, Access, Threads, Notes, Pipelines, Protocol):
    """`Clients.gitlab` (bot/clients/gitlab.py `GitLabClient`)."""

    def close(self) -> None: ...


class Jira(Tickets, Comments, Groups, Protocol):
    """`Clients.jira` (bot/clients/jira.py `JiraClient`)."""


class Git(Worktrees, Commits, Diffs, Protocol):
    """`Clients.workspace` (bot/git/workspace.py `Workspace`)."""


Ledger = EffectLedger
"""`Clients.ledger` (bot/store/effects.py `StoreEffectLedger`): the effect records, the port that
bot/effects.py already defines (get; begin and complete for the clients' exactly-once writes)."""

__all__ = [
    "Access",
    "Comments",
    "Commits",
    "Diffs",
    "Git",
    "GitLab",
    "Groups",
    "Jira",
    "Knowledge",
    "Ledger",
    "MergeRequests",
    "Notes",
    "Pipelines",
    "Repositories",
    "Threads",
    "Tickets",
    "WikiPages",
    "Worktrees",
]
