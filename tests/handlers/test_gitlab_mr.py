"""GitLab Merge Request, Push and Pipeline hooks: only new commits on a merge request start anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.triggers import MergeRequestPushed
from handlers import route
from handlers.actions import Enqueue, Ignore
from handlers.context import HandlerContext

Payload = Callable[..., dict[str, Any]]
MR = "gitlab/merge_request_open"
HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
OLDREV = "95790bf891e76fee5e1747ab589903a6a1f80f22"


def test_new_commits_on_a_merge_request(payload: Payload, ctx: HandlerContext) -> None:
    changes = {"object_attributes.action": "update", "object_attributes.oldrev": OLDREV}
    assert route("gitlab", payload(MR, changes), ctx) == Enqueue(
        kind="mr_pushed",
        subject="gitlab:gitlabhq/gitlab-test!1",
        origin=f"gitlab:mr:1:1:push:{HEAD}",
        input=MergeRequestPushed.model_validate(
            {
                "project_id": 1,
                "mr_iid": 1,
                "source_branch": "ms-viewport",
                "head_sha": HEAD,
                "oldrev": OLDREV,
                "actor": {"id": 1, "username": "user1"},
            }
        ),
    )


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("open", "a new merge request starts nothing; reply with a command to ask for something"),
        ("update", "metadata-only update (no new commits)"),
        ("close", "closed merge requests are not handled yet"),
        ("reopen", "reopening a merge request starts nothing"),
        ("merge", "merged merge requests are not handled yet"),
        ("approved", "GitLab approvals are not Baton approvals; reply /approve on the proposal"),
        ("approval", "GitLab approvals are not Baton approvals; reply /approve on the proposal"),
        ("unapproved", "GitLab approvals are not Baton approvals"),
        ("unapproval", "GitLab approvals are not Baton approvals"),
        ("some_future_action", "merge request action 'some_future_action' is not handled"),
    ],
)
def test_other_merge_request_actions_are_ignored(
    payload: Payload, ctx: HandlerContext, action: str, reason: str
) -> None:
    assert route("gitlab", payload(MR, {"object_attributes.action": action}), ctx) == Ignore(reason)


def test_a_merge_request_hook_without_action(payload: Payload, ctx: HandlerContext) -> None:
    action = route("gitlab", payload(MR, {"object_attributes.action": ...}), ctx)
    assert action == Ignore("merge request action '(none)' is not handled")


def test_the_recorded_push_and_pipeline_are_ignored(payload: Payload, ctx: HandlerContext) -> None:
    push = route("gitlab", payload("gitlab/push"), ctx)
    pipeline = route("gitlab", payload("gitlab/pipeline_mr"), ctx)
    assert push == Ignore("push events are not handled; merge request updates carry new commits")
    assert pipeline == Ignore("pipeline events are not handled yet")
