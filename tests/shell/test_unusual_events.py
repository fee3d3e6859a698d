"""Events Baton does not act on get 2xx whatever their shape: GitLab disables a webhook after four
failed deliveries in a row (older releases for good after a 4xx), so one odd event must not cost a
team its hook. A malformed payload of an event Baton *would* act on still gets 400.

Shapes come from the recorded fixtures in tests/fixtures (altered as GitLab's group and system hooks
send them) and, where no recording exists, from GitLab's "System hooks" and "Webhook events" pages and
Jira's "Webhooks" page (docs.gitlab.com/administration/system_hooks/,
docs.gitlab.com/user/project/integrations/webhook_events/,
developer.atlassian.com/cloud/jira/platform/webhooks/), keeping only their documented top-level keys.
RECORDED sends verbatim recordings (tests/fixtures/unusual, sources in tests/fixtures/SOURCES.md) with
the X-Gitlab-Event header GitLab sends for each.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.store.tables import Run
from shell.app import create_app
from shell.services import Services
from tests.support.deliveries import fixture, signed

Shape = Callable[[], dict[str, Any]]


def altered(name: str, *changes: tuple[str, Any]) -> Shape:
    """A recorded fixture with dotted paths set (`...` deletes the key)."""

    def make() -> dict[str, Any]:
        data = copy.deepcopy(fixture(name))
        for path, value in changes:
            *parents, last = path.split(".")
            node = data
            for key in parents:
                node = node[key]
            if value is ...:
                node.pop(last, None)
            else:
                node[last] = value
        return data

    return make


def literal(data: dict[str, Any]) -> Shape:
    return lambda: copy.deepcopy(data)


NOTE = "gitlab/note_mr_comment.json"
MR = "gitlab/merge_request_open.json"
GITLAB_SHAPES: dict[str, Shape] = {
    "group MR hook without project.id": altered(MR, ("project.id", ...)),
    "group MR hook with a bare project": altered(MR, ("project", {"name": "calc"})),
    "MR hook without object_attributes.action": altered(MR, ("object_attributes.action", ...)),
    "MR update without oldrev and changes": altered(
        MR, ("object_attributes.action", "update"), ("changes", ...), ("object_attributes.oldrev", ...)
    ),
    "MR hook with a null user": altered(MR, ("user", None)),
    "note on an issue (no merge_request)": altered(
        NOTE, ("object_attributes.noteable_type", "Issue"), ("merge_request", ...)
    ),
    "note without project.id": altered(NOTE, ("project.id", ...)),
    "note without an author": altered(NOTE, ("user", ...), ("object_attributes.author_id", ...)),
    "pipeline without merge_request": altered("gitlab/pipeline_mr.json", ("merge_request", ...)),
    "pipeline without builds and project": altered(
        "gitlab/pipeline_mr.json", ("builds", ...), ("project", ...)
    ),
    "push system hook": altered("gitlab/push.json", ("event_name", "push"), ("project.id", ...)),
    "tag push": altered("gitlab/push.json", ("object_kind", "tag_push"), ("event_name", "tag_push")),
    "job event": literal({"object_kind": "build", "build_id": 1977, "build_status": "created"}),
    "deployment event": literal({"object_kind": "deployment", "status": "success", "deployable_id": 796}),
    "wiki page event": literal({"object_kind": "wiki_page", "object_attributes": {"title": "Home"}}),
    "release event": literal({"object_kind": "release", "action": "create", "tag": "v1.1"}),
    "emoji event": literal({"object_kind": "emoji", "event_type": "award", "object_attributes": {}}),
    "feature flag event": literal({"object_kind": "feature_flag", "object_attributes": {"id": 6}}),
    "system hook: project_create": literal(
        {"event_name": "project_create", "name": "StoreCloud", "path": "storecloud", "project_id": 74}
    ),
    "system hook: user_add_to_team": literal(
        {"event_name": "user_add_to_team", "access_level": "Maintainer", "project_id": 74, "user_id": 41}
    ),
    "system hook: repository_update": literal(
        {"event_name": "repository_update", "user_id": 1, "project_id": 1, "changes": [], "refs": []}
    ),
    "system hook: group_create": literal({"event_name": "group_create", "group_id": 78, "path": "sf"}),
}
UNUSUAL = "unusual/gitlab/"
GITLAB_SHAPES |= {
    "group MR hook (recorded) with a metadata update": altered(
        UNUSUAL + "group_merge_request.json", ("object_attributes.action", "update")
    ),
    "system MR hook (recorded), update without oldrev": altered(
        UNUSUAL + "system_merge_request.json", ("object_attributes.action", "update")
    ),
    "MR open without changes": altered(MR, ("changes", ...)),
    "note on a merge request without merge_request, no command": altered(NOTE, ("merge_request", ...)),
    "group note hook on an issue without project.id": altered(
        UNUSUAL + "note_issue.json", ("project.id", ...)
    ),
    "note on a commit without an author id": altered(UNUSUAL + "note_commit.json", ("user", {"name": "x"})),
}
LABELS = "jira/issue_updated_labels.json"
COMMENT = "jira/comment_created_cloud.json"
JIRA_SHAPES: dict[str, Shape] = {
    "issue deleted": altered(LABELS, ("webhookEvent", "jira:issue_deleted")),
    "issue created": altered(LABELS, ("webhookEvent", "jira:issue_created"), ("changelog", ...)),
    "issue updated without a changelog": altered(LABELS, ("changelog", ...)),
    "issue updated, summary changed": altered(
        LABELS, ("changelog.items", [{"field": "summary", "fromString": "a", "toString": "b"}])
    ),
    "issue updated without fields.labels": altered(LABELS, ("issue.fields.labels", ...)),
    "issue updated without a user": altered(LABELS, ("user", ...)),
    "comment deleted without a comment": altered(
        COMMENT, ("webhookEvent", "comment_deleted"), ("comment", ...)
    ),
    "comment updated without an author": altered(
        COMMENT, ("webhookEvent", "comment_updated"), ("comment.author", ...)
    ),
    "comment created without an issue": altered(COMMENT, ("issue", ...)),
    **{
        f"{kind} {what}": literal({"webhookEvent": f"{kind}_{what}", "timestamp": 1, kind: {"id": 1}})
        for kind, whats in (
            ("worklog", ("created", "updated", "deleted")),
            ("sprint", ("created", "started", "closed", "deleted")),
            ("board", ("created", "updated", "deleted", "configuration_changed")),
        )
        for what in whats
    },
    "issue updated (recorded sprint change) without fields.labels": altered(
        "unusual/jira/issue_updated_sprint.json", ("issue.fields.labels", ...)
    ),
    "issue updated (recorded, empty changelog) without a user": altered(
        "unusual/jira/issue_updated_empty_changelog.json", ("user", ...)
    ),
    "comment deleted (recorded Cloud) without its comment body": altered(
        "unusual/jira/comment_deleted_cloud.json", ("comment.body", ...)
    ),
    "version released": literal({"webhookEvent": "jira:version_released", "version": {"id": "1"}}),
    "no webhookEvent at all": literal({"timestamp": 1, "issue": {"key": "DEMO-1"}}),
}
CASES = [("gitlab", n, s) for n, s in GITLAB_SHAPES.items()] + [
    ("jira", n, s) for n, s in JIRA_SHAPES.items()
]


# Verbatim recordings, sent as they were delivered (the header is the one GitLab sends for each).
RECORDED: list[tuple[str, str, str | None]] = [
    ("gitlab", "unusual/gitlab/group_merge_request.json", "Merge Request Hook"),  # no project.id
    ("gitlab", "unusual/gitlab/system_merge_request.json", "System Hook"),  # no user.id, no action
    ("gitlab", "unusual/gitlab/system_push.json", "System Hook"),  # event_name, no object_kind
    ("gitlab", "unusual/gitlab/system_tag_push.json", "System Hook"),
    ("gitlab", "unusual/gitlab/system_project_create.json", "System Hook"),
    ("gitlab", "unusual/gitlab/system_user_add_to_team.json", "System Hook"),
    ("gitlab", "unusual/gitlab/system_repository_update.json", "System Hook"),
    ("gitlab", "unusual/gitlab/system_group_create.json", "System Hook"),
    ("gitlab", "unusual/gitlab/member.json", "Member Hook"),
    ("gitlab", "unusual/gitlab/note_issue.json", "Note Hook"),
    ("gitlab", "unusual/gitlab/note_commit.json", "Note Hook"),
    ("gitlab", "unusual/gitlab/job.json", "Job Hook"),
    ("gitlab", "unusual/gitlab/release.json", "Release Hook"),
    ("gitlab", "unusual/gitlab/tag_push.json", "Tag Push Hook"),
    ("gitlab", "unusual/gitlab/wiki_page.json", "Wiki Page Hook"),
    ("gitlab", "unusual/gitlab/deployment.json", "Deployment Hook"),
    ("gitlab", "unusual/gitlab/feature_flag.json", "Feature Flag Hook"),
    ("jira", "unusual/jira/issue_deleted.json", None),
    ("jira", "unusual/jira/issue_created.json", None),
    ("jira", "unusual/jira/issue_updated_empty_changelog.json", None),  # changelog {"id", "items": []}
    ("jira", "unusual/jira/issue_updated_sprint.json", None),
    ("jira", "unusual/jira/comment_deleted_cloud.json", None),  # no user
    ("jira", "unusual/jira/comment_deleted_dc.json", None),
]


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services.settings, services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://baton.test"
    ) as http:
        yield http


async def post(
    client: httpx.AsyncClient, source: str, payload: dict[str, Any], **headers: str
) -> httpx.Response:
    body, signed_headers = signed(source, payload, key=str(uuid.uuid4()))
    return await client.post(f"/webhooks/{source}", content=body, headers={**signed_headers, **headers})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("source", "name", "shape"), CASES, ids=[f"{s}: {n}" for s, n, _ in CASES])
async def test_an_event_baton_does_not_act_on_gets_200_whatever_its_shape(
    client: httpx.AsyncClient, source: str, name: str, shape: Shape
) -> None:
    headers = {"X-Gitlab-Event": "System Hook"} if name.startswith(("system hook", "push system")) else {}
    answer = await post(client, source, shape(), **headers)
    assert answer.status_code == 200, (name, answer.text)
    assert "ignored" in answer.json()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("source", "payload"),
    [
        ("gitlab", altered(NOTE, ("object_attributes.note", "/approve"), ("project.id", ...))()),
        ("gitlab", altered(NOTE, ("object_attributes.note", "/remediate"), ("merge_request", ...))()),
        ("jira", altered(COMMENT, ("comment.body", "/approve"), ("issue", ...), ("comment.self", "x"))()),
    ],
)
async def test_a_malformed_event_baton_would_act_on_is_still_400(
    client: httpx.AsyncClient, source: str, payload: dict[str, Any]
) -> None:
    answer = await post(client, source, payload)
    assert answer.status_code == 400, answer.text
    assert "invalid" in answer.json()["error"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("source", "name", "event"), RECORDED, ids=[n for _, n, _ in RECORDED])
async def test_a_recorded_event_baton_does_not_act_on_gets_200(
    client: httpx.AsyncClient, services: Services, source: str, name: str, event: str | None
) -> None:
    answer = await post(client, source, fixture(name), **({"X-Gitlab-Event": event} if event else {}))
    assert answer.status_code == 200, (name, answer.text)
    assert set(answer.json()) == {"ignored"} and answer.json()["ignored"]
    async with services.sm() as session:
        assert await session.scalar(select(func.count()).select_from(Run)) == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_system_hook_merge_request_with_new_commits_is_ignored_not_refused(
    client: httpx.AsyncClient,
) -> None:
    """The system hook's MR payload has no project.id or user.id; as a project hook with new commits
    it would be refused (400), and a run of refusals disables the hook."""
    payload = fixture("unusual/gitlab/system_merge_request.json")
    payload["object_attributes"].update(action="update", oldrev="a" * 40)
    answer = await post(client, "gitlab", payload, **{"X-Gitlab-Event": "System Hook"})
    assert answer.status_code == 200, answer.text
    assert "system hooks" in answer.json()["ignored"]
    as_project_hook = await post(client, "gitlab", payload, **{"X-Gitlab-Event": "Merge Request Hook"})
    assert as_project_hook.status_code == 400  # the same shape from a project hook is malformed
