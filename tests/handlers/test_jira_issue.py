"""Jira `jira:issue_updated`: the trigger label starts `implement`; commented updates act like comments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.triggers import Person, TicketCommand, TicketLabelled
from handlers import route
from handlers.actions import Enqueue, Ignore
from handlers.context import BotIdentity, HandlerContext

Payload = Callable[..., dict[str, Any]]
LABELS = "jira/issue_updated_labels"
COMMENTED = "jira/issue_updated_commented_dc"
ACTOR = {
    "account_id": "5c5f880629be9642ba529340",
    "name": "admin",
    "key": "admin",
    "display_name": "Test User",
}
LABELLED = TicketLabelled.model_validate(
    {
        "issue_key": "TES-41",
        "issue_id": "10040",
        "project_key": "TES",
        "summary": "Unit test summary 1",
        "actor": ACTOR,
    }
)


@pytest.mark.parametrize(
    ("ctx", "kind"),
    [(HandlerContext(trigger_label="sad"), "implement"), (HandlerContext(design_label="sad"), "design")],
    ids=["trigger label", "design label"],
)
def test_the_recorded_label_change_triggers_when_its_label_is_configured(
    payload: Payload, ctx: HandlerContext, kind: str
) -> None:
    """The trigger label starts `implement`; the design label a `design` run of the same trigger."""
    action = route("jira", payload(LABELS), ctx)
    assert action == Enqueue(kind=kind, subject="jira:TES-41", origin="jira:changelog:10233", input=LABELLED)


def test_the_recorded_label_change_with_the_default_trigger_label(payload: Payload) -> None:
    assert route("jira", payload(LABELS), HandlerContext()) == Ignore("no 'ai-implement' label added")


@pytest.mark.parametrize(
    ("from_string", "to_string", "triggers"),
    [
        ("bad test-label", "sad test-label", True),
        (None, "sad", True),
        ("", "sad", True),
        ("sad", "sad test-label", False),  # already there: another label was added
        ("sad test-label", "test-label", False),  # removed
        ("bad", "bad", False),
        ("bad", "sadder", False),
        ("bad", "SAD", False),  # Jira labels are case-sensitive
        ("bad", None, False),
        ("bad", "  sad\ttest-label  ", True),
    ],
)
def test_only_adding_the_trigger_label_triggers(
    payload: Payload, from_string: str | None, to_string: str | None, triggers: bool
) -> None:
    changes = {"changelog.items.0.fromString": from_string, "changelog.items.0.toString": to_string}
    action = route("jira", payload(LABELS, changes), HandlerContext(trigger_label="sad"))
    assert isinstance(action, Enqueue) is triggers


def test_a_label_item_among_others(payload: Payload) -> None:
    items = [
        {"field": "summary", "fromString": "a", "toString": "b"},
        {"field": "labels", "fromString": "", "toString": "ai-implement"},
    ]
    action = route("jira", payload(LABELS, {"changelog.items": items}), HandlerContext())
    assert isinstance(action, Enqueue)
    assert action.kind == "implement"


def test_another_field_named_like_a_label_change_does_not_trigger(payload: Payload) -> None:
    changes = {"changelog.items.0.field": "Component", "changelog.items.0.toString": "ai-implement"}
    assert isinstance(route("jira", payload(LABELS, changes), HandlerContext()), Ignore)


def test_origin_falls_back_to_the_issue_and_timestamp(payload: Payload) -> None:
    action = route("jira", payload(LABELS, {"changelog.id": ...}), HandlerContext(trigger_label="sad"))
    assert isinstance(action, Enqueue)
    assert action.origin == "jira:issue:10040:labels:1550351530065"


def test_changelog_id_may_be_a_number(payload: Payload) -> None:
    action = route("jira", payload(LABELS, {"changelog.id": 10233}), HandlerContext(trigger_label="sad"))
    assert isinstance(action, Enqueue)
    assert action.origin == "jira:changelog:10233"


def test_the_bot_adding_the_label_itself_does_not_trigger(payload: Payload) -> None:
    ctx = HandlerContext(bot=BotIdentity(jira_account_id="5c5f880629be9642ba529340"), trigger_label="sad")
    assert route("jira", payload(LABELS), ctx) == Ignore("the bot added the label itself")


def test_data_center_actor_without_account_id(payload: Payload) -> None:
    changes = {"user": {"name": "levbrouk", "key": "levbrouk", "displayName": "Lev Brouk"}}
    action = route("jira", payload(LABELS, changes), HandlerContext(trigger_label="sad"))
    assert isinstance(action, Enqueue)
    assert isinstance(action.input, TicketLabelled)
    assert action.input.actor == Person.model_validate(
        {
            "account_id": None,
            "name": "levbrouk",
            "key": "levbrouk",
            "display_name": "Lev Brouk",
        }
    )


def test_the_recorded_commented_update_has_no_command(payload: Payload, ctx: HandlerContext) -> None:
    assert route("jira", payload(COMMENTED), ctx) == Ignore("no command in the comment")


def test_a_commented_update_is_handled_like_comment_created(payload: Payload, ctx: HandlerContext) -> None:
    action = route("jira", payload(COMMENTED, {"comment.body": "/approve"}), ctx)
    assert action == Enqueue(
        kind="approve",
        subject="jira:PRJX-14",
        origin="jira:comment:10082",
        input=TicketCommand.model_validate(
            {
                "issue_key": "PRJX-14",
                "issue_id": "10013",
                "comment_id": "10082",
                "args": "",
                "author": {
                    "account_id": None,
                    "name": "levbrouk",
                    "key": "levbrouk",
                    "display_name": "Lev Brouk",
                },
            }
        ),
    )


@pytest.mark.parametrize("event_type", ["issue_comment_edited", "issue_comment_deleted"])
def test_edited_comment_updates_never_trigger(payload: Payload, ctx: HandlerContext, event_type: str) -> None:
    changes = {"comment.body": "/approve", "issue_event_type_name": event_type}
    assert route("jira", payload(COMMENTED, changes), ctx) == Ignore(
        "edited or deleted comments never trigger"
    )


def test_an_update_without_changelog_or_comment(payload: Payload, ctx: HandlerContext) -> None:
    changes = {"changelog": ..., "issue_event_type_name": "issue_generic"}
    assert route("jira", payload(LABELS, changes), ctx) == Ignore("no 'ai-implement' label added")


@pytest.mark.parametrize(
    ("to_string", "kind"),
    [
        ("ai-design", "design"),
        ("ai-implement", "implement"),
        ("ai-design ai-implement", "implement"),  # both at once: the trigger label wins
        ("ai-designer", None),
        ("AI-DESIGN", None),
    ],
)
def test_which_label_starts_which_run(payload: Payload, to_string: str, kind: str | None) -> None:
    changes = {"changelog.items.0.fromString": "", "changelog.items.0.toString": to_string}
    action = route("jira", payload(LABELS, changes), HandlerContext())
    assert (action.kind if isinstance(action, Enqueue) else None) == kind


def test_the_bot_adding_the_design_label_starts_nothing(payload: Payload) -> None:
    changes = {"changelog.items.0.fromString": "", "changelog.items.0.toString": "ai-design"}
    ctx = HandlerContext(bot=BotIdentity(jira_account_id=ACTOR["account_id"]))
    assert route("jira", payload(LABELS, changes), ctx) == Ignore("the bot added the label itself")
