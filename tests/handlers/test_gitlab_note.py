"""GitLab Note Hook: commands in merge request notes, and every note that must never trigger."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.triggers import ThreadCommand, ThreadReplyTarget
from handlers import route
from handlers.actions import Enqueue, Ignore, Reply
from handlers.context import HandlerContext

Payload = Callable[..., dict[str, Any]]

NOTE = "gitlab/note_mr_comment"
SUBJECT = "gitlab:sbansal1999/testing-zulip-gitlab-integration!1"
ORIGIN = "gitlab:note:46186758:1406328457"
DISCUSSION = "547c7f02ebb7bbdef59e006756cc5b4a09de710a"
POSITION = {
    "base_sha": "a" * 40,
    "start_sha": "b" * 40,
    "head_sha": "c" * 40,
    "old_path": "app/models/user.rb",
    "new_path": "app/models/user.rb",
    "position_type": "text",
    "old_line": 258,
    "new_line": None,
    "line_range": {
        "start": {"line_code": "d" * 40 + "_258_", "type": "old", "old_line": 258, "new_line": None},
        "end": {"line_code": "d" * 40 + "_258_", "type": "old", "old_line": 258, "new_line": None},
    },
    "x-unknown": {"deep": [1, 2, 3]},
}


def test_the_recorded_note_has_no_command(payload: Payload, ctx: HandlerContext) -> None:
    assert route("gitlab", payload(NOTE), ctx) == Ignore("no command in the note")


def test_approve_in_a_top_level_note(payload: Payload, ctx: HandlerContext) -> None:
    action = route("gitlab", payload(NOTE, {"object_attributes.note": "Looks right.\n/approve"}), ctx)
    assert action == Enqueue(
        kind="approve",
        subject=SUBJECT,
        origin=ORIGIN,
        input=ThreadCommand.model_validate(
            {
                "project_id": 46186758,
                "project_path": "sbansal1999/testing-zulip-gitlab-integration",
                "mr_iid": 1,
                "note_id": 1406328457,
                "discussion_id": DISCUSSION,
                "note_type": None,
                "position": None,
                "args": "",
                "author": {"id": 14613894, "username": "sbansal1999"},
            }
        ),
    )


def test_remediate_in_a_diff_thread_reply_carries_the_position(payload: Payload, ctx: HandlerContext) -> None:
    changes: dict[str, Any] = {
        "object_attributes.note": "/fix handle the nil user",
        "object_attributes.type": "DiffNote",
        "object_attributes.position": POSITION,
    }
    action = route("gitlab", payload(NOTE, changes), ctx)
    assert isinstance(action, Enqueue)
    assert isinstance(action.input, ThreadCommand)
    assert (action.kind, action.input.args, action.input.note_type) == (
        "remediate",
        "handle the nil user",
        "DiffNote",
    )
    assert action.input.discussion_id == DISCUSSION
    position = action.input.position
    assert position is not None
    assert position["old_line"] == 258
    assert position["new_path"] == "app/models/user.rb"
    assert position["line_range"]["start"]["type"] == "old"
    assert "x-unknown" not in position


def test_the_first_known_command_wins(payload: Payload, ctx: HandlerContext) -> None:
    note = "/aprove\n/revise use the cache\n/approve"
    action = route("gitlab", payload(NOTE, {"object_attributes.note": note}), ctx)
    assert isinstance(action, Enqueue)
    assert isinstance(action.input, ThreadCommand)
    assert (action.kind, action.input.args) == ("revise", "use the cache")


def test_unknown_command_gets_a_did_you_mean_reply_in_the_thread(
    payload: Payload, ctx: HandlerContext
) -> None:
    changes = {"object_attributes.note": "/aprove", "object_attributes.type": "DiscussionNote"}
    action = route("gitlab", payload(NOTE, changes), ctx)
    assert isinstance(action, Reply)
    assert (action.subject, action.origin) == (SUBJECT, ORIGIN)
    assert action.target == ThreadReplyTarget(
        project_id=46186758,
        mr_iid=1,
        discussion_id=DISCUSSION,
    )
    assert action.text.startswith("@sbansal1999, ")
    assert "`/aprove`" in action.text
    assert "`/approve`" in action.text
    assert "`/help`" in action.text


def test_reply_does_not_mention_an_unusual_username(payload: Payload, ctx: HandlerContext) -> None:
    changes = {"object_attributes.note": "/aprove", "user.username": "@all everyone"}
    action = route("gitlab", payload(NOTE, changes), ctx)
    assert isinstance(action, Reply)
    assert "@all" not in action.text


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        ("/tmp is full again", "no known command in the note"),
        ("great idea\n/s", "no known command in the note"),
        ("> /approve", "no command in the note"),
        ("```\n/approve\n```", "no command in the note"),
        ("please /approve", "no command in the note"),
    ],
)
def test_notes_without_a_usable_command(
    payload: Payload, ctx: HandlerContext, note: str, reason: str
) -> None:
    assert route("gitlab", payload(NOTE, {"object_attributes.note": note}), ctx) == Ignore(reason)


BOT_NOTES: list[tuple[str, dict[str, Any]]] = [
    ("by user id", {"user.id": 83}),
    ("by author id", {"object_attributes.author_id": 83}),
    ("by username", {"user.username": "baton-bot"}),
    ("by username, other case", {"user.username": "Baton-Bot"}),
    ("by marker", {"object_attributes.note": "/approve\n\n<!-- baton:effect=proposal:1 -->"}),
]


@pytest.mark.parametrize(("label", "changes"), BOT_NOTES, ids=[label for label, _ in BOT_NOTES])
def test_the_bots_own_notes_never_trigger(
    payload: Payload, ctx: HandlerContext, label: str, changes: dict[str, Any]
) -> None:
    changes = {"object_attributes.note": "/approve", **changes}
    assert route("gitlab", payload(NOTE, changes), ctx) == Ignore("the bot's own note")


def test_without_a_configured_bot_identity_only_the_marker_identifies_it(payload: Payload) -> None:
    changes = {"object_attributes.note": "/approve", "user.id": 83, "user.username": "baton-bot"}
    action = route("gitlab", payload(NOTE, changes), HandlerContext())
    assert isinstance(action, Enqueue)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"object_attributes.system": True}, "system note"),
        ({"object_attributes.action": "update"}, "edited notes never trigger"),
        ({"event_type": "confidential_note"}, "confidential or internal note"),
        ({"object_attributes.internal": True}, "confidential or internal note"),
        ({"object_attributes.confidential": True}, "confidential or internal note"),
        (
            {"object_attributes.noteable_type": "Issue", "issue": {"iid": 3}},
            "notes on 'Issue' are not handled yet",
        ),
        ({"object_attributes.noteable_type": "Commit"}, "notes on 'Commit' are not handled yet"),
        ({"object_attributes.noteable_type": "Snippet"}, "notes on 'Snippet' are not handled yet"),
    ],
)
def test_notes_that_never_trigger(
    payload: Payload, ctx: HandlerContext, changes: dict[str, Any], reason: str
) -> None:
    changes = {"object_attributes.note": "/approve", **changes}
    assert route("gitlab", payload(NOTE, changes), ctx) == Ignore(reason)


def test_a_new_note_with_action_create_triggers(payload: Payload, ctx: HandlerContext) -> None:
    changes = {"object_attributes.note": "/status", "object_attributes.action": "create"}
    action = route("gitlab", payload(NOTE, changes), ctx)
    assert isinstance(action, Enqueue)
    assert action.kind == "status"
