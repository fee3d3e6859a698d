"""The GitLab simulator merges merge requests like GitLab (`PUT .../merge`): a merge commit on the
target branch, the MR merged with its diff kept, and a Merge Request Hook with `action: merge` that
Baton's handler reads (a `learn` run for one of Baton's branches)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gitlab
import pytest
from gitlab.exceptions import GitlabMRClosedError

from bot.sandbox.gitlab_sim import repo, seed_demo
from bot.sandbox.gitlab_sim.server import GitLabServer
from bot.sandbox.gitlab_sim.state import GitLabState
from bot.sandbox.serve import ServerThread
from bot.triggers import MergeRequestMerged
from handlers import route
from handlers.actions import Enqueue
from handlers.context import HandlerContext
from tests.sandbox.test_gitlab_sim import Receiver, World, add_hook

BRANCH = "baton/DEMO-1-add-mul"
MUL = "def mul(a: float, b: float) -> float:\n    return a * b\n"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    state = GitLabState()
    state.webhook_retry_delays_s = (0.02, 0.05, 0.1)
    demo = seed_demo(state, tmp_path)
    repo.commit_files(demo.project.repo_path, BRANCH, {"mul.py": MUL}, "Add mul", start_from="main")
    with GitLabServer(state) as server:
        yield World(state, demo, server.base_url)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    with ServerThread(rec.app()) as server:
        yield rec, f"{server.base_url}/hook"


def opened(world: World, token: str) -> gitlab.v4.objects.ProjectMergeRequest:
    project = world.client(world.demo.developer.token).projects.get(world.demo.project.id)
    project.mergerequests.create({"source_branch": BRANCH, "target_branch": "main", "title": "Add mul"})
    return world.client(token).projects.get(world.demo.project.id).mergerequests.get(1)


def test_a_maintainer_merges_and_the_hook_starts_learning(
    world: World, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    add_hook(world, url, merge_requests_events=True)
    bare = world.demo.project.repo_path
    main_before, head = repo.branch_head(bare, "main"), repo.branch_head(bare, BRANCH)
    mr = opened(world, world.demo.maintainer.token)
    mr.merge(sha=head)

    main_after = repo.branch_head(bare, "main")
    assert main_after is not None and main_after != main_before
    merge_commit = repo.commit_info(bare, main_after)
    assert merge_commit.parent_ids == (main_before, head)
    assert "See merge request demo/calculator!1" in merge_commit.message
    again = world.client(world.demo.maintainer.token).projects.get(world.demo.project.id).mergerequests.get(1)
    assert (again.state, again.merge_commit_sha) == ("merged", main_after)
    changes = again.changes()
    assert isinstance(changes, dict) and [c["new_path"] for c in changes["changes"]] == ["mul.py"]

    world.state.wait_for(lambda: len(rec.received) == 2)
    headers, body = rec.received[1]
    assert headers["x-gitlab-event"] == "Merge Request Hook"
    assert (body["object_attributes"]["action"], body["object_attributes"]["state"]) == ("merge", "merged")
    action = route("gitlab", body, HandlerContext())
    assert isinstance(action, Enqueue) and action.kind == "learn"
    assert isinstance(action.input, MergeRequestMerged)
    assert (action.input.source_branch, action.input.head_sha, action.input.target_branch) == (
        BRANCH,
        head,
        "main",
    )


def test_merges_gitlab_refuses(world: World) -> None:
    bare = world.demo.project.repo_path
    main_before = repo.branch_head(bare, "main")
    with pytest.raises(GitlabMRClosedError) as forbidden:  # developers may not merge into the default branch
        opened(world, world.demo.developer.token).merge()
    mr = world.client(world.demo.maintainer.token).projects.get(world.demo.project.id).mergerequests.get(1)
    with pytest.raises(GitlabMRClosedError) as moved:  # `sha` is not the source branch's head
        mr.merge(sha="0" * 40)
    assert (forbidden.value.response_code, moved.value.response_code) == (403, 409)
    assert repo.branch_head(bare, "main") == main_before
    mr.merge()
    with pytest.raises(GitlabMRClosedError) as merged:  # merged already
        mr.merge()
    assert merged.value.response_code == 405
