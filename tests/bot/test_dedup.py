"""delivery_key(): the sender's retry-stable id, else one derived from the payload, else the body hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.dedup import MAX_KEY, delivery_key

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IDEM = "2f1a8e1c-6d4b-4a55-9b40-7c3f2a9d0e11"
UUID = "9a6fe655-0a5b-4c44-9a0d-6c9e6b4f8d21"


def load(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def body_of(payload: object) -> bytes:
    return json.dumps(payload).encode()


def key(source: Any, headers: dict[str, str], payload: object) -> str:
    return delivery_key(source, headers, payload, body_of(payload))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Idempotency-Key": IDEM, "X-Gitlab-Event-UUID": UUID}, f"idem:{IDEM}"),
        ({"idempotency-key": IDEM}, f"idem:{IDEM}"),
        ({"IDEMPOTENCY-KEY": IDEM}, f"idem:{IDEM}"),
        ({"X-Gitlab-Event-UUID": UUID}, f"uuid:{UUID}"),
        ({"X-Gitlab-Event-Uuid": UUID}, f"uuid:{UUID}"),  # as GitLab 18.3 really sends it
        ({"x-gitlab-event-uuid": UUID, "Idempotency-Key": "  "}, f"uuid:{UUID}"),
        ({"Idempotency-Key": "\x00\x01"}, "note:1406328457:2023-05-25 19:04:19 UTC"),
        ({}, "note:1406328457:2023-05-25 19:04:19 UTC"),
    ],
)
def test_gitlab_note_keys(headers: dict[str, str], expected: str) -> None:
    assert key("gitlab", headers, load("gitlab/note_mr_comment")) == expected


def test_an_edited_note_gets_a_new_key() -> None:
    note = load("gitlab/note_mr_comment")
    edited = load("gitlab/note_mr_comment")
    edited["object_attributes"]["updated_at"] = "2023-05-25 19:09:00 UTC"
    assert key("gitlab", {}, note) != key("gitlab", {}, edited)


@pytest.mark.parametrize("name", ["gitlab/push", "gitlab/merge_request_open", "gitlab/pipeline_mr"])
def test_other_gitlab_events_without_headers_use_the_body_hash(name: str) -> None:
    payload = load(name)
    assert key("gitlab", {}, payload) == "sha256:" + hashlib.sha256(body_of(payload)).hexdigest()


@pytest.mark.parametrize(
    ("name", "headers", "expected"),
    [
        ("jira/comment_created_cloud", {"X-Atlassian-Webhook-Identifier": "abc-123"}, "hook:abc-123"),
        ("jira/comment_created_cloud", {"x-atlassian-webhook-identifier": "abc-123"}, "hook:abc-123"),
        ("jira/comment_created_cloud", {}, "comment:10019"),
        ("jira/issue_updated_commented_dc", {}, "comment:10082"),
        ("jira/issue_updated_labels", {}, "changelog:10233"),
        ("jira/comment_updated_cloud", {}, "comment:10019:comment_updated:2019-02-15T19:12:08.432-0800"),
    ],
)
def test_jira_keys(name: str, headers: dict[str, str], expected: str) -> None:
    assert key("jira", headers, load(name)) == expected


def test_a_new_comment_has_one_key_from_both_jira_events() -> None:
    created = load("jira/comment_created_cloud")
    commented = load("jira/issue_updated_commented_dc")
    commented["comment"] = created["comment"]
    assert key("jira", {}, created) == key("jira", {}, commented) == "comment:10019"


def test_an_edit_never_shares_the_key_of_the_creation() -> None:
    assert key("jira", {}, load("jira/comment_created_cloud")) != key(
        "jira", {}, load("jira/comment_updated_cloud")
    )


def test_jira_without_ids_uses_the_body_hash() -> None:
    payload = load("jira/issue_updated_labels")
    del payload["changelog"]
    assert key("jira", {}, payload).startswith("sha256:")


def test_headers_of_the_other_source_are_not_used() -> None:
    payload = load("jira/issue_updated_labels")
    assert key("jira", {"Idempotency-Key": IDEM}, payload) == "changelog:10233"
    assert key("gitlab", {"X-Atlassian-Webhook-Identifier": "x"}, load("gitlab/push")).startswith("sha256:")


def test_long_values_are_hashed_to_a_bounded_key() -> None:
    long_value = "k" * 5000
    result = key("gitlab", {"Idempotency-Key": long_value}, {})
    assert result == "idem:sha256:" + hashlib.sha256(long_value.encode()).hexdigest()
    assert len(result) <= MAX_KEY


def test_a_value_just_under_the_cap_is_kept() -> None:
    value = "v" * (MAX_KEY - len("idem:"))
    assert key("gitlab", {"Idempotency-Key": value}, {}) == f"idem:{value}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ab\r\ncd", "idem:abcd"),
        ("a\x00b\x7fc\x85d", "idem:abcd"),
        ("\u202eabc\u200b", "idem:abc"),
        ("  abc  ", "idem:abc"),
        ("a\u00a0b\u2028c", "idem:a bc"),
    ],
)
def test_control_and_format_characters_are_stripped(value: str, expected: str) -> None:
    assert key("gitlab", {"Idempotency-Key": value}, {}) == expected


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "note",
        {"object_kind": "note", "object_attributes": "x"},
        {"object_kind": "note", "object_attributes": {"id": True, "updated_at": "t"}},
        {"object_kind": "note", "object_attributes": {"id": 1.5, "updated_at": "t"}},
        {"object_kind": "note", "object_attributes": {"id": 1, "updated_at": ["t"]}},
        {"webhookEvent": "comment_created", "comment": {"id": {"x": 1}}},
        {"webhookEvent": "comment_created", "comment": [1]},
        {"webhookEvent": "jira:issue_updated", "changelog": {"id": None}},
        {"webhookEvent": {"object_kind": "\x00"}, "comment": {"id": "10"}},  # unhashable: was a 500
        {"webhookEvent": ["comment_updated"], "comment": {"id": "10"}},
    ],
)
@pytest.mark.parametrize("source", ["gitlab", "jira"])
def test_odd_payloads_fall_back_to_the_body_hash(source: Any, payload: object) -> None:
    body = b"raw bytes"
    assert delivery_key(source, {}, payload, body) == "sha256:" + hashlib.sha256(body).hexdigest()


def test_note_with_lone_surrogates_still_gives_an_encodable_key() -> None:
    payload = {"object_kind": "note", "object_attributes": {"id": 5, "updated_at": "\ud800x"}}
    result = delivery_key("gitlab", {}, payload, b"")
    assert result == "note:5:x"
    assert result.encode("utf-8") == b"note:5:x"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    source=st.sampled_from(["gitlab", "jira"]),
    headers=st.dictionaries(st.text(max_size=40), st.text(max_size=300), max_size=4),
    payload=json_values,
    body=st.binary(max_size=100),
)
def test_keys_are_always_bounded_and_clean(
    source: Any, headers: dict[str, str], payload: object, body: bytes
) -> None:
    result = delivery_key(source, headers, payload, body)
    assert 0 < len(result) <= MAX_KEY
    assert result.isprintable()
    result.encode("utf-8")
