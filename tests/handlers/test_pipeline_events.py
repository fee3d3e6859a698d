"""Pipeline Hook (the recorded merge request pipeline, tests/fixtures/gitlab/pipeline_mr.json): a failed
pipeline on an open merge request from one of Baton's `baton/` branches starts one CI analysis; every
other pipeline event is acknowledged and ignored (2xx), whatever its shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.triggers import Person, PipelineFailed
from handlers import route
from handlers.actions import Enqueue, Ignore
from handlers.context import HandlerContext

Payload = Callable[..., dict[str, Any]]
PIPELINE = "gitlab/pipeline_mr"
BRANCH = "baton/DEMO-1-add-a-multiply-function"
SHA = "bcbb5ec396a2c0f828686f14fac9b80b780504f2"
FAILED_ON_BATON = {"object_attributes.status": "failed", "merge_request.source_branch": BRANCH}


def test_a_failed_pipeline_on_baton_s_merge_request_starts_one_analysis(
    payload: Payload, ctx: HandlerContext
) -> None:
    assert route("gitlab", payload(PIPELINE, FAILED_ON_BATON), ctx) == Enqueue(
        kind="analyze-ci",
        subject="gitlab:gitlab-org/gitlab-test!1",
        origin="gitlab:pipeline:1:31:failed",
        input=PipelineFailed(
            project_id=1, project_path="gitlab-org/gitlab-test", mr_iid=1, pipeline_id=31,
            source_branch=BRANCH, sha=SHA, actor=Person(id=42, username="user1"),
        ),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"object_attributes.status": "running"}, "a 'running' pipeline needs no analysis"),
        ({"object_attributes.status": "pending"}, "a 'pending' pipeline needs no analysis"),
        ({"object_attributes.status": "success"}, "a 'success' pipeline needs no analysis"),
        ({"object_attributes.status": "canceled"}, "a 'canceled' pipeline needs no analysis"),
        ({"merge_request.source_branch": "feature/mine"}, "a merge request Baton did not open"),
        ({"merge_request.source_branch": "baton/"}, "a merge request Baton did not open"),
        ({"merge_request": None}, "a failed pipeline of no merge request"),
        ({"merge_request": ...}, "a failed pipeline of no merge request"),
        ({"merge_request.source_project_id": 99}, "a fork's merge request"),
        ({"merge_request.state": "merged"}, "the merge request is merged"),
    ],
)
def test_other_pipelines_are_ignored(
    payload: Payload, ctx: HandlerContext, changes: dict[str, Any], reason: str
) -> None:
    action = route("gitlab", payload(PIPELINE, {**FAILED_ON_BATON, **changes}), ctx)
    assert isinstance(action, Ignore) and reason in action.reason


@pytest.mark.parametrize(
    "changes",
    [
        {"merge_request.iid": "not a number"},
        {"merge_request.source_branch": ...},
        {"object_attributes.status": 7},
        {"object_attributes": "x"},
        {"user": ["x"]},
        {"project.path_with_namespace": "../../etc"},
    ],
)
def test_malformed_pipeline_hooks_are_ignored_never_refused(
    payload: Payload, ctx: HandlerContext, changes: dict[str, Any]
) -> None:
    """GitLab disables a hook after four failed deliveries: a pipeline event is never a 4xx."""
    assert isinstance(route("gitlab", payload(PIPELINE, {**FAILED_ON_BATON, **changes}), ctx), Ignore)


def test_the_job_hook_starts_nothing(payload: Payload, ctx: HandlerContext) -> None:
    action = route("gitlab", payload("unusual/gitlab/job", {"build_status": "failed"}), ctx)
    assert isinstance(action, Ignore)
