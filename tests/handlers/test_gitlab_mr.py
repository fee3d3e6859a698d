"""GitLab Merge Request, Push and Pipeline hooks: new commits on a merge request, and the merge of a
merge request on one of Baton's branches, start something; nothing else does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.triggers import MergeRequestMerged, MergeRequestPushed, Person
from handlers import PayloadInvalid, route
from handlers.actions import Enqueue, Ignore
from handlers.context import HandlerContext

Payload = Callable[..., dict[str, Any]]
MR = "gitlab/merge_request_open"
HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
OLDREV = "95790bf891e76fee5e1747ab589903a6a1f80f22"
PASSED = "a 'success' pipeline needs no analysis (only failed ones on Baton's merge requests)"


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
        ("merge", "the merged branch is not one Baton made; nothing to learn from"),
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
    assert pipeline == Ignore(PASSED)


# The recorded hook is an `open`; GitLab sends the merge as the same hook with `action: merge` and
# `state: merged` (PROTOCOLS.md §A3), so the merge cases are derived from it.
MERGED = {"object_attributes.action": "merge", "object_attributes.state": "merged"}
BRANCH = "baton/DEMO-1-add-a-multiply-function"


def test_the_merge_of_a_baton_branch_starts_learn(payload: Payload, ctx: HandlerContext) -> None:
    merged = payload(MR, {**MERGED, "object_attributes.source_branch": BRANCH})
    assert route("gitlab", merged, ctx) == Enqueue(
        kind="learn",
        subject="gitlab:gitlabhq/gitlab-test!1",
        origin="gitlab:mr:1:1:merge",
        input=MergeRequestMerged(
            project_id=1,
            project_path="gitlabhq/gitlab-test",
            mr_iid=1,
            source_branch=BRANCH,
            target_branch="master",
            head_sha=HEAD,
            web_url="http://example.com/diaspora/merge_requests/1",
            actor=Person(id=1, username="user1"),
        ),
    )


@pytest.mark.parametrize(
    "branch",
    ["ms-viewport", "baton", "baton/", "feature/baton/DEMO-1", "Baton/DEMO-1-x", "batonx/DEMO-1"],
)
def test_the_merge_of_any_other_branch_is_ignored(payload: Payload, ctx: HandlerContext, branch: str) -> None:
    merged = payload(MR, {**MERGED, "object_attributes.source_branch": branch})
    assert route("gitlab", merged, ctx) == Ignore(
        "the merged branch is not one Baton made; nothing to learn from"
    )


@pytest.mark.parametrize("action", ["close", "update", "open", "reopen", "approved"])
def test_other_actions_on_a_baton_branch_start_no_learning(
    payload: Payload, ctx: HandlerContext, action: str
) -> None:
    event = payload(MR, {"object_attributes.action": action, "object_attributes.source_branch": BRANCH})
    result = route("gitlab", event, ctx)
    assert not (isinstance(result, Enqueue) and result.kind == "learn")


def test_two_deliveries_of_one_merge_make_one_origin(payload: Payload, ctx: HandlerContext) -> None:
    """GitLab may send the merge hook again (a retry, a second hook): the run's origin is the merge itself."""
    first = route("gitlab", payload(MR, {**MERGED, "object_attributes.source_branch": BRANCH}), ctx)
    again = payload(
        MR, {**MERGED, "object_attributes.source_branch": BRANCH, "object_attributes.updated_at": "x"}
    )
    second = route("gitlab", again, ctx)
    assert isinstance(first, Enqueue) and isinstance(second, Enqueue) and first.origin == second.origin


def test_a_malformed_merge_of_a_baton_branch_is_refused_not_ignored(
    payload: Payload, ctx: HandlerContext
) -> None:
    broken = payload(MR, {**MERGED, "object_attributes.source_branch": BRANCH, "project.id": "not a number"})
    with pytest.raises(PayloadInvalid, match=r"project\.id"):
        route("gitlab", broken, ctx)
    other = payload(MR, {**MERGED, "project.id": "not a number"})
    assert isinstance(route("gitlab", other, ctx), Ignore)
