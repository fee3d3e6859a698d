"""JSON shapes of the simulated Jira, with Atlassian's field names (REST v2 and webhook payloads)."""

from __future__ import annotations

from typing import Any

from bot.sandbox.jira_sim.model import (
    LINK_TYPES,
    Change,
    ChangeItem,
    Comment,
    Issue,
    Link,
    Status,
    Transition,
    User,
    status_by_id,
)
from bot.sandbox.jira_sim.state import JiraState

Json = dict[str, Any]
ISSUE_TYPE_ID = "10001"


def api(base: str, path: str) -> str:
    return f"{base}/rest/api/2/{path}"


def user_json(state: JiraState, user: User, base: str) -> Json:
    """Cloud: `accountId`/`accountType`; Data Center (deployment "Server"): `name`/`key`/`emailAddress`."""
    avatar = f"{base}/secure/useravatar?ownerId={user.name}"
    common = {
        "avatarUrls": {size: f"{avatar}&size={size}" for size in ("48x48", "24x24", "16x16", "32x32")},
        "displayName": user.display_name,
        "active": user.active,
        "timeZone": "Etc/UTC",
    }
    if state.deployment == "Cloud":
        return {
            "self": api(base, f"user?accountId={user.account_id}"),
            "accountId": user.account_id,
            "accountType": "atlassian",
            **common,
        }
    return {
        "self": api(base, f"user?username={user.name}"),
        "name": user.name,
        "key": user.name,
        "emailAddress": user.email,
        **common,
    }


def user_ref(state: JiraState, account_id: str | None, base: str) -> Json | None:
    user = state.find_user(account_id) if account_id else None
    return user_json(state, user, base) if user else None


def status_json(status: Status, base: str) -> Json:
    category = {
        "self": api(base, f"statuscategory/{status.category_id}"),
        "id": status.category_id,
        "key": status.category_key,
        "colorName": status.category_color,
        "name": status.category_name,
    }
    return {
        "self": api(base, f"status/{status.id}"),
        "description": "",
        "iconUrl": f"{base}/",
        "name": status.name,
        "id": status.id,
        "statusCategory": category,
    }


def project_json(state: JiraState, key: str, base: str) -> Json:
    project = state.projects[key]
    return {
        "self": api(base, f"project/{project.id}"),
        "id": project.id,
        "key": project.key,
        "name": project.name,
        "projectTypeKey": "software",
    }


def components_json(state: JiraState, issue: Issue, base: str) -> list[Json]:
    """`fields.components` as Jira sends it: `[{"self", "id", "name"}]` in the issue's order."""
    ids = state.projects[issue.project_key].components
    return [
        {"self": api(base, f"component/{ids[name]}"), "id": ids[name], "name": name}
        for name in issue.components
        if name in ids
    ]


def issuetype_json(issue: Issue, base: str) -> Json:
    return {
        "self": api(base, f"issuetype/{ISSUE_TYPE_ID}"),
        "id": ISSUE_TYPE_ID,
        "name": issue.issue_type,
        "description": "Stories track functionality or features expressed as user goals.",
        "subtask": False,
    }


def priority_json(base: str) -> Json:
    return {
        "self": api(base, "priority/3"),
        "iconUrl": f"{base}/images/icons/priorities/medium.svg",
        "name": "Medium",
        "id": "3",
    }


def comment_json(state: JiraState, comment: Comment, base: str) -> Json:
    issue = state.issue(comment.issue_key)
    return {
        "self": api(base, f"issue/{issue.id}/comment/{comment.id}"),
        "id": comment.id,
        "author": user_ref(state, comment.author, base),
        "body": comment.body,
        "updateAuthor": user_ref(state, comment.update_author, base),
        "created": comment.created,
        "updated": comment.updated,
        "jsdPublic": True,
    }


def comments_page(
    state: JiraState, comments: list[Comment], base: str, start: int, limit: int, total: int
) -> Json:
    """`PageOfComments`: startAt, maxResults, total, comments."""
    return {
        "startAt": start,
        "maxResults": limit,
        "total": total,
        "comments": [comment_json(state, c, base) for c in comments],
    }


def linked_issue_json(state: JiraState, key: str, base: str) -> Json:
    other = state.issue(key)
    fields = {
        "summary": other.summary,
        "status": status_json(status_by_id(other.status_id), base),
        "priority": priority_json(base),
        "issuetype": issuetype_json(other, base),
    }
    return {"id": other.id, "key": other.key, "self": api(base, f"issue/{other.id}"), "fields": fields}


def link_json(state: JiraState, link: Link, key: str, base: str) -> Json:
    """From `key`'s side: an `outwardIssue` when `key` is the outward end, else an `inwardIssue`."""
    link_type = next(t for t in LINK_TYPES if t.id == link.type_id)
    type_json = {
        "id": link_type.id,
        "name": link_type.name,
        "inward": link_type.inward,
        "outward": link_type.outward,
        "self": api(base, f"issueLinkType/{link_type.id}"),
    }
    out: Json = {"id": link.id, "self": api(base, f"issueLink/{link.id}"), "type": type_json}
    if link.outward == key:
        out["outwardIssue"] = linked_issue_json(state, link.inward, base)
    else:
        out["inwardIssue"] = linked_issue_json(state, link.outward, base)
    return out


def issue_fields(state: JiraState, issue: Issue, base: str, *, with_comments: bool) -> Json:
    reporter = user_ref(state, issue.reporter, base)
    fields: Json = {
        "summary": issue.summary,
        "description": issue.description,
        "labels": list(issue.labels),
        "status": status_json(status_by_id(issue.status_id), base),
        "project": project_json(state, issue.project_key, base),
        "issuetype": issuetype_json(issue, base),
        "priority": priority_json(base),
        "issuelinks": [link_json(state, link, issue.key, base) for link in state.links_of(issue.key)],
        "assignee": None,
        "reporter": reporter,
        "creator": reporter,
        "created": issue.created,
        "updated": issue.updated,
        "resolution": None,
        "subtasks": [],
        "components": components_json(state, issue, base),
        "fixVersions": [],
    }
    if with_comments:
        total = len(issue.comments)
        fields["comment"] = comments_page(state, issue.comments, base, 0, max(total, 1), total)
    return fields


def issue_json(state: JiraState, issue: Issue, base: str, wanted: set[str] | None = None) -> Json:
    """GET issue; `wanted` filters fields like Jira's `fields=` parameter (None = all)."""
    fields = issue_fields(state, issue, base, with_comments=True)
    if wanted is not None:
        fields = {k: v for k, v in fields.items() if k in wanted}
    return {
        "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
        "id": issue.id,
        "self": api(base, f"issue/{issue.id}"),
        "key": issue.key,
        "fields": fields,
    }


def trimmed_issue_json(state: JiraState, issue: Issue, base: str) -> Json:
    """The issue in `comment_*` payloads: no labels and no description (PROTOCOLS.md §B2)."""
    full = issue_fields(state, issue, base, with_comments=False)
    keep = ("summary", "issuetype", "project", "assignee", "priority", "status")
    return {
        "id": issue.id,
        "self": api(base, f"issue/{issue.id}"),
        "key": issue.key,
        "fields": {k: full[k] for k in keep},
    }


def transition_json(transition: Transition, base: str) -> Json:
    return {
        "id": transition.id,
        "name": transition.name,
        "to": status_json(status_by_id(transition.to_status), base),
        "hasScreen": False,
        "isGlobal": True,
        "isInitial": False,
        "isAvailable": True,
        "isConditional": False,
        "looped": False,
    }


def change_item_json(item: ChangeItem) -> Json:
    return {
        "field": item.field,
        "fieldtype": "jira",
        "fieldId": item.field,
        "from": item.from_id,
        "fromString": item.from_string,
        "to": item.to_id,
        "toString": item.to_string,
    }


def webhook_payload(state: JiraState, change: Change, base: str, timestamp_ms: int) -> tuple[str, Json]:
    """The (event name, body) Jira Cloud sends for `change`, shaped like tests/fixtures/jira/."""
    issue = state.issue(change.issue_key)
    comment = state.comment(issue, change.comment_id) if change.comment_id else None
    if change.kind != "issue_updated":
        assert comment is not None
        body = {
            "timestamp": timestamp_ms,
            "webhookEvent": change.kind,
            "comment": comment_json(state, comment, base),
            "issue": trimmed_issue_json(state, issue, base),
        }
        return change.kind, body
    out: Json = {
        "timestamp": timestamp_ms,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": change.event_type_name,
        "user": user_ref(state, change.actor, base),
        "issue": {
            "id": issue.id,
            "self": api(base, f"issue/{issue.id}"),
            "key": issue.key,
            "fields": issue_fields(state, issue, base, with_comments=False),
        },
    }
    if change.items:
        out["changelog"] = {"id": change.changelog_id, "items": [change_item_json(i) for i in change.items]}
    if comment is not None:
        out["comment"] = comment_json(state, comment, base)
    return "jira:issue_updated", out
