"""REST v4 response bodies with GitLab's documented field names (doc/api/*.md), built from state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.sandbox.gitlab_sim.model import (
    AwardEmoji,
    Discussion,
    Hook,
    Issue,
    MergeRequest,
    Note,
    Project,
    User,
)
from bot.sandbox.gitlab_sim.repo import Commit, FileChange
from bot.sandbox.gitlab_sim.state import GitLabState

VISIBILITY = "private"


@dataclass(frozen=True)
class MrGit:
    """What the repository says about a merge request right now."""

    head_sha: str | None
    base_sha: str | None
    start_sha: str | None
    changes_count: int | None


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def user_basic(state: GitLabState, user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "state": "active",
        "locked": False,
        "avatar_url": None,
        "web_url": f"{state.instance_url}/{user.username}",
    }


def current_user(state: GitLabState, user: User) -> dict[str, Any]:
    return {
        **(user_basic(state, user) or {}),
        "email": user.email,
        "public_email": None,
        "bot": user.bot,
        "is_admin": False,
        "created_at": "2024-01-01T00:00:00.000Z",
        "two_factor_enabled": False,
        "external": False,
    }


def project(state: GitLabState, p: Project) -> dict[str, Any]:
    web_url = f"{state.instance_url}/{p.path_with_namespace}"
    return {
        "id": p.id,
        "description": p.description,
        "name": p.name,
        "name_with_namespace": p.path_with_namespace.replace("/", " / "),
        "path": p.name,
        "path_with_namespace": p.path_with_namespace,
        "created_at": iso(p.created_at),
        "default_branch": p.default_branch,
        "ssh_url_to_repo": f"git@sandbox:{p.path_with_namespace}.git",
        "http_url_to_repo": f"{web_url}.git",
        "web_url": web_url,
        "visibility": VISIBILITY,
        "archived": False,
        "namespace": {
            "id": p.id,
            "name": p.namespace,
            "path": p.namespace,
            "kind": "group",
            "full_path": p.namespace,
            "web_url": f"{state.instance_url}/{p.namespace}",
        },
    }


def member(state: GitLabState, user: User, access_level: int) -> dict[str, Any]:
    return {**(user_basic(state, user) or {}), "access_level": access_level, "expires_at": None}


def mr_web_url(state: GitLabState, p: Project, iid: int) -> str:
    return f"{state.instance_url}/{p.path_with_namespace}/-/merge_requests/{iid}"


def merge_request(
    state: GitLabState, p: Project, mr: MergeRequest, git: MrGit, *, single: bool = False
) -> dict[str, Any]:
    author = user_basic(state, state.users.get(mr.author_id))
    discussions = state.discussions_of(mr)
    blocking = [state.notes[d.note_ids[0]] for d in discussions]
    body: dict[str, Any] = {
        "id": mr.id,
        "iid": mr.iid,
        "project_id": p.id,
        "title": mr.title,
        "description": mr.description,
        "state": mr.state,
        "imported": False,
        "imported_from": "none",
        "created_at": iso(mr.created_at),
        "updated_at": iso(mr.updated_at),
        "merged_by": None,
        "merge_user": None,
        "merged_at": None,
        "merge_after": None,
        "prepared_at": iso(mr.created_at),
        "closed_by": None,
        "closed_at": None,
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "user_notes_count": len([n for n in state.notes_of(mr) if not n.system]),
        "upvotes": 0,
        "downvotes": 0,
        "author": author,
        "assignees": [],
        "assignee": None,
        "reviewers": [],
        "source_project_id": p.id,
        "target_project_id": p.id,
        "labels": list(mr.labels),
        "draft": mr.draft,
        "work_in_progress": mr.draft,
        "milestone": None,
        "merge_when_pipeline_succeeds": False,
        "merge_status": "can_be_merged",
        "detailed_merge_status": "draft_status"
        if mr.draft
        else ("mergeable" if mr.state == "opened" else "not_open"),
        "sha": git.head_sha or mr.head_sha,
        "merge_commit_sha": mr.merge_commit_sha,
        "squash_commit_sha": None,
        "discussion_locked": None,
        "should_remove_source_branch": None,
        "force_remove_source_branch": False,
        "reference": f"!{mr.iid}",
        "references": {
            "short": f"!{mr.iid}",
            "relative": f"!{mr.iid}",
            "full": f"{p.path_with_namespace}!{mr.iid}",
        },
        "web_url": mr_web_url(state, p, mr.iid),
        "time_stats": {
            "time_estimate": 0,
            "total_time_spent": 0,
            "human_time_estimate": None,
            "human_total_time_spent": None,
        },
        "squash": False,
        "task_completion_status": {"count": 0, "completed_count": 0},
        "has_conflicts": False,
        "blocking_discussions_resolved": all(n.resolved or not n.resolvable for n in blocking),
    }
    if single:
        body |= {
            "subscribed": False,
            "changes_count": None if git.changes_count is None else str(git.changes_count),
            "latest_build_started_at": None,
            "latest_build_finished_at": None,
            "first_deployed_to_production_at": None,
            "pipeline": None,
            "head_pipeline": None,
            "diff_refs": {"base_sha": git.base_sha, "head_sha": git.head_sha, "start_sha": git.start_sha},
            "merge_error": None,
            "first_contribution": False,
            "user": {"can_merge": True},
            "approvals_before_merge": None,
        }
    return body


def file_change(change: FileChange) -> dict[str, Any]:
    return {
        "old_path": change.old_path,
        "new_path": change.new_path,
        "a_mode": change.a_mode,
        "b_mode": change.b_mode,
        "diff": change.diff,
        "new_file": change.new_file,
        "renamed_file": change.renamed_file,
        "deleted_file": change.deleted_file,
        "generated_file": False,
        "collapsed": False,
        "too_large": False,
    }


def note(state: GitLabState, n: Note) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": n.id,
        "type": n.type,
        "body": n.body,
        "attachment": None,
        "author": user_basic(state, state.users.get(n.author_id)),
        "created_at": iso(n.created_at),
        "updated_at": iso(n.updated_at),
        "system": n.system,
        "noteable_id": n.noteable_id,
        "noteable_type": n.noteable_type,
        "project_id": n.project_id,
        "noteable_iid": n.noteable_iid,
        "resolvable": n.resolvable,
        "confidential": False,
        "internal": False,
        "imported": False,
        "imported_from": "none",
    }
    if n.resolvable:
        body |= {
            "resolved": n.resolved,
            "resolved_by": user_basic(state, state.users.get(n.resolved_by_id or 0)),
            "resolved_at": iso(n.resolved_at),
        }
    if n.position is not None:
        body |= {"position": n.position, "commit_id": n.position.get("head_sha")}
    return body


def discussion(state: GitLabState, d: Discussion) -> dict[str, Any]:
    return {
        "id": d.id,
        "individual_note": d.individual_note,
        "notes": [note(state, state.notes[i]) for i in d.note_ids],
    }


def award(state: GitLabState, a: AwardEmoji) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "user": user_basic(state, state.users.get(a.user_id)),
        "created_at": iso(a.created_at),
        "updated_at": iso(a.created_at),
        "awardable_id": a.awardable_id,
        "awardable_type": a.awardable_type,
    }


def hook(h: Hook) -> dict[str, Any]:
    """A project hook; like GitLab, the secret token is never returned."""
    return {
        "id": h.id,
        "url": h.url,
        "project_id": h.project_id,
        "push_events": h.push_events,
        "issues_events": h.issues_events,
        "merge_requests_events": h.merge_requests_events,
        "note_events": h.note_events,
        "pipeline_events": h.pipeline_events,
        "job_events": h.job_events,
        "enable_ssl_verification": h.enable_ssl_verification,
        "alert_status": "executable",
        "created_at": iso(h.created_at),
    }


def commit(state: GitLabState, p: Project, c: Commit) -> dict[str, Any]:
    return {
        "id": c.id,
        "short_id": c.id[:8],
        "created_at": c.committed_date,
        "parent_ids": list(c.parent_ids),
        "title": c.title,
        "message": c.message,
        "author_name": c.author_name,
        "author_email": c.author_email,
        "authored_date": c.authored_date,
        "committer_name": c.committer_name,
        "committer_email": c.committer_email,
        "committed_date": c.committed_date,
        "web_url": f"{state.instance_url}/{p.path_with_namespace}/-/commit/{c.id}",
    }


def branch(state: GitLabState, p: Project, name: str, c: Commit) -> dict[str, Any]:
    return {
        "name": name,
        "merged": False,
        "protected": name == p.default_branch,
        "default": name == p.default_branch,
        "developers_can_push": name != p.default_branch,
        "developers_can_merge": name != p.default_branch,
        "can_push": True,
        "web_url": f"{state.instance_url}/{p.path_with_namespace}/-/tree/{name}",
        "commit": commit(state, p, c),
    }


def issue(state: GitLabState, p: Project, i: Issue) -> dict[str, Any]:
    return {
        "id": i.id,
        "iid": i.iid,
        "project_id": p.id,
        "title": i.title,
        "description": i.description,
        "state": i.state,
        "created_at": iso(i.created_at),
        "web_url": f"{state.instance_url}/{p.path_with_namespace}/-/issues/{i.iid}",
    }
