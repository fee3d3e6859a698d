"""The world the workflow table tests run in: a migrated SQLite store, the recording fakes of the ports
(tests/support/fakes.py), and runs created the way ingress creates them.

A run starts from a recorded webhook payload (tests/fixtures/) with the command text and author swapped
in, goes through `handlers.route` and `bot.store.inbox.record`, and is executed by the worker's own job
function (`shell.worker.run_job`: claim, authorization, the registered workflow, the outcome recorded).
Nothing here reads a run's input: tests look at what the fakes recorded and at the store.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bot.clients.gitlab import GitLabUser, Note
from bot.queue import Queue
from bot.store import inbox, proposals, runs, status
from bot.store.effects import StoreEffectLedger
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.store.runs import RunRow
from config.projects import Approvers, Project, ProjectMap
from config.settings import Settings, load_settings
from handlers import route
from handlers.actions import Enqueue, Ignore, Reply
from handlers.context import BotIdentity, HandlerContext
from orchestrators.registry import WORKFLOWS
from orchestrators.resources import WorkerContext
from orchestrators.threads import TARGET_KIND
from shell.worker import run_job
from tests.support.deliveries import fixture, label_added
from tests.support.fakes import FakeQueue, FakeWorld

# The recorded fixtures' own names: Jira ticket TES-41 (project TES, reporter "admin"), GitLab project
# sbansal1999/testing-zulip-gitlab-integration (id 46186758) and its merge request !1 from `feature`.
ISSUE = "TES-41"
PROJECT_ID = 46186758
PROJECT_PATH = "sbansal1999/testing-zulip-gitlab-integration"
MR_IID = 1
SOURCE_BRANCH = "feature"
APPROVERS_GROUP = "baton-approvers"


@dataclass(frozen=True)
class JiraPerson:
    account_id: str
    name: str
    display_name: str


@dataclass(frozen=True)
class GitLabPerson:
    id: int
    username: str

    @property
    def user(self) -> GitLabUser:
        return GitLabUser(self.id, self.username, self.username.title())


REQUESTER = JiraPerson("5c5f880629be9642ba529340", "admin", "Test User")  # added the label (fixture)
APPROVER = JiraPerson("acc-approver-0001", "ann", "Ann Approver")
OUTSIDER = JiraPerson("acc-outsider-0002", "olaf", "Olaf Outsider")
MAINTAINER = GitLabPerson(600, "mia")
DEVELOPER = GitLabPerson(601, "dev")
REVIEWER = GitLabPerson(602, "rita")
MR_AUTHOR = GitLabPerson(603, "author")
BOT = BotIdentity(gitlab_user_id=1, gitlab_username="baton-bot", jira_account_id="baton-bot-account")


def settings_for(tmp_path: Path) -> Settings:
    return load_settings(
        {
            "BATON_STATE_DIR": str(tmp_path / "state"),
            "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}",
            "BATON_REDIS_URL": "redis://127.0.0.1:9/0",
            "BATON_GITLAB_URL": "https://gitlab.example.test",
            "BATON_GITLAB_TOKEN": "gitlab-api-token-for-tests",
            "BATON_GITLAB_WEBHOOK_SECRET": "gitlab-webhook-secret-for-tests",
            "BATON_JIRA_URL": "https://jira.example.test",
            "BATON_JIRA_TOKEN": "jira-api-token-for-tests",
            "BATON_JIRA_WEBHOOK_SECRET": "jira-webhook-secret-for-tests",
            "BATON_JIRA_BOT_ACCOUNT_ID": "baton-bot-account",
        }
    )


def project_map(**approvers: Any) -> ProjectMap:
    """TES ↔ the fixture's GitLab project; approvers: the group `baton-approvers` unless given."""
    chosen = Approvers(**(approvers or {"jira_groups": (APPROVERS_GROUP,)}))
    return ProjectMap(projects=(Project(jira_project="TES", gitlab_project=PROJECT_PATH, approvers=chosen),))


# --- payloads: the recorded fixtures, with the command and its author swapped in --------------------

_ids = itertools.count(70_000)


def jira_comment(body: str, who: JiraPerson) -> dict[str, Any]:
    payload = copy.deepcopy(fixture("jira/comment_created_cloud.json"))
    comment = payload["comment"]
    comment["id"] = str(next(_ids))
    comment["body"] = body
    for key in ("author", "updateAuthor"):
        comment[key].update(
            accountId=who.account_id, name=who.name, key=who.name, displayName=who.display_name
        )
    return payload


def gitlab_note(body: str, who: GitLabPerson, note: Note, discussion_id: str) -> dict[str, Any]:
    """A Note Hook for `note` (already in the fake GitLab) in `discussion_id` of MR !1."""
    payload = copy.deepcopy(fixture("gitlab/note_mr_comment.json"))
    attrs = payload["object_attributes"]
    attrs.update(note=body, description=body, id=note.id, discussion_id=discussion_id, type=note.type)
    attrs["author_id"] = who.id
    payload["user"].update(id=who.id, username=who.username, name=who.username.title())
    return payload


# --- the world --------------------------------------------------------------------------------------


@dataclass
class Table:
    """One table case's world: store, fakes, worker context; `deliver` starts runs, `job` executes them."""

    tmp_path: Path
    settings: Settings
    wctx: WorkerContext
    fakes: FakeWorld
    queue: FakeQueue
    handler_context: HandlerContext = field(default_factory=lambda: HandlerContext(bot=BOT))

    @property
    def sm(self) -> Any:
        return self.wctx.sm

    def use_projects(self, projects: ProjectMap) -> None:
        clients = self.fakes.clients(projects)
        self.wctx = WorkerContext(self.settings, self.sm, cast(Queue, self.queue), "table-worker", clients)

    async def deliver(self, source: str, payload: dict[str, Any]) -> str:
        """What ingress does with a verified delivery; returns the id of the run it started."""
        action = route(source, payload, self.handler_context)  # type: ignore[arg-type]
        assert isinstance(action, Enqueue | Reply), f"the delivery started no run: {action}"
        incoming = inbox.Incoming(source, uuid.uuid4().hex, "table", payload, "table")
        recorded = await inbox.record(self.sm, incoming, action)
        assert recorded.run_id is not None
        return recorded.run_id

    async def ignored(self, source: str, payload: dict[str, Any]) -> str:
        action = route(source, payload, self.handler_context)  # type: ignore[arg-type]
        assert isinstance(action, Ignore)
        return action.reason

    async def job(self, run_id: str) -> RunRow:
        """One worker job for the run (`shell.worker.run_job`); the run as stored afterwards."""
        await run_job({"baton": self.wctx, "workflows": WORKFLOWS}, run_id)
        return await self.run(run_id)

    async def run(self, run_id: str) -> RunRow:
        row = await runs.by_id(self.sm, run_id)
        assert row is not None
        return row

    async def last_message(self, run_id: str) -> str:
        """The message of the run's last recorded outcome (its activity)."""
        activity = (await runs.detail(self.sm, run_id))["activity"]
        return str(activity[-1]["message"]) if activity else ""

    async def waiting(self, run_id: str, message: str = "proposal posted; waiting for /approve") -> None:
        """The run as its propose phase leaves it: claimed, then waiting for a person."""
        assert await runs.claim(self.sm, run_id, "table-worker") is not None
        await runs.finish(self.sm, run_id, status.WAITING, "table-worker", message)

    def forget_setup(self) -> None:
        """Drop what setting the case up recorded, so `calls` hold only the job's writes."""
        for fake in (self.fakes.gitlab, self.fakes.jira, self.fakes.workspace, self.queue):
            fake.calls.clear()
        self.fakes.journal.clear()

    def writes(self) -> list[str]:
        """The names of the job's writes, in order, across GitLab, Jira, the workspace and the queue."""
        return self.fakes.writes()


@asynccontextmanager
async def table(tmp_path: Path, projects: ProjectMap | None = None) -> AsyncIterator[Table]:
    settings = settings_for(tmp_path)
    engine = create_engine(settings.async_database_url)
    await upgrade(engine)
    sm = sessionmaker(engine)
    fakes = FakeWorld.build(tmp_path / "workspace", StoreEffectLedger(sm))
    queue = FakeQueue(fakes.journal)
    clients = fakes.clients(projects or project_map())
    wctx = WorkerContext(settings, sm, cast(Queue, queue), "table-worker", clients)
    try:
        yield Table(tmp_path, settings, wctx, fakes, queue)
    finally:
        await engine.dispose()


# --- what propose leaves behind -----------------------------------------------------------------------


async def worktree_commit(t: Table, run_id: str, base_ref: str, branch: str, change: str) -> tuple[Path, str]:
    """The run's worktree from `base_ref` with one committed change, as implement and propose leave it."""
    workspace = t.fakes.workspace
    await workspace.ensure_mirror(PROJECT_PATH, t.fakes.gitlab.projects[PROJECT_ID].http_url_to_repo, None)
    worktree = await workspace.create_worktree(PROJECT_PATH, run_id, base_ref, branch)
    (worktree / "calc.py").write_text(change)
    return worktree, await workspace.commit_all(worktree, f"change for run {run_id[:12]}")


async def ticket_proposal(t: Table, run_id: str, change: str = "def add(a, b):\n    return a + b\n") -> Any:
    """An `implement` run's proposal on TES-41: its branch committed in a worktree, the target stored."""
    branch = f"baton/TES-41-{run_id[:8]}"
    worktree, sha = await worktree_commit(t, run_id, "main", branch, change)
    project = t.fakes.gitlab.projects[PROJECT_ID]
    target = {
        "kind": "jira", "issue_key": ISSUE, "worktree": str(worktree), "branch": branch,
        "project_path": PROJECT_PATH, "target_branch": "main", "remote_url": project.http_url_to_repo,
        "project_id": PROJECT_ID,
    }  # fmt: skip
    return await proposals.create(t.sm, run_id, f"jira:{ISSUE}", sha, f"diff-{sha[:8]}", target)


async def thread_proposal(t: Table, run_id: str, discussion_id: str, change: str = "fixed\n") -> Any:
    """A `remediate` run's proposal in a thread of MR !1: a commit on top of the branch head."""
    gitlab = t.fakes.gitlab
    base = await gitlab.branch_head(PROJECT_ID, SOURCE_BRANCH)
    assert base is not None
    branch = f"baton/mr-{MR_IID}-{run_id[:12]}"
    worktree, sha = await worktree_commit(t, run_id, f"refs/remotes/origin/{SOURCE_BRANCH}", branch, change)
    project = gitlab.projects[PROJECT_ID]
    target = {
        "kind": TARGET_KIND, "mr_iid": MR_IID, "discussion_id": discussion_id, "overview": False,
        "worktree": str(worktree), "resolve": [discussion_id], "project_id": PROJECT_ID,
        "project_path": PROJECT_PATH, "source_branch": SOURCE_BRANCH, "base_sha": base,
        "remote_url": project.http_url_to_repo, "web_url": project.web_url, "branch": branch,
    }  # fmt: skip
    return await proposals.create(
        t.sm, run_id, f"gitlab:{PROJECT_PATH}!{MR_IID}", sha, f"d-{sha[:8]}", target
    )


def seed_gitlab(t: Table) -> None:
    """The fixture's project and MR !1 (by MR_AUTHOR), its `main` and `feature` branches, the members."""
    gitlab, workspace = t.fakes.gitlab, t.fakes.workspace
    project = gitlab.add_project(PROJECT_PATH, PROJECT_ID)
    main = workspace.seed(project.http_url_to_repo, "main", {"calc.py": "def add(a, b):\n    pass\n"})
    workspace.seed(
        project.http_url_to_repo, SOURCE_BRANCH, {"calc.py": "def add(a, b):\n    return a\n"}, main
    )
    gitlab.add_merge_request(
        PROJECT_ID, SOURCE_BRANCH, title="add new-feature", author=MR_AUTHOR.user, iid=MR_IID
    )
    for person, level in ((MAINTAINER, 40), (DEVELOPER, 30), (REVIEWER, 30), (MR_AUTHOR, 40)):
        gitlab.add_member(PROJECT_ID, person.id, level)


def seed_jira(t: Table) -> None:
    t.fakes.jira.add_issue(ISSUE, "Unit test summary 1")
    t.fakes.jira.add_to_group(APPROVERS_GROUP, APPROVER.account_id)


async def labelled(t: Table) -> str:
    """The `implement` run the trigger label starts on TES-41 (the recorded labels delivery)."""
    return await t.deliver("jira", label_added("ai-implement"))
