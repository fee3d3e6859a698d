"""Webhook event models: the recorded payloads parse into the fields Baton reads; bad shapes are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from bot.events.gitlab import MergeRequestEvent, NoteEvent, PipelineEvent, PushEvent
from bot.events.jira import CommentEvent, IssueRef, IssueUpdatedEvent, issue_id_from_comment_url, issue_ref

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_note_hook() -> None:
    event = NoteEvent.model_validate(load("gitlab/note_mr_comment"))
    attrs = event.object_attributes
    assert (event.user.id, event.user.username, event.user.name) == (14613894, "sbansal1999", "Satyam Bansal")
    assert (event.project.id, event.project.path_with_namespace) == (
        46186758,
        "sbansal1999/testing-zulip-gitlab-integration",
    )
    assert (attrs.id, attrs.type, attrs.system, attrs.action, attrs.noteable_type) == (
        1406328457,
        None,
        False,
        None,
        "MergeRequest",
    )
    assert attrs.discussion_id == "547c7f02ebb7bbdef59e006756cc5b4a09de710a"
    assert attrs.updated_at == "2023-05-25 19:04:19 UTC"
    assert attrs.url is not None
    assert attrs.url.endswith("/-/merge_requests/1#note_1406328457")
    assert event.merge_request is not None
    assert (
        event.merge_request.iid,
        event.merge_request.source_branch,
        event.merge_request.target_branch,
    ) == (1, "feature", "main")
    assert event.project_id == 46186758
    assert not event.confidential


def test_merge_request_hook() -> None:
    event = MergeRequestEvent.model_validate(load("gitlab/merge_request_open"))
    attrs = event.object_attributes
    assert (attrs.iid, attrs.action, attrs.state, attrs.oldrev) == (1, "open", "opened", None)
    assert (attrs.source_branch, attrs.target_branch) == ("ms-viewport", "master")
    assert attrs.last_commit is not None
    assert attrs.last_commit.id == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert [label.title for label in event.labels] == ["API"]
    assert set(event.changes) == {"updated_by_id", "updated_at", "state_id", "labels"}


def test_push_hook() -> None:
    event = PushEvent.model_validate(load("gitlab/push"))
    assert (event.ref, event.user_id, event.user_username, event.project.id) == (
        "refs/heads/master",
        4,
        "jsmith",
        15,
    )
    assert event.after == event.checkout_sha == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"


def test_pipeline_hook() -> None:
    event = PipelineEvent.model_validate(load("gitlab/pipeline_mr"))
    assert (event.object_attributes.id, event.object_attributes.status, event.project.id) == (
        31,
        "success",
        1,
    )


def test_jira_labels_update() -> None:
    event = IssueUpdatedEvent.model_validate(load("jira/issue_updated_labels"))
    assert (event.issue.id, event.issue.key, event.issue.fields.labels) == (
        "10040",
        "TES-41",
        ["sad", "test-label"],
    )
    assert event.changelog is not None
    assert event.changelog.id == "10233"
    item = event.changelog.items[0]
    assert (item.field, item.from_string, item.to_string) == ("labels", "bad test-label", "sad test-label")
    assert event.user is not None
    assert event.user.account_id == "5c5f880629be9642ba529340"
    assert issue_ref(event.issue) == IssueRef("10040", "TES-41", "TES", "Unit test summary 1")


def test_jira_data_center_commented_update() -> None:
    event = IssueUpdatedEvent.model_validate(load("jira/issue_updated_commented_dc"))
    assert event.issue_event_type_name == "issue_commented"
    assert event.changelog is None
    assert event.user is not None
    assert (event.user.account_id, event.user.name) == (None, "levbrouk")
    assert event.comment is not None
    assert (event.comment.id, event.comment.body) == ("10082", "unik")


@pytest.mark.parametrize("name", ["jira/comment_created_cloud", "jira/comment_updated_cloud"])
def test_jira_comment_events(name: str) -> None:
    event = CommentEvent.model_validate(load(name))
    assert event.comment.id == "10019"
    assert event.comment.author is not None
    assert event.comment.author.identity()["account_id"] == "5c5f880629be9642ba529340"
    assert event.issue_ref == IssueRef("10040", "TES-41", "TES", "Unit test summary 1")


def test_jira_comment_without_issue_uses_comment_self() -> None:
    data = load("jira/comment_created_cloud")
    del data["issue"]
    assert CommentEvent.model_validate(data).issue_ref == IssueRef("10040", None)


@pytest.mark.parametrize(
    ("url", "issue_id"),
    [
        ("https://x.atlassian.net/rest/api/2/issue/10040/comment/10019", "10040"),
        ("http://jira:8080/jira/rest/api/latest/issue/7/comment/8", "7"),
        ("https://x/rest/api/2/issue/7/comment/8?expand=renderedBody", "7"),
        ("https://x/rest/api/2/issue/TES-41/comment/8", None),
        ("https://x/rest/api/2/issue/7/comment/8/extra", None),
        ("https://x/rest/api/2/issue/7/comment/", None),
        ("", None),
        (None, None),
    ],
)
def test_issue_id_from_comment_url(url: str | None, issue_id: str | None) -> None:
    assert issue_id_from_comment_url(url) == issue_id


BAD: list[tuple[type[BaseModel], str, list[str], Any]] = [
    (NoteEvent, "gitlab/note_mr_comment", ["user", "id"], "14613894"),  # no coercion from strings
    (NoteEvent, "gitlab/note_mr_comment", ["user", "id"], True),
    (NoteEvent, "gitlab/note_mr_comment", ["user", "id"], -1),
    (NoteEvent, "gitlab/note_mr_comment", ["user", "id"], 2**63),
    (NoteEvent, "gitlab/note_mr_comment", ["object_attributes", "system"], "false"),
    (NoteEvent, "gitlab/note_mr_comment", ["project", "path_with_namespace"], "a//b"),
    (NoteEvent, "gitlab/note_mr_comment", ["project", "path_with_namespace"], "group/../other"),
    (NoteEvent, "gitlab/note_mr_comment", ["project", "path_with_namespace"], "./x"),
    (NoteEvent, "gitlab/note_mr_comment", ["project", "path_with_namespace"], "group/.."),
    (NoteEvent, "gitlab/note_mr_comment", ["project", "path_with_namespace"], "-group/x y"),
    (NoteEvent, "gitlab/note_mr_comment", ["object_kind"], "push"),
    (MergeRequestEvent, "gitlab/merge_request_open", ["object_attributes", "last_commit", "id"], "HEAD"),
    (PushEvent, "gitlab/push", ["after"], "refs/heads/main"),
    (IssueUpdatedEvent, "jira/issue_updated_labels", ["issue", "key"], "TES 41"),
    (IssueUpdatedEvent, "jira/issue_updated_labels", ["issue", "id"], True),
    (IssueUpdatedEvent, "jira/issue_updated_labels", ["changelog", "id"], "10233; DROP"),
    (IssueUpdatedEvent, "jira/issue_updated_labels", ["timestamp"], "yesterday"),
    (CommentEvent, "jira/comment_created_cloud", ["comment", "id"], "abc"),
    (CommentEvent, "jira/comment_created_cloud", ["webhookEvent"], "jira:issue_updated"),
]


@pytest.mark.parametrize(("model", "name", "path", "value"), BAD)
def test_bad_values_are_refused(model: type[BaseModel], name: str, path: list[str], value: Any) -> None:
    data = load(name)
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ValidationError):
        model.model_validate(data)


@pytest.mark.parametrize("path", ["group/sub.group/my_project-1", ".hidden/x.y", "a/..b", "g/.well-known"])
def test_valid_project_paths(path: str) -> None:
    data = load("gitlab/note_mr_comment")
    data["project"]["path_with_namespace"] = path
    assert NoteEvent.model_validate(data).project.path_with_namespace == path


def test_jira_numeric_ids_are_accepted_as_text() -> None:
    data = load("jira/issue_updated_labels")
    data["issue"]["id"] = 10040
    assert IssueUpdatedEvent.model_validate(data).issue.id == "10040"


def test_models_are_frozen() -> None:
    event = NoteEvent.model_validate(load("gitlab/note_mr_comment"))
    with pytest.raises(ValidationError):
        event.object_attributes.note = "/approve"  # type: ignore[misc]
