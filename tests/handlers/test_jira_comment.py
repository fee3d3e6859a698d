"""Jira comment events: commands in new comments; edits, deletions and the bot's comments never trigger."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.triggers import JiraReplyTarget, TicketCommand
from handlers import PayloadInvalid, route
from handlers.actions import Enqueue, Ignore, Reply
from handlers.context import HandlerContext

Payload = Callable[..., dict[str, Any]]
CREATED = "jira/comment_created_cloud"
UPDATED = "jira/comment_updated_cloud"
AUTHOR = {
    "account_id": "5c5f880629be9642ba529340",
    "name": "admin",
    "key": "admin",
    "display_name": "Test User",
}


def test_the_recorded_comment_has_no_command(payload: Payload, ctx: HandlerContext) -> None:
    assert route("jira", payload(CREATED), ctx) == Ignore("no command in the comment")


def test_approve_in_a_new_comment(payload: Payload, ctx: HandlerContext) -> None:
    action = route("jira", payload(CREATED, {"comment.body": "Thanks [~user]\n/approve"}), ctx)
    assert action == Enqueue(
        kind="approve",
        subject="jira:TES-41",
        origin="jira:comment:10019",
        input=TicketCommand.model_validate(
            {
                "issue_key": "TES-41",
                "issue_id": "10040",
                "comment_id": "10019",
                "args": "",
                "author": AUTHOR,
            }
        ),
    )


def test_revise_with_arguments(payload: Payload, ctx: HandlerContext) -> None:
    action = route("jira", payload(CREATED, {"comment.body": "/Revise keep the old API"}), ctx)
    assert isinstance(action, Enqueue)
    assert isinstance(action.input, TicketCommand)
    assert (action.kind, action.input.args) == ("revise", "keep the old API")


@pytest.mark.parametrize(
    "body",
    [
        "{code}\n/approve\n{code}",
        "{noformat}\n/approve\n{noformat}",
        "{quote}\n/approve\n{quote}",
        "bq. /approve",
        "I will /approve later",
    ],
)
def test_commands_in_jira_code_or_quotes_never_count(
    payload: Payload, ctx: HandlerContext, body: str
) -> None:
    assert route("jira", payload(CREATED, {"comment.body": body}), ctx) == Ignore("no command in the comment")


def test_the_same_comment_from_issue_updated_has_the_same_origin(
    payload: Payload, ctx: HandlerContext
) -> None:
    created = route("jira", payload(CREATED, {"comment.body": "/approve"}), ctx)
    commented = payload("jira/issue_updated_commented_dc")
    commented["comment"] = payload(CREATED, {"comment.body": "/approve"})["comment"]
    updated = route("jira", commented, ctx)
    assert isinstance(created, Enqueue)
    assert isinstance(updated, Enqueue)
    assert created.origin == updated.origin == "jira:comment:10019"


@pytest.mark.parametrize(
    "author_changes",
    [
        {"comment.author.accountId": "bot-acc"},
        {"comment.author": {"name": "baton", "key": "JIRAUSER10100", "displayName": "Baton"}},
    ],
)
def test_the_bots_own_comments_never_trigger(
    payload: Payload, ctx: HandlerContext, author_changes: dict[str, Any]
) -> None:
    action = route("jira", payload(CREATED, {"comment.body": "/approve", **author_changes}), ctx)
    assert action == Ignore("the bot's own comment")


def test_a_comment_carrying_the_marker_never_triggers(payload: Payload, ctx: HandlerContext) -> None:
    body = "Proposal ready.\n/approve\n<!-- baton:effect=proposal:TES-41:1 -->"
    assert route("jira", payload(CREATED, {"comment.body": body}), ctx) == Ignore("the bot's own comment")


def test_another_user_with_the_bots_display_name_still_triggers(
    payload: Payload, ctx: HandlerContext
) -> None:
    changes = {"comment.body": "/approve", "comment.author.displayName": "baton"}
    assert isinstance(route("jira", payload(CREATED, changes), ctx), Enqueue)


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        (UPDATED, "/approve", "edited comments never trigger"),
        (CREATED, "/approve", "deleted comments never trigger"),
    ],
)
def test_edits_and_deletions_never_trigger(
    payload: Payload, ctx: HandlerContext, name: str, body: str, reason: str
) -> None:
    changes: dict[str, Any] = {"comment.body": body}
    if reason.startswith("deleted"):
        changes["webhookEvent"] = "comment_deleted"
    assert route("jira", payload(name, changes), ctx) == Ignore(reason)


def test_unknown_command_gets_a_reply_on_the_issue(payload: Payload, ctx: HandlerContext) -> None:
    action = route("jira", payload(CREATED, {"comment.body": "/aprove"}), ctx)
    assert isinstance(action, Reply)
    assert (action.subject, action.origin) == ("jira:TES-41", "jira:comment:10019")
    assert action.target == JiraReplyTarget(issue_key="TES-41")
    assert action.text.startswith("[~accountid:5c5f880629be9642ba529340], ")
    assert "{{/aprove}}" in action.text
    assert "{{/approve}}" in action.text
    assert "{{/help}}" in action.text


def test_data_center_reply_mentions_by_name(payload: Payload, ctx: HandlerContext) -> None:
    changes = {"comment.body": "/hlep", "comment.author": {"name": "levbrouk", "key": "levbrouk"}}
    action = route("jira", payload(CREATED, changes), ctx)
    assert isinstance(action, Reply)
    assert action.text.startswith("[~levbrouk], ")


def test_an_unmentionable_author_is_not_mentioned(payload: Payload, ctx: HandlerContext) -> None:
    changes = {
        "comment.body": "/aprove",
        "comment.author": {"name": "x] [~everyone", "displayName": "[~all]"},
    }
    action = route("jira", payload(CREATED, changes), ctx)
    assert isinstance(action, Reply)
    assert "[~" not in action.text


def test_data_center_comment_without_issue_falls_back_to_comment_self(
    payload: Payload, ctx: HandlerContext
) -> None:
    action = route("jira", payload(CREATED, {"issue": ..., "comment.body": "/approve"}), ctx)
    assert isinstance(action, Enqueue)
    assert action.subject == "jira:10040"  # Jira's REST paths accept the id where a key goes
    assert isinstance(action.input, TicketCommand)
    assert (action.input.issue_id, action.input.issue_key) == ("10040", None)


@pytest.mark.parametrize(
    "self_url",
    [
        None,
        "https://jira.example.com/rest/api/2/comment/10019",
        "not a url",
        "/rest/api/2/issue/KEY-1/comment/1",
    ],
)
def test_comment_without_issue_and_unusable_self_is_invalid(
    payload: Payload, ctx: HandlerContext, self_url: str | None
) -> None:
    with pytest.raises(PayloadInvalid, match=r"^issue: missing, and comment\.self names no issue$"):
        route(
            "jira", payload(CREATED, {"issue": ..., "comment.self": self_url, "comment.body": "/status"}), ctx
        )


def test_comment_carrying_the_jira_marker_is_the_bots_own() -> None:
    from bot.effects import with_jira_marker
    from handlers import route
    from handlers.actions import Ignore
    from handlers.context import HandlerContext
    from tests.support.deliveries import fixture

    payload = fixture("jira/comment_created_cloud.json")
    payload["comment"]["body"] = with_jira_marker("/approve", "run:1:reply")
    action = route("jira", payload, HandlerContext())
    assert isinstance(action, Ignore)
