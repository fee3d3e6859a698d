"""route(): every recorded payload reaches its handler; hostile payloads end in Ignore or PayloadInvalid."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.triggers import ThreadCommand
from handlers import GITLAB_ROUTES, JIRA_ROUTES, PayloadInvalid, route
from handlers.actions import Enqueue, Ignore, Reply
from handlers.context import HandlerContext

Payload = Callable[..., dict[str, Any]]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ALL_FIXTURES = sorted(f"{p.parent.name}/{p.stem}" for p in FIXTURES.glob("*/*.json"))
SECRET = "s3cr3t-VALUE-never-echoed"
PASSED = "a 'success' pipeline needs no analysis (only failed ones on Baton's merge requests)"

EXPECTED = {
    "gitlab/merge_request_open": Ignore(
        "a new merge request starts nothing; reply with a command to ask for something"
    ),
    "gitlab/note_mr_comment": Ignore("no command in the note"),
    "gitlab/pipeline_mr": Ignore(PASSED),
    "gitlab/push": Ignore("push events are not handled; merge request updates carry new commits"),
    "jira/comment_created_cloud": Ignore("no command in the comment"),
    "jira/comment_updated_cloud": Ignore("edited comments never trigger"),
    "jira/issue_updated_commented_dc": Ignore("no command in the comment"),
    "jira/issue_updated_labels": Ignore("no 'ai-implement' label added"),
}


def source_of(name: str) -> Any:
    return name.split("/", 1)[0]


def test_every_fixture_has_an_expectation() -> None:
    assert set(ALL_FIXTURES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_payloads(payload: Payload, name: str) -> None:
    assert route(source_of(name), payload(name), HandlerContext()) == EXPECTED[name]


@pytest.mark.parametrize(
    ("name", "changes", "kind"),
    [
        ("gitlab/note_mr_comment", {"object_attributes.note": "/approve"}, "approve"),
        (
            "gitlab/merge_request_open",
            {"object_attributes.action": "update", "object_attributes.oldrev": "0" * 40},
            "mr_pushed",
        ),
        ("jira/comment_created_cloud", {"comment.body": "/approve"}, "approve"),
        ("jira/issue_updated_commented_dc", {"comment.body": "/cancel"}, "cancel"),
        ("jira/issue_updated_labels", {"changelog.items.0.toString": "ai-implement"}, "implement"),
    ],
)
def test_recorded_payload_variants_enqueue(
    payload: Payload, name: str, changes: dict[str, Any], kind: str
) -> None:
    action = route(source_of(name), payload(name, changes), HandlerContext())
    assert isinstance(action, Enqueue)
    assert action.kind == kind


def test_registries_name_the_events() -> None:
    assert set(GITLAB_ROUTES) == {"note", "merge_request", "push", "pipeline"}
    assert set(JIRA_ROUTES) == {"jira:issue_updated", "comment_created", "comment_updated", "comment_deleted"}


@pytest.mark.parametrize("value", [None, [], [{"object_kind": "note"}], "note", 1, 1.5, True, b"{}"])
@pytest.mark.parametrize("source", ["gitlab", "jira"])
def test_non_object_payloads_are_invalid(source: Any, value: object) -> None:
    with pytest.raises(PayloadInvalid, match=r"^payload: expected a JSON object$"):
        route(source, value, HandlerContext())


@pytest.mark.parametrize(
    ("source", "value", "message"),
    [
        ("gitlab", {}, "object_kind: missing or not a string"),
        ("gitlab", {"object_kind": 1}, "object_kind: missing or not a string"),
        ("gitlab", {"object_kind": ["note"]}, "object_kind: missing or not a string"),
        ("jira", {}, "webhookEvent: missing or not a string"),
        ("jira", {"webhookEvent": None}, "webhookEvent: missing or not a string"),
    ],
)
def test_payloads_without_an_event_name_are_ignored(source: Any, value: object, message: str) -> None:
    action = route(source, value, HandlerContext())
    assert isinstance(action, Ignore)
    assert action.reason.endswith(f"events without {message.split(':')[0]} are not handled")


@pytest.mark.parametrize(
    ("source", "kind", "reason"),
    [
        ("gitlab", "build", "GitLab 'build' events are not handled"),
        ("gitlab", "wiki_page", "GitLab 'wiki_page' events are not handled"),
        ("gitlab", "issue", "GitLab 'issue' events are not handled"),
        ("gitlab", "", "GitLab '' events are not handled"),
        ("gitlab", "x\n\x00<script>" + "y" * 500, f"GitLab 'x???script?{'y' * 29}' events are not handled"),
        ("jira", "jira:issue_created", "Jira 'jira:issue_created' events are not handled"),
        ("jira", "worklog_created", "Jira 'worklog_created' events are not handled"),
        ("jira", "NOTE", "Jira 'NOTE' events are not handled"),
    ],
)
def test_unknown_events_are_ignored_with_a_short_safe_reason(source: Any, kind: str, reason: str) -> None:
    key = "object_kind" if source == "gitlab" else "webhookEvent"
    action = route(source, {key: kind}, HandlerContext())
    assert action == Ignore(reason)


def _paths(value: Any, prefix: str = "") -> list[str]:
    """Every dotted path to a field the models read, found by walking a fixture."""
    found = []
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else key
            found.append(path)
            found.extend(_paths(child, path))
    elif isinstance(value, list) and value:
        found.extend(_paths(value[0], f"{prefix}.0"))
    return found


USED_FIELDS = {
    "gitlab/note_mr_comment": [
        "user",
        "user.id",
        "user.username",
        "project",
        "project.id",
        "project.path_with_namespace",
        "object_attributes",
        "object_attributes.id",
        "object_attributes.note",
        "object_attributes.noteable_type",
        "object_attributes.discussion_id",
        "object_attributes.system",
        "object_attributes.author_id",
        "merge_request",
        "merge_request.iid",
        "merge_request.source_branch",
        "merge_request.target_branch",
    ],
    "gitlab/merge_request_open": [
        "user",
        "project",
        "object_attributes",
        "object_attributes.iid",
        "object_attributes.state",
        "object_attributes.source_branch",
        "object_attributes.target_branch",
        "object_attributes.last_commit.id",
        "labels",
        "labels.0.title",
        "changes",
    ],
    "gitlab/push": ["ref", "before", "after", "checkout_sha", "user_id", "user_username", "project"],
    "gitlab/pipeline_mr": [
        "object_attributes",
        "object_attributes.id",
        "object_attributes.status",
        "project",
    ],
    "jira/issue_updated_labels": [
        "issue",
        "issue.id",
        "issue.key",
        "issue.fields",
        "issue.fields.summary",
        "issue.fields.labels",
        "issue.fields.project.key",
        "user",
        "user.accountId",
        "changelog",
        "changelog.id",
        "changelog.items",
        "changelog.items.0.field",
        "changelog.items.0.toString",
        "timestamp",
    ],
    "jira/comment_created_cloud": [
        "comment",
        "comment.id",
        "comment.body",
        "comment.self",
        "comment.author",
        "comment.author.accountId",
        "issue",
        "issue.id",
        "issue.key",
    ],
}
WRONG_VALUES: list[Any] = [None, True, -1, 2**64, 1.5, "text", "", [], [None], {}, {"id": {}}]
CASES = [
    (name, path, value) for name, paths in USED_FIELDS.items() for path in paths for value in WRONG_VALUES
]


@pytest.mark.parametrize(("name", "path", "value"), CASES)
def test_wrong_types_for_used_fields_never_crash(payload: Payload, name: str, path: str, value: Any) -> None:
    assert path in _paths(payload(name)), f"{path} is not in {name}"
    _route_safely(source_of(name), payload(name, {path: copy.deepcopy(value)}))


@pytest.mark.parametrize(
    ("name", "path"), [(name, path) for name, paths in USED_FIELDS.items() for path in paths]
)
def test_missing_used_fields_never_crash(payload: Payload, name: str, path: str) -> None:
    _route_safely(source_of(name), payload(name, {path: ...}))


# What makes each recorded payload one Baton acts on (a command, new commits, a label change), so that
# a malformed copy of it is refused rather than ignored.
ACTED_ON: dict[str, dict[str, Any]] = {
    "gitlab/note_mr_comment": {"object_attributes.note": "/approve"},
    "gitlab/merge_request_open": {"object_attributes.action": "update", "object_attributes.oldrev": "a" * 40},
    "jira/comment_created_cloud": {"comment.body": "/approve"},
    "jira/issue_updated_labels": {},
}
# The fields that decide it: when they are themselves unreadable, nothing says Baton would act.
DECIDING = {"object_attributes.note", "comment.body", "changelog.items"}


def acted_on(payload: Payload, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    return payload(name, {**ACTED_ON[name], **changes})


@pytest.mark.parametrize(
    ("name", "path", "message"),
    [
        (
            "gitlab/note_mr_comment",
            "object_attributes.note",
            "object_attributes.note: Input should be a valid string",
        ),
        ("gitlab/note_mr_comment", "user.id", "user.id: Input should be a valid integer"),
        (
            "gitlab/note_mr_comment",
            "project.path_with_namespace",
            "project.path_with_namespace: Input should be a valid string",
        ),
        ("jira/comment_created_cloud", "comment.body", "comment.body: Input should be a valid string"),
        ("jira/issue_updated_labels", "changelog.items", "changelog.items: Input should be a valid list"),
    ],
)
def test_invalid_message_names_the_field_not_the_value(
    payload: Payload, name: str, path: str, message: str
) -> None:
    malformed = acted_on(payload, name, {path: {SECRET: SECRET}})
    if path in DECIDING:  # unreadable where it would say "act": ignored, the reason still names the field
        action = route(source_of(name), malformed, HandlerContext())
        assert isinstance(action, Ignore) and message in action.reason and SECRET not in action.reason
        return
    with pytest.raises(PayloadInvalid) as raised:
        route(source_of(name), malformed, HandlerContext())
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("gitlab/note_mr_comment", "project.path_with_namespace"),
        ("gitlab/note_mr_comment", "object_attributes.discussion_id"),
        ("gitlab/merge_request_open", "object_attributes.last_commit.id"),
        ("jira/comment_created_cloud", "issue.key"),
        ("jira/comment_created_cloud", "comment.id"),
        ("jira/issue_updated_labels", "changelog.id"),
    ],
)
def test_identifiers_that_could_escape_a_url_or_marker_are_invalid(
    payload: Payload, name: str, path: str
) -> None:
    hostile = f"../../{SECRET}\n<!-- x -->"
    with pytest.raises(PayloadInvalid) as raised:
        route(source_of(name), acted_on(payload, name, {path: hostile}), HandlerContext())
    message = str(raised.value)
    assert message.startswith(path + ": ")
    assert SECRET not in message
    assert "\n" not in message
    assert len(message) <= 200


def test_merge_request_note_without_merge_request_is_invalid(payload: Payload) -> None:
    with pytest.raises(PayloadInvalid, match=r"^merge_request: required on a note about a merge request$"):
        route("gitlab", acted_on(payload, "gitlab/note_mr_comment", {"merge_request": ...}), HandlerContext())


def test_huge_and_unicode_strings(payload: Payload) -> None:
    note = "é" * 100_000 + "\n/approve " + "🦄" * 100_000 + "\n" + "\u202e" * 1000
    action = route(
        "gitlab", payload("gitlab/note_mr_comment", {"object_attributes.note": note}), HandlerContext()
    )
    assert isinstance(action, Enqueue)
    assert action.kind == "approve"
    assert isinstance(action.input, ThreadCommand) and len(action.input.args) == 2000


def test_deep_nesting_in_ignored_and_used_fields(payload: Payload) -> None:
    deep: Any = "x"
    for _ in range(50_000):
        deep = {"a": [deep]}
    ignored = payload("gitlab/note_mr_comment", {"repository": deep, "object_attributes.note": "/approve"})
    assert isinstance(route("gitlab", ignored, HandlerContext()), Enqueue)
    for path in ["object_attributes.position", "changes", "user"]:
        _route_safely("gitlab", payload("gitlab/note_mr_comment", {path: deep}))
    _route_safely("jira", payload("jira/issue_updated_labels", {"changelog.items.0": deep}))


def test_self_referencing_payload(payload: Payload) -> None:
    looped = payload("gitlab/note_mr_comment")
    looped["object_attributes"]["position"] = looped
    _route_safely("gitlab", looped)


def _route_safely(source: Any, value: object) -> None:
    """route() may only return an Action or raise PayloadInvalid with a one-line, bounded message."""
    try:
        action = route(source, value, HandlerContext(trigger_label="sad"))
    except PayloadInvalid as exc:
        message = str(exc)
        assert message
        assert "\n" not in message
        assert len(message) <= 200
        return
    assert isinstance(action, Enqueue | Reply | Ignore)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
event_names = st.sampled_from(
    [
        "note",
        "merge_request",
        "push",
        "pipeline",
        "jira:issue_updated",
        "comment_created",
        "comment_updated",
        "x",
    ]
)


@st.composite
def enveloped(draw: st.DrawFn) -> dict[str, Any]:
    """Arbitrary JSON objects that at least claim to be an event Baton handles."""
    body = draw(st.dictionaries(st.text(max_size=20), json_values, max_size=6))
    body[draw(st.sampled_from(["object_kind", "webhookEvent"]))] = draw(event_names)
    return body


FIXTURE_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]  # `payload` is a pure function


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(["gitlab", "jira"]), value=json_values | enveloped())
def test_route_on_arbitrary_json_only_returns_an_action_or_payload_invalid(
    source: Any, value: object
) -> None:
    _route_safely(source, value)


@settings(max_examples=400, deadline=None, suppress_health_check=FIXTURE_CHECKS)
@given(data=st.data())
def test_route_on_mutated_fixtures_only_returns_an_action_or_payload_invalid(
    payload: Payload, data: st.DataObject
) -> None:
    """A recorded payload with one field the models read replaced by an arbitrary JSON value."""
    name = data.draw(st.sampled_from(sorted(USED_FIELDS)))
    path = data.draw(st.sampled_from(USED_FIELDS[name]))
    _route_safely(source_of(name), payload(name, {path: data.draw(json_values)}))
