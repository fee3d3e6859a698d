"""Authorization as data: every role × command against the GitLab simulator, plus the rate limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import triggers
from bot.sandbox.gitlab_sim import repo
from bot.sandbox.stack import SandboxPorts, SandboxStack, baton_environment
from bot.store import inbox, runs
from bot.store.engine import utcnow
from bot.triggers import Person, ThreadCommand
from config.settings import load_settings
from config.skills import default_skills, load_skills
from handlers.actions import Enqueue
from orchestrators.authorize import refusal
from orchestrators.resources import WorkerContext
from shell.services import Services
from shell.wiring import build_clients

ROLES = ("guest", "reporter", "developer", "maintainer", "bot", "author")
#                 guest  reporter developer maintainer bot   author(developer who opened the MR)
EXPECTED = {
    "help": (True, True, True, True, True, True),
    "status": (False, True, True, True, True, True),
    "remediate": (False, False, True, True, True, True),
    "reject": (False, False, True, True, True, True),
    "approve": (False, False, False, True, False, False),
}


@pytest.fixture
def world(tmp_path: Path, services: Services) -> Iterator[tuple[WorkerContext, dict[str, Any]]]:
    stack = SandboxStack(tmp_path / "sandbox-state", "http://127.0.0.1:9", SandboxPorts.from_base(0))
    config = stack.start()
    state, demo = stack.gitlab_state, stack.demo
    author = state.add_user("mr-author", name="Mr Author")
    state.add_member(demo.project, author, 30)
    repo.commit_files(demo.project.repo_path, "feature", {"x.txt": "x\n"}, "feature", start_from="main")
    mr = state.create_merge_request(
        demo.project, author, {"source_branch": "feature", "target_branch": "main", "title": "Feature"}
    )
    environ = {**baton_environment(config), "BATON_DATABASE_URL": services.settings.database_url}
    settings = load_settings(environ)
    clients = build_clients(settings, services.sm, services.handler_context.skills)
    people = {role: getattr(demo, role) for role in ROLES[:-1]} | {"author": author}
    things = {"mr": mr, "people": people, "gitlab_state": state, "project": demo.project}
    yield WorkerContext(settings, services.sm, services.queue, "test", clients), things
    clients.close()
    stack.stop()


def thread_note(user: Any, mr: Any, discussion: str = "d" * 40, note_id: int = 1) -> ThreadCommand:
    return ThreadCommand(
        project_id=mr.project_id, project_path="demo/calculator", mr_iid=mr.iid, note_id=note_id,
        discussion_id=discussion, author=Person(id=user.id, username=user.username),
    )  # fmt: skip


def run_for(kind: str, user: Any, mr: Any, trigger: ThreadCommand | None = None) -> runs.RunRow:
    now, subject = utcnow(), f"gitlab:demo/calculator!{mr.iid}"
    return runs.RunRow(
        "r" * 32, kind, subject, "running", 1, None, trigger or thread_note(user, mr), now, now
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", sorted(EXPECTED))
async def test_every_role_and_command(world: tuple[WorkerContext, dict[str, Any]], kind: str) -> None:
    wctx, things = world
    for role, allowed in zip(ROLES, EXPECTED[kind], strict=True):
        refused = await refusal(wctx, run_for(kind, things["people"][role], things["mr"]), default_skills())
        assert (refused is None) == allowed, f"{role} /{kind}: {refused}"
        if refused is not None:
            reason = refused[1]
            assert f"/{kind}" in reason and ("access" in reason or "author" in reason)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_manifest_decides(world: tuple[WorkerContext, dict[str, Any]]) -> None:
    wctx, things = world
    strict = load_skills(
        "skills:\n"
        "  - {name: help, orchestrator: help, help: h, gitlab_min_access: owner, gitlab_users: [guest]}\n"
    )
    assert await refusal(wctx, run_for("help", things["people"]["guest"], things["mr"]), strict) is None
    refused = await refusal(wctx, run_for("help", things["people"]["maintainer"], things["mr"]), strict)
    assert refused is not None and "owner access" in refused[1] and "@guest" in refused[1]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_three_triggers_per_person_per_mr_in_fifteen_minutes(
    world: tuple[WorkerContext, dict[str, Any]], services: Services
) -> None:
    wctx, things = world
    dev, mr = things["people"]["developer"], things["mr"]
    subject = f"gitlab:demo/calculator!{mr.iid}"
    for n in range(3):
        action = Enqueue("remediate", subject, f"o{n}", thread_note(dev, mr, note_id=n))
        await inbox.record(services.sm, inbox.Incoming("gitlab", f"k{n}", "Note Hook", {}), action)
    refused = await refusal(wctx, run_for("remediate", dev, mr), default_skills())
    assert refused is not None and "at most 3" in refused[1]
    other = await refusal(wctx, run_for("remediate", things["people"]["maintainer"], mr), default_skills())
    assert other is None  # the limit is per person


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("role", "command"), [("guest", "remediate"), ("developer", "approve"), ("author", "approve")]
)
async def test_a_refused_command_gets_one_reply_in_its_thread(
    world: tuple[WorkerContext, dict[str, Any]], role: str, command: str
) -> None:
    from shell.worker import _refused

    wctx, things = world
    state = wctx.need_clients()  # the clients talk to the simulator; read the simulator's own state below
    user, mr = things["people"][role], things["mr"]
    gitlab_state = things["gitlab_state"]
    note = gitlab_state.add_note(things["project"], mr, user, f"/{command}", thread=True)
    run = run_for(command, user, mr, thread_note(user, mr, note.discussion_id, note.id))
    async with wctx.sm.begin() as session:  # the run must exist for the refusal to be recorded
        from bot.store.tables import Run

        session.add(Run(id=run.id, kind=run.kind, subject=run.subject, origin=f"o-{role}-{command}",
                        status="running", input=triggers.dump(run.trigger), attempts=1,
                        created_at=run.created, updated_at=run.updated))  # fmt: skip
    assert await _refused(wctx, run, state.skills)
    replies = [
        n.body for n in gitlab_state.notes_of(mr) if n.discussion_id == note.discussion_id and n.id != note.id
    ]
    assert len(replies) == 1
    assert f"@{user.username}" in replies[0] and f"/{command}" in replies[0]
    assert "maintainer" in replies[0] or "author" in replies[0] or "developer" in replies[0]
    assert (await runs.get(wctx.sm, run.id)).status == "succeeded"
