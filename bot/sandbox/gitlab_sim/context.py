"""What every route handler gets: the state, the webhook sender, and git lookups off the event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.sandbox.gitlab_sim import payloads, repo
from bot.sandbox.gitlab_sim.model import Issue, MergeRequest, Note, Project, User
from bot.sandbox.gitlab_sim.render import MrGit
from bot.sandbox.gitlab_sim.state import GitLabState
from bot.sandbox.gitlab_sim.webhooks import WebhookSender


def mr_git(project: Project, mr: MergeRequest) -> MrGit:
    """Head, merge base and target head of a merge request, read from the bare repository (blocking); a
    merged one keeps the head and base it was merged with, so its diff stays what was merged."""
    if mr.state == "merged" and mr.merged_base and mr.head_sha:
        merged = len(repo.changes(project.repo_path, mr.merged_base, mr.head_sha))
        return MrGit(
            head_sha=mr.head_sha, base_sha=mr.merged_base, start_sha=mr.merged_base, changes_count=merged
        )
    head = repo.branch_head(project.repo_path, mr.source_branch) or mr.head_sha
    start = repo.branch_head(project.repo_path, mr.target_branch)
    base = repo.merge_base(project.repo_path, start, head) if head and start else None
    count = len(repo.changes(project.repo_path, base, head)) if base and head else None
    return MrGit(head_sha=head, base_sha=base, start_sha=start, changes_count=count)


def head_commit(project: Project, mr: MergeRequest) -> repo.Commit | None:
    sha = repo.branch_head(project.repo_path, mr.source_branch) or mr.head_sha
    return repo.commit_info(project.repo_path, sha) if sha else None


@dataclass(frozen=True)
class Sim:
    """The resources of one simulator instance, passed explicitly to every route factory."""

    state: GitLabState
    sender: WebhookSender

    async def mr_git(self, project: Project, mr: MergeRequest) -> MrGit:
        return await asyncio.to_thread(mr_git, project, mr)

    async def note_event(
        self,
        project: Project,
        note: Note,
        author: User,
        noteable: MergeRequest | Issue,
        action: str = "create",
    ) -> None:
        head = (
            await asyncio.to_thread(head_commit, project, noteable)
            if isinstance(noteable, MergeRequest)
            else None
        )
        body = payloads.note_hook(self.state, project, note, author, noteable, head, action)
        self.sender.emit(project.id, "Note Hook", body)

    async def mr_event(
        self, project: Project, mr: MergeRequest, actor: User, action: str, *, oldrev: str | None = None
    ) -> None:
        head = await asyncio.to_thread(head_commit, project, mr)
        body = payloads.merge_request_hook(self.state, project, mr, actor, head, action, oldrev=oldrev)
        self.sender.emit(project.id, "Merge Request Hook", body)

    async def branch_moved(self, project: Project, branch: str, actor: User | None) -> list[int]:
        """After a push: MR Hooks (`update`, with `oldrev`) for open MRs whose source branch moved."""
        head = await asyncio.to_thread(repo.branch_head, project.repo_path, branch)
        if head is None:
            return []
        moved = self.state.record_head(project, branch, head)
        for mr, old in moved:
            await self.mr_event(project, mr, actor or self.state.users[mr.author_id], "update", oldrev=old)
        return [mr.iid for mr, _ in moved]
