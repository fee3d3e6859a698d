"""Webhook bodies (Note Hook, Merge Request Hook) shaped like GitLab's recorded deliveries."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from bot.sandbox.gitlab_sim.model import Issue, MergeRequest, Note, Project, User
from bot.sandbox.gitlab_sim.render import mr_web_url
from bot.sandbox.gitlab_sim.repo import Commit
from bot.sandbox.gitlab_sim.state import GitLabState

STATE_IDS = {"opened": 1, "closed": 2, "merged": 3, "locked": 4}


def hook_time(moment: datetime | None) -> str | None:
    """GitLab's webhook timestamp format, e.g. `2023-05-25 19:04:19 UTC`."""
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def hook_user(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "username": user.username,
        "avatar_url": None,
        "email": "[REDACTED]",
    }


def hook_project(state: GitLabState, p: Project) -> dict[str, Any]:
    web_url = f"{state.instance_url}/{p.path_with_namespace}"
    ssh_url = f"git@sandbox:{p.path_with_namespace}.git"
    return {
        "id": p.id,
        "name": p.name,
        "description": p.description or None,
        "web_url": web_url,
        "avatar_url": None,
        "git_ssh_url": ssh_url,
        "git_http_url": f"{web_url}.git",
        "namespace": p.namespace,
        "visibility_level": 0,
        "path_with_namespace": p.path_with_namespace,
        "default_branch": p.default_branch,
        "ci_config_path": "",
        "homepage": web_url,
        "url": ssh_url,
        "ssh_url": ssh_url,
        "http_url": f"{web_url}.git",
    }


def repository(state: GitLabState, p: Project) -> dict[str, Any]:
    web_url = f"{state.instance_url}/{p.path_with_namespace}"
    return {
        "name": p.name,
        "url": f"git@sandbox:{p.path_with_namespace}.git",
        "description": None,
        "homepage": web_url,
    }


def label(p: Project, name: str) -> dict[str, Any]:
    label_id = int(hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:6], 16)
    return {
        "id": label_id,
        "title": name,
        "color": "#6699cc",
        "project_id": p.id,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "template": False,
        "description": None,
        "type": "ProjectLabel",
        "group_id": None,
    }


def last_commit(state: GitLabState, p: Project, c: Commit | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "id": c.id,
        "message": c.message + "\n",
        "title": c.title,
        "timestamp": c.committed_date,
        "url": f"{state.instance_url}/{p.path_with_namespace}/-/commit/{c.id}",
        "author": {"name": c.author_name, "email": c.author_email},
    }


def mr_attributes(state: GitLabState, p: Project, mr: MergeRequest, head: Commit | None) -> dict[str, Any]:
    """`merge_request` of a Note Hook, and the base of a Merge Request Hook's `object_attributes`."""
    project = hook_project(state, p)
    return {
        "assignee_id": None,
        "author_id": mr.author_id,
        "created_at": hook_time(mr.created_at),
        "description": mr.description,
        "head_pipeline_id": None,
        "id": mr.id,
        "iid": mr.iid,
        "last_edited_at": None,
        "last_edited_by_id": None,
        "merge_commit_sha": mr.merge_commit_sha,
        "merge_error": None,
        "merge_params": {"force_remove_source_branch": "0"},
        "merge_status": "can_be_merged",
        "merge_user_id": None,
        "merge_when_pipeline_succeeds": False,
        "milestone_id": None,
        "source_branch": mr.source_branch,
        "source_project_id": p.id,
        "state_id": STATE_IDS.get(mr.state, 1),
        "target_branch": mr.target_branch,
        "target_project_id": p.id,
        "time_estimate": 0,
        "title": mr.title,
        "updated_at": hook_time(mr.updated_at),
        "updated_by_id": None,
        "url": mr_web_url(state, p, mr.iid),
        "source": project,
        "target": project,
        "last_commit": last_commit(state, p, head),
        "work_in_progress": mr.draft,
        "draft": mr.draft,
        "total_time_spent": 0,
        "time_change": 0,
        "human_total_time_spent": None,
        "human_time_change": None,
        "human_time_estimate": None,
        "assignee_ids": [],
        "reviewer_ids": [],
        "labels": [label(p, name) for name in mr.labels],
        "state": mr.state,
        "blocking_discussions_resolved": True,
        "first_contribution": False,
        "detailed_merge_status": "draft_status" if mr.draft else "mergeable",
    }


def _line_code(position: dict[str, Any] | None) -> str | None:
    if not position or not position.get("new_path"):
        return None
    digest = hashlib.sha1(str(position["new_path"]).encode(), usedforsecurity=False).hexdigest()
    return f"{digest}_{position.get('old_line') or ''}_{position.get('new_line') or ''}"


def note_attributes(state: GitLabState, p: Project, n: Note, action: str) -> dict[str, Any]:
    kind = "merge_requests" if n.noteable_type == "MergeRequest" else "issues"
    return {
        "attachment": None,
        "author_id": n.author_id,
        "change_position": None,
        "commit_id": n.position.get("head_sha") if n.position else None,
        "created_at": hook_time(n.created_at),
        "discussion_id": n.discussion_id,
        "id": n.id,
        "internal": False,
        "line_code": _line_code(n.position),
        "note": n.body,
        "noteable_id": n.noteable_id,
        "noteable_type": n.noteable_type,
        "original_position": n.position,
        "position": n.position,
        "project_id": p.id,
        "resolved_at": hook_time(n.resolved_at),
        "resolved_by_id": n.resolved_by_id,
        "resolved_by_push": None,
        "st_diff": None,
        "system": n.system,
        "type": n.type,
        "updated_at": hook_time(n.updated_at),
        "updated_by_id": n.author_id if action == "update" else None,
        "description": n.body,
        "url": f"{state.instance_url}/{p.path_with_namespace}/-/{kind}/{n.noteable_iid}#note_{n.id}",
        "action": action,
    }


def note_hook(
    state: GitLabState,
    p: Project,
    n: Note,
    author: User,
    noteable: MergeRequest | Issue,
    head: Commit | None,
    action: str = "create",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object_kind": "note",
        "event_type": "note",
        "user": hook_user(author),
        "project_id": p.id,
        "project": hook_project(state, p),
        "object_attributes": note_attributes(state, p, n, action),
        "repository": repository(state, p),
    }
    if isinstance(noteable, MergeRequest):
        body["merge_request"] = mr_attributes(state, p, noteable, head)
    else:
        body["issue"] = {
            "id": noteable.id,
            "iid": noteable.iid,
            "title": noteable.title,
            "description": noteable.description,
            "state": noteable.state,
            "project_id": p.id,
            "author_id": noteable.author_id,
            "url": f"{state.instance_url}/{p.path_with_namespace}/-/issues/{noteable.iid}",
        }
    return body


def merge_request_hook(
    state: GitLabState,
    p: Project,
    mr: MergeRequest,
    actor: User,
    head: Commit | None,
    action: str,
    *,
    oldrev: str | None = None,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    attributes = mr_attributes(state, p, mr, head) | {"action": action}
    if oldrev is not None:
        attributes["oldrev"] = oldrev
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": hook_user(actor),
        "project": hook_project(state, p),
        "repository": repository(state, p),
        "object_attributes": attributes,
        "labels": [label(p, name) for name in mr.labels],
        "changes": changes or {},
        "assignees": [],
        "reviewers": [],
    }
