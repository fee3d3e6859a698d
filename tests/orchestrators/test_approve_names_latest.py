"""`/approve <id>` naming an older proposal is refused where it was typed, saying which proposal is the
latest, and nothing is pushed: for a ticket (orchestrators/ship.py) and for an MR thread
(orchestrators/mr_ship.py), against the GitLab and Jira simulators and a real store.

Dropping the `names_latest` check from either `_check` makes that path's cases fail (checked): the
/approve then falls through to the later checks, and with a current newer proposal it would ship that
one, which nobody named. Faster than the e2e refusal in tests/e2e/test_commands.py, and it covers MR
threads, which nothing else did."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import triggers
from bot.sandbox.gitlab_sim import repo
from bot.sandbox.stack import SandboxPorts, SandboxStack, baton_environment
from bot.store import proposals, runs
from bot.store.engine import utcnow
from bot.store.tables import Run
from config.settings import load_settings
from orchestrators.mr_ship import run_approve_mr
from orchestrators.resources import WorkerContext
from orchestrators.ship import run_approve
from shell.services import Services
from shell.wiring import build_clients

OLD_SHA, NEW_SHA = "1" * 40, "2" * 40


@pytest.fixture
def world(tmp_path: Path, services: Services) -> Iterator[tuple[WorkerContext, SandboxStack, Any]]:
    stack = SandboxStack(tmp_path / "sandbox-state", "http://127.0.0.1:9", SandboxPorts.from_base(0))
    config = stack.start()
    state, demo = stack.gitlab_state, stack.demo
    repo.commit_files(demo.project.repo_path, "feature", {"x.txt": "x\n"}, "feature", start_from="main")
    mr = state.create_merge_request(
        demo.project, demo.developer, {"source_branch": "feature", "target_branch": "main", "title": "F"}
    )
    settings = load_settings(
        {**baton_environment(config), "BATON_DATABASE_URL": services.settings.database_url}
    )
    clients = build_clients(settings, services.sm, services.handler_context.skills)
    yield WorkerContext(settings, services.sm, services.queue, "test", clients), stack, mr
    clients.close()
    stack.stop()


async def add_run(
    wctx: WorkerContext, run_id: str, kind: str, subject: str, data: dict[str, Any]
) -> runs.RunRow:
    now = utcnow()
    async with wctx.sm.begin() as session:
        session.add(Run(id=run_id, kind=kind, subject=subject, origin=f"o-{run_id}", status="running",
                        input=dict(data), attempts=1, created_at=now, updated_at=now))  # fmt: skip
    return runs.RunRow(run_id, kind, subject, "running", 1, None, triggers.parse(data), now, now)


async def two_proposals(
    wctx: WorkerContext, subject: str, target: dict[str, Any]
) -> tuple[proposals.ProposalRow, proposals.ProposalRow]:
    """An older and a newer proposal on `subject` (the newer one makes the older stale)."""
    await add_run(wctx, "a" * 32, "implement", subject, {"issue_id": "10001"})
    await add_run(wctx, "b" * 32, "implement", subject, {"issue_id": "10001"})
    old = await proposals.create(wctx.sm, "a" * 32, subject, OLD_SHA, "h1", target)
    new = await proposals.create(wctx.sm, "b" * 32, subject, NEW_SHA, "h2", target)
    return old, new


def named(which: str, old: proposals.ProposalRow) -> str:
    return {"old id": old.id, "old sha": old.sha[:12], "old id, uppercase": old.id.upper()}[which]


OLDER = ["old id", "old sha", "old id, uppercase"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("which", OLDER)
async def test_a_ticket_approve_naming_an_older_proposal_is_refused(
    world: tuple[WorkerContext, SandboxStack, Any], tmp_path: Path, which: str
) -> None:
    wctx, stack, _ = world
    subject, project = "jira:DEMO-1", stack.demo.project
    target = {
        "project_path": project.path_with_namespace, "branch": "baton/DEMO-1-x", "target_branch": "main",
        "worktree": str(tmp_path / "worktree"), "remote_url": "unused",
    }  # fmt: skip
    old, new = await two_proposals(wctx, subject, target)
    author = {"name": "alice", "display_name": "Alice"}
    before, mrs = (
        len(stack.jira_state.issue("DEMO-1").comments),
        len(stack.gitlab_state.merge_requests_of(project)),
    )
    run = await add_run(
        wctx,
        "c" * 32,
        "approve",
        subject,
        {
            "issue_key": "DEMO-1",
            "issue_id": "10001",
            "comment_id": "1",
            "author": author,
            "args": named(which, old),
        },
    )

    outcome = await run_approve(wctx, run)

    assert outcome.status == "succeeded" and outcome.refused and outcome.message.startswith("refused")
    replies = [c.body for c in stack.jira_state.issue("DEMO-1").comments[before:]]
    assert len(replies) == 1
    assert "not the latest proposal" in replies[0] and f"the latest is {new.id}" in replies[0]
    assert len(stack.gitlab_state.merge_requests_of(project)) == mrs  # no merge request opened
    assert repo.branch_head(project.repo_path, target["branch"]) is None  # nothing pushed
    assert (await proposals.get(wctx.sm, new.id)).status == proposals.PROPOSED  # type: ignore[union-attr]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("which", OLDER)
async def test_an_mr_thread_approve_naming_an_older_proposal_is_refused(
    world: tuple[WorkerContext, SandboxStack, Any], tmp_path: Path, which: str
) -> None:
    wctx, stack, mr = world
    state, project, maintainer = stack.gitlab_state, stack.demo.project, stack.demo.maintainer
    note = state.add_note(project, mr, maintainer, "/approve", thread=True)
    subject = f"gitlab:{project.path_with_namespace}!{mr.iid}"
    target = {
        "discussion_id": note.discussion_id, "project_id": project.id, "mr_iid": mr.iid,
        "source_branch": "feature", "worktree": str(tmp_path / "worktree"), "remote_url": "unused",
        "base_sha": "3" * 40,
    }  # fmt: skip
    old, new = await two_proposals(wctx, subject, target)
    head = repo.branch_head(project.repo_path, "feature")
    author = {"id": maintainer.id, "username": maintainer.username}
    data = {"project_id": project.id, "project_path": project.path_with_namespace, "mr_iid": mr.iid,
            "discussion_id": note.discussion_id,
            "note_id": note.id, "author": author, "args": named(which, old)}  # fmt: skip
    run = await add_run(wctx, "c" * 32, "approve_mr", subject, data)

    outcome = await run_approve_mr(wctx, run)

    assert outcome.status == "succeeded" and outcome.refused and outcome.message.startswith("refused")
    replies = [
        n.body for n in state.notes_of(mr) if n.discussion_id == note.discussion_id and n.id != note.id
    ]
    assert len(replies) == 1
    assert "not this thread's latest proposal" in replies[0] and f"the latest is {new.id}" in replies[0]
    assert repo.branch_head(project.repo_path, "feature") == head  # nothing pushed
    assert (await proposals.get(wctx.sm, new.id)).status == proposals.PROPOSED  # type: ignore[union-attr]
