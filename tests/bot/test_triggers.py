"""The trigger models: what ingress stores is what the worker reads back, rows stored before the tag
existed still parse to the same model, and anything else becomes `Unreadable` with its first problem."""

from __future__ import annotations

from typing import Any

import pytest

from bot import triggers
from bot.triggers import (
    JiraReplyTarget,
    MergeRequestMerged,
    MergeRequestPushed,
    Person,
    ReplyRequest,
    ThreadCommand,
    ThreadReplyTarget,
    TicketCommand,
    TicketLabelled,
    Unreadable,
)

ALICE = Person(account_id="5c5f88", display_name="Alice")
DEV = Person(id=14, username="dev")
MODELS: list[triggers.AnyTrigger] = [
    TicketLabelled(issue_key="DEMO-1", issue_id="10001", project_key="DEMO", summary="Add", actor=ALICE),
    TicketLabelled(issue_id="10001", revisions=("keep the name",)),
    TicketCommand(issue_key="DEMO-1", issue_id="10001", comment_id="7", args="abc1234", author=ALICE),
    ThreadCommand(
        project_id=1,
        project_path="demo/calc",
        mr_iid=3,
        note_id=9,
        discussion_id="d" * 40,
        note_type="DiffNote",
        position={"new_line": 12},
        args="fix it",
        author=DEV,
    ),
    MergeRequestPushed(project_id=1, mr_iid=3, source_branch="feature", head_sha="a" * 40, actor=DEV),
    MergeRequestMerged(
        project_id=1,
        project_path="demo/calc",
        mr_iid=3,
        source_branch="baton/DEMO-1-add",
        target_branch="main",
        head_sha="b" * 40,
        web_url="http://gitlab.test/demo/calc/-/merge_requests/3",
        actor=DEV,
    ),
    ReplyRequest(target=JiraReplyTarget(issue_key="DEMO-1"), text="did you mean /approve?"),
    ReplyRequest(target=ThreadReplyTarget(project_id=1, mr_iid=3, discussion_id=None), text="hi"),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.trigger)
def test_what_ingress_stores_is_what_the_worker_reads(model: triggers.AnyTrigger) -> None:
    assert triggers.parse(triggers.dump(model)) == model


# The shapes the previous version stored (no `trigger` tag), as its handlers wrote them.
OLD_ROWS: list[tuple[dict[str, Any], type[triggers.AnyTrigger]]] = [
    (
        {"issue_key": "TES-41", "issue_id": "10040", "project_key": "TES", "summary": "s",
         "actor": {"account_id": "5c", "name": None, "key": None, "display_name": "A"},
         "revisions": ["one"]},
        TicketLabelled,
    ),
    (
        {"issue_key": "TES-41", "issue_id": "10040", "comment_id": "10019", "args": "",
         "author": {"account_id": None, "name": "levbrouk", "key": "levbrouk", "display_name": "Lev"}},
        TicketCommand,
    ),
    (
        {"project_id": 46186758, "project_path": "g/p", "mr_iid": 1, "note_id": 1406328457,
         "discussion_id": "d", "note_type": None, "position": None, "args": "",
         "author": {"id": 14613894, "username": "sbansal1999"}},
        ThreadCommand,
    ),
    (
        {"project_id": 1, "mr_iid": 1, "source_branch": "ms-viewport", "head_sha": "da15", "oldrev": "9579",
         "actor": {"id": 1, "username": "user1"}},
        MergeRequestPushed,
    ),
    ({"target": {"kind": "jira_comment", "issue_key": "TES-41"}, "text": "did you mean"}, ReplyRequest),
]  # fmt: skip


@pytest.mark.parametrize(("row", "model"), OLD_ROWS, ids=[m.__name__ for _, m in OLD_ROWS])
def test_rows_stored_before_the_tag_parse_to_their_model(row: dict[str, Any], model: type) -> None:
    parsed = triggers.parse(row)
    assert isinstance(parsed, model)
    assert triggers.parse(triggers.dump(parsed)) == parsed


def test_an_old_ticket_row_keeps_its_people_and_revisions() -> None:
    parsed = triggers.parse(OLD_ROWS[0][0])
    assert isinstance(parsed, TicketLabelled)
    assert parsed.actor == Person(account_id="5c", display_name="A") and parsed.revisions == ("one",)


HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({}, "issue_id"),  # nothing at all: read as a label trigger without its issue
    ({"trigger": "teleport", "issue_id": "1"}, "teleport"),
    ({"trigger": "thread_command", "project_id": "abc", "project_path": "g/p", "mr_iid": 1, "note_id": 1},
     "project_id"),
    ({"note_id": 1, "project_id": 1, "project_path": "g/p", "mr_iid": [1]}, "mr_iid"),
    ({"comment_id": "1", "issue_id": "2", "author": "alice"}, "author"),
    ({"comment_id": "1", "issue_id": "2", "args": {"$ne": ""}}, "args"),
    ({"text": "x", "target": {"kind": "slack", "channel": "#ops"}}, "target"),
    ({"text": "x", "target": None}, "target"),
    ({"issue_id": "1", "revisions": "not a list"}, "revisions"),
    ({"head_sha": None, "project_id": 1, "mr_iid": 1, "source_branch": "b"}, "head_sha"),
    ({"trigger": "mr_merged", "project_id": 1, "mr_iid": 1, "source_branch": "b", "target_branch": "m"},
     "project_path"),
    ({"project_id": 1, "project_path": "g/p", "mr_iid": 1, "source_branch": "b", "target_branch": ["m"]},
     "target_branch"),
]  # fmt: skip


@pytest.mark.parametrize(("row", "named"), HOSTILE)
def test_hostile_or_broken_rows_become_unreadable_naming_the_problem(row: dict[str, Any], named: str) -> None:
    parsed = triggers.parse(row)
    assert isinstance(parsed, Unreadable)
    assert named in parsed.error and len(parsed.error) <= 300


def test_a_huge_bad_value_does_not_make_a_huge_error() -> None:
    parsed = triggers.parse({"trigger": "x" * 100_000})
    assert isinstance(parsed, Unreadable) and len(parsed.error) <= 300


def test_unknown_keys_from_a_newer_version_are_ignored_not_fatal() -> None:
    parsed = triggers.parse({"issue_id": "1", "added_later": {"x": 1}})
    assert parsed == TicketLabelled(issue_id="1")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (Person(id=7), Person(id=7, username="x"), True),
        (Person(username="dev"), Person(username="dev"), True),
        (Person(account_id="5c"), Person(account_id="5c", display_name="A"), True),
        (Person(name="lev"), Person(name="lev"), True),
        (Person(), Person(), False),  # nobody is not the same as nobody
        (Person(display_name="Alice"), Person(display_name="Alice"), False),  # names are not identities
        (Person(id=7), Person(id=8), False),
    ],
)
def test_same_person_needs_an_equal_identifier(a: Person, b: Person, same: bool) -> None:
    assert a.same_as(b) is same and b.same_as(a) is same


def test_how_a_person_is_called() -> None:
    assert [p.called() for p in (ALICE, DEV, Person(name="lev"), Person())] == [
        "Alice",
        "dev",
        "lev",
        "someone",
    ]
