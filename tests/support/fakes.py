"""Recording fakes of the ports (orchestrators/ports.py), in the style of Prow's fakegithub.

Each fake keeps its world in memory (projects, merge requests, threads, branches; tickets, comments,
groups; mirrors, worktrees, commits) and appends every write that reaches that world to `calls`, e.g.
`jira.calls == [("add_comment", "DEMO-1", "Rejected proposal ...")]` (the text as the workflow gave it,
without the marker). Reads are not recorded.

They keep the real adapters' contracts:
- writes go through the real `exactly_once` with the ledger they are given, and every posted text ends
  with the hidden marker (`bot/effects.py`): a write whose ledger record is done sends nothing; one
  whose record is pending (an earlier attempt lost its answer) is looked for by its marker and adopted;
- what does not exist answers like the server (GitLabNotFound, JiraError 404, `branch_head` None,
  `member_access_level` 0, `user_in_group` False); opening a second MR for a branch conflicts and is
  adopted by its marker; an award emoji given twice is adopted;
- the workspace validates names and URLs as the real one does, refuses a push whose worktree HEAD is
  not the approved SHA (HeadMoved) and a push that is not a fast-forward (GitError).

Faults: `fail["method"] = exc` raises exc at the next call of that method, before anything happens;
`lose.add("method")` makes the next call of that method happen and then lose its answer (a retryable
error), as a timeout after the server committed would.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import SecretStr

from bot.clients.gitlab import (
    Discussion,
    FileDiff,
    GitLabConflict,
    GitLabError,
    GitLabNotFound,
    GitLabUnavailable,
    GitLabUser,
    Job,
    MergeRequest,
    MergeRequestDiff,
    Note,
    Pipeline,
    Position,
    Project,
    ProjectRef,
)
from bot.clients.jira import JiraComment, JiraConfig, JiraError, JiraIssue, JiraUnavailable, JiraUser
from bot.clients.retry import RetryableError, exactly_once
from bot.containment.host import Containment
from bot.effects import EffectLedger, EffectRecord, find_jira_marker, find_marker, marker, with_jira_marker
from bot.effects import with_marker as with_effect_marker
from bot.git.askpass import check_remote_url
from bot.git.branch import is_sha, is_valid_branch
from bot.git.diffstat import DiffStat, FileStat
from bot.git.errors import GitError, HeadMoved, NothingToCommit, UnsafeInput, WorkspaceError
from bot.git.paths import check_run_id
from bot.git.workspace import UPSTREAM_PREFIX, Arriving, Secret
from bot.knowledge import Hit, Page, PageError, select
from bot.knowledge.index import query_terms
from bot.knowledge.modules import best_coverage
from bot.knowledge.pages import check_path
from config.projects import ProjectMap
from config.skills import SkillManifest, default_skills
from orchestrators.resources import AgentEndpoint, Clients

Call = tuple[object, ...]
CREATED_AT = "2025-01-01T00:00:00Z"


class Recorder:
    """`calls`: this fake's writes; `journal`, when shared between fakes, all of them in order."""

    def __init__(self, journal: list[Call] | None = None) -> None:
        self.calls: list[Call] = []
        self.journal = journal

    def _record(self, *call: object) -> None:
        self.calls.append(call)
        if self.journal is not None:
            self.journal.append(call)


class Faults:
    """The fault knobs every fake shares (see the module docstring)."""

    def __init__(self, lost: Callable[[str], Exception]) -> None:
        self.fail: dict[str, BaseException] = {}
        self.lose: set[str] = set()
        self._lost = lost

    def before(self, method: str) -> None:
        exc = self.fail.pop(method, None)
        if exc is not None:
            raise exc

    def after(self, method: str) -> None:
        if method in self.lose:
            self.lose.discard(method)
            raise self._lost(f"{method}: the answer was lost after the write (fake)")


class FakeLedger(Recorder):
    """The effects table in a dict (bot.effects.EffectLedger); `calls` lists (method, key)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, EffectRecord] = {}

    async def get(self, key: str) -> EffectRecord | None:
        return self.records.get(key)

    async def begin(self, key: str, kind: str, run_id: str | None) -> EffectRecord:
        self._record("begin", key)
        return self.records.setdefault(key, EffectRecord(key, kind, "pending", None))

    async def complete(self, key: str, external_id: str) -> None:
        self._record("complete", key)
        self.records[key] = replace(self.records[key], status="done", external_id=external_id)


# --- GitLab ---------------------------------------------------------------------------------------


@dataclass
class _Award:
    id: int
    note_id: int | None
    name: str
    user_id: int


@dataclass
class _MrState:
    mr: MergeRequest
    discussions: list[Discussion] = field(default_factory=list)
    awards: list[_Award] = field(default_factory=list)
    diff: tuple[FileDiff, ...] = ()


class FakeGitLab(Recorder):
    """Implements ports.GitLab: projects, branches, members, merge requests, threads, notes, awards."""

    URL = "https://gitlab.example.test"

    def __init__(
        self, ledger: EffectLedger, bot: GitLabUser | None = None, journal: list[Call] | None = None
    ) -> None:
        super().__init__(journal)
        self.ledger = ledger
        self.bot = bot or GitLabUser(id=1, username="baton-bot", name="Baton")
        self.faults = Faults(GitLabUnavailable)
        self.projects: dict[int, Project] = {}
        self.branches: dict[tuple[int, str], str] = {}
        self.members: dict[tuple[int, int], int] = {}
        self.mrs: dict[tuple[int, int], _MrState] = {}
        self.pipelines: dict[tuple[int, int], Pipeline] = {}  # CI: (project id, pipeline id)
        self.jobs: dict[tuple[int, int], list[Job]] = {}  # (project id, pipeline id) -> every attempt
        self.traces: dict[int, bytes] = {}  # job id -> its log
        self._ids = itertools.count(1000)
        self.closed = False

    # -- the world, as a test sets it up -----------------------------------------------------------

    def add_project(self, path: str, project_id: int | None = None, default_branch: str = "main") -> Project:
        pid = project_id or next(self._ids)
        url = f"{self.URL}/{path}"
        project = Project(pid, path, default_branch, url, f"{url}.git")
        self.projects[pid] = project
        return project

    def add_member(self, project: ProjectRef, user_id: int, level: int) -> None:
        self.members[(self._pid(project), user_id)] = level

    def set_branch(self, project: ProjectRef, branch: str, sha: str) -> None:
        self.branches[(self._pid(project), branch)] = sha

    def add_merge_request(
        self,
        project: ProjectRef,
        source_branch: str,
        target_branch: str = "main",
        *,
        title: str = "A change",
        author: GitLabUser | None = None,
        state: str = "opened",
        iid: int | None = None,
    ) -> MergeRequest:
        pid = self._pid(project)
        iid = iid or 1 + max((i for p, i in self.mrs if p == pid), default=0)
        web = f"{self.projects[pid].web_url}/-/merge_requests/{iid}"
        mr = MergeRequest(
            pid, iid, next(self._ids), title, "", state, source_branch, target_branch,
            self.branches.get((pid, source_branch)), web, False, (), author, None,
        )  # fmt: skip
        self.mrs[(pid, iid)] = _MrState(mr)
        return mr

    def set_state(self, project: ProjectRef, iid: int, state: str) -> None:
        held = self._mr(project, iid)
        held.mr = replace(held.mr, state=state)

    def start_thread(
        self,
        project: ProjectRef,
        iid: int,
        author: GitLabUser,
        body: str,
        *,
        position: Position | None = None,
    ) -> Discussion:
        """A person's note: a resolvable thread (a diff thread when `position` is given)."""
        note = self._note(body, author, "DiffNote" if position else "DiscussionNote", True, position)
        discussion = Discussion(_discussion_id(note), False, (note,))
        self._mr(project, iid).discussions.append(discussion)
        return discussion

    def add_note(
        self, project: ProjectRef, iid: int, author: GitLabUser, body: str, discussion_id: str | None = None
    ) -> tuple[Discussion, Note]:
        """A person's note: a reply in `discussion_id`, or else a new note on the MR overview."""
        held = self._mr(project, iid)
        if discussion_id is None:
            note = self._note(body, author, None, False)
            discussion = Discussion(_discussion_id(note), True, (note,))
            held.discussions.append(discussion)
            return discussion, note
        thread = self.thread(project, iid, discussion_id)
        note = self._note(body, author, "DiscussionNote", any(n.resolvable for n in thread.notes))
        held.discussions = [
            replace(d, notes=(*d.notes, note)) if d.id == discussion_id else d for d in held.discussions
        ]
        return self.thread(project, iid, discussion_id), note

    def thread(self, project: ProjectRef, iid: int, discussion_id: str) -> Discussion:
        found = next((d for d in self._mr(project, iid).discussions if d.id == discussion_id), None)
        if found is None:
            raise GitLabNotFound(f"404 discussion {discussion_id[:12]} not found", 404)
        return found

    def bodies(self, project: ProjectRef, iid: int) -> list[str]:
        """Every note's text on the MR, oldest first (markers included)."""
        return [n.body for d in self._mr(project, iid).discussions for n in d.notes]

    # -- Repositories ----------------------------------------------------------------------------

    async def project(self, project: ProjectRef) -> Project:
        return self.projects[self._pid(project)]

    async def branch_head(self, project: ProjectRef, branch: str) -> str | None:
        return self.branches.get((self._pid(project), branch))

    # -- MergeRequests ---------------------------------------------------------------------------

    async def merge_request(self, project: ProjectRef, iid: int) -> MergeRequest:
        held = self._mr(project, iid)
        return replace(held.mr, sha=self.branches.get((held.mr.project_id, held.mr.source_branch)))

    async def mr_diff(self, project: ProjectRef, iid: int) -> MergeRequestDiff:
        held = self._mr(project, iid)
        return MergeRequestDiff(held.mr.diff_refs, held.diff)

    async def create_merge_request(
        self,
        project: ProjectRef,
        source_branch: str,
        target_branch: str,
        title: str,
        description: str,
        labels: Iterable[str],
        draft: bool,
        effect_key: str,
        *,
        run_id: str | None = None,
    ) -> MergeRequest:
        pid = self._pid(project)

        async def find() -> str | None:
            mine = [
                s.mr for (p, _i), s in self.mrs.items() if p == pid and s.mr.source_branch == source_branch
            ]
            return next((str(m.iid) for m in mine if find_marker(m.description) == effect_key), None)

        async def post() -> str:
            self.faults.before("create_merge_request")
            opened = [s.mr for (p, _i), s in self.mrs.items() if p == pid and s.mr.state == "opened"]
            if any(m.source_branch == source_branch for m in opened):
                adopted = await find()
                if adopted is None:
                    raise GitLabConflict("409 another open merge request already exists for this branch", 409)
                return adopted
            self._record("create_merge_request", project, source_branch, target_branch, title)
            mr = self.add_merge_request(pid, source_branch, target_branch, title=title, author=self.bot)
            held = self.mrs[(pid, mr.iid)]
            held.mr = replace(
                mr, description=with_effect_marker(description, effect_key), labels=tuple(labels), draft=draft
            )
            self.faults.after("create_merge_request")
            return str(mr.iid)

        iid = await exactly_once(
            self.ledger, effect_key, "gitlab.merge_request", find=find, post=post, run_id=run_id
        )
        return await self.merge_request(pid, int(iid))

    # -- Access ----------------------------------------------------------------------------------

    async def bot_user(self) -> GitLabUser:
        return self.bot

    async def member_access_level(self, project: ProjectRef, user_id: int) -> int:
        return self.members.get((self._pid(project), user_id), 0)

    # -- Threads ---------------------------------------------------------------------------------

    async def discussions(self, project: ProjectRef, iid: int) -> list[Discussion]:
        return list(self._mr(project, iid).discussions)

    async def reply_in_discussion(
        self,
        project: ProjectRef,
        iid: int,
        discussion_id: str,
        body: str,
        effect_key: str,
        *,
        run_id: str | None = None,
    ) -> int:
        held = self._mr(project, iid)

        async def find() -> str | None:
            return _marked(self.thread(project, iid, discussion_id).notes, effect_key)

        async def post() -> str:
            self.faults.before("reply_in_discussion")
            thread = self.thread(project, iid, discussion_id)
            resolvable = any(n.resolvable for n in thread.notes)
            note = self._note(with_effect_marker(body, effect_key), self.bot, "DiscussionNote", resolvable)
            held.discussions = [
                replace(d, notes=(*d.notes, note)) if d.id == discussion_id else d for d in held.discussions
            ]
            self._record("reply_in_discussion", project, iid, discussion_id, body)
            self.faults.after("reply_in_discussion")
            return str(note.id)

        return int(
            await exactly_once(self.ledger, effect_key, "gitlab.reply", find=find, post=post, run_id=run_id)
        )

    async def resolve_discussion(
        self, project: ProjectRef, iid: int, discussion_id: str, *, resolved: bool = True
    ) -> None:
        self.faults.before("resolve_discussion")
        held, thread = self._mr(project, iid), self.thread(project, iid, discussion_id)
        if not any(n.resolvable for n in thread.notes):
            raise GitLabError("400 Bad request - discussion is not resolvable", 400)
        notes = tuple(replace(n, resolved=resolved) if n.resolvable else n for n in thread.notes)
        held.discussions = [replace(d, notes=notes) if d.id == discussion_id else d for d in held.discussions]
        self._record("resolve_discussion", project, iid, discussion_id, resolved)

    # -- Notes -----------------------------------------------------------------------------------

    async def post_note(
        self, project: ProjectRef, iid: int, body: str, effect_key: str, *, run_id: str | None = None
    ) -> int:
        held = self._mr(project, iid)

        async def find() -> str | None:
            return _marked([n for d in held.discussions for n in d.notes], effect_key)

        async def post() -> str:
            self.faults.before("post_note")
            note = self._note(with_effect_marker(body, effect_key), self.bot, None, False)
            held.discussions.append(Discussion(_discussion_id(note), True, (note,)))
            self._record("post_note", project, iid, body)
            self.faults.after("post_note")
            return str(note.id)

        return int(
            await exactly_once(self.ledger, effect_key, "gitlab.note", find=find, post=post, run_id=run_id)
        )

    async def edit_note(
        self, project: ProjectRef, iid: int, note_id: int, body: str, *, effect_key: str | None = None
    ) -> None:
        self.faults.before("edit_note")
        held = self._mr(project, iid)
        if not any(n.id == note_id for d in held.discussions for n in d.notes):
            raise GitLabNotFound(f"404 note {note_id} not found", 404)
        text = body if effect_key is None else with_effect_marker(body, effect_key)
        held.discussions = [
            replace(d, notes=tuple(replace(n, body=text) if n.id == note_id else n for n in d.notes))
            for d in held.discussions
        ]
        self._record("edit_note", project, iid, note_id, body)

    async def award_emoji(
        self,
        project: ProjectRef,
        iid: int,
        note_id: int | None,
        name: str,
        effect_key: str,
        *,
        run_id: str | None = None,
    ) -> int:
        marker(effect_key)  # validates the key like every other write
        held = self._mr(project, iid)
        if note_id is not None and not any(n.id == note_id for d in held.discussions for n in d.notes):
            raise GitLabNotFound(f"404 note {note_id} not found", 404)

        async def find() -> str | None:
            mine = (a for a in held.awards if (a.note_id, a.name, a.user_id) == (note_id, name, self.bot.id))
            return next((str(a.id) for a in mine), None)

        async def post() -> str:
            self.faults.before("award_emoji")
            adopted = await find()  # GitLab answers 404 "has already been taken"; the client adopts it
            if adopted is not None:
                return adopted
            award = _Award(next(self._ids), note_id, name, self.bot.id)
            held.awards.append(award)
            self._record("award_emoji", project, iid, note_id, name)
            self.faults.after("award_emoji")
            return str(award.id)

        return int(
            await exactly_once(
                self.ledger, effect_key, "gitlab.award_emoji", find=find, post=post, run_id=run_id
            )
        )

    # -- Pipelines -------------------------------------------------------------------------------

    def add_pipeline(
        self, project: ProjectRef, ref: str, sha: str, jobs: Sequence[tuple[Job, bytes]]
    ) -> Pipeline:
        """A finished pipeline of `ref` with its jobs (every attempt) and their logs; failed if one failed."""
        pid = self._pid(project)
        failed = any(j.status == "failed" and not j.allow_failure for j, _ in jobs)
        pipeline_id = next(self._ids)
        pipeline = Pipeline(
            pipeline_id, pid, sha, ref, "failed" if failed else "success", "merge_request_event",
            f"{self.projects[pid].web_url}/-/pipelines/{pipeline_id}",
        )  # fmt: skip
        self.pipelines[(pid, pipeline_id)] = pipeline
        self.jobs[(pid, pipeline_id)] = [replace(j, pipeline_id=pipeline_id) for j, _ in jobs]
        self.traces.update({j.id: trace for j, trace in jobs})
        return pipeline

    async def pipeline(self, project: ProjectRef, pipeline_id: int) -> Pipeline:
        found = self.pipelines.get((self._pid(project), pipeline_id))
        if found is None:
            raise GitLabNotFound(f"404 pipeline {pipeline_id} not found", 404)
        return found

    async def latest_pipeline(self, project: ProjectRef, ref: str) -> Pipeline | None:
        pid = self._pid(project)
        mine = [p for (p_id, _), p in self.pipelines.items() if p_id == pid and p.ref == ref]
        return max(mine, key=lambda p: p.id, default=None)

    async def pipeline_jobs(self, project: ProjectRef, pipeline_id: int) -> list[Job]:
        await self.pipeline(project, pipeline_id)
        return list(self.jobs.get((self._pid(project), pipeline_id), []))

    async def job_trace(
        self, project: ProjectRef, job_id: int, tail_bytes: int = 256 * 1024
    ) -> tuple[bytes, bool]:
        if job_id not in self.traces:
            raise GitLabNotFound(f"404 job {job_id} not found", 404)
        trace = self.traces[job_id]
        return trace[-tail_bytes:], len(trace) > tail_bytes

    async def start_discussion(
        self, project: ProjectRef, iid: int, body: str, effect_key: str, *, run_id: str | None = None
    ) -> str:
        held = self._mr(project, iid)

        async def find() -> str | None:
            return next((d.id for d in held.discussions if find_marker(d.notes[0].body) == effect_key), None)

        async def post() -> str:
            self.faults.before("start_discussion")
            note = self._note(with_effect_marker(body, effect_key), self.bot, "DiscussionNote", True)
            discussion = Discussion(_discussion_id(note), False, (note,))
            held.discussions.append(discussion)
            self._record("start_discussion", project, iid, body)
            self.faults.after("start_discussion")
            return discussion.id

        return await exactly_once(
            self.ledger, effect_key, "gitlab.discussion", find=find, post=post, run_id=run_id
        )

    def close(self) -> None:
        self.closed = True

    # -- plumbing ----------------------------------------------------------------------------------

    def _pid(self, project: ProjectRef) -> int:
        if isinstance(project, int) or str(project).isdigit():
            if int(project) in self.projects:
                return int(project)
        else:
            found = next((p.id for p in self.projects.values() if p.path_with_namespace == project), None)
            if found is not None:
                return found
        raise GitLabNotFound(f"404 Project {str(project)[:60]} Not Found", 404)

    def _mr(self, project: ProjectRef, iid: int) -> _MrState:
        held = self.mrs.get((self._pid(project), iid))
        if held is None:
            raise GitLabNotFound(f"404 merge request !{iid} not found", 404)
        return held

    def _note(
        self,
        body: str,
        author: GitLabUser,
        kind: str | None,
        resolvable: bool,
        position: Position | None = None,
    ) -> Note:
        return Note(next(self._ids), body, author, False, kind, CREATED_AT, resolvable, False, position)

    def pushed(self, remote_url: str, branch: str, sha: str) -> None:
        """The workspace pushed `sha` to `branch` of the project cloned from `remote_url`."""
        for project in self.projects.values():
            if project.http_url_to_repo == remote_url:
                self.branches[(project.id, branch)] = sha


def _discussion_id(note: Note) -> str:
    """GitLab's discussion ids are 40 hex digits (the webhook models refuse anything else)."""
    return hashlib.sha1(f"discussion-{note.id}".encode()).hexdigest()  # noqa: S324


def _marked(notes: Iterable[Note], effect_key: str) -> str | None:
    return next((str(n.id) for n in notes if find_marker(n.body) == effect_key), None)


# --- Jira -----------------------------------------------------------------------------------------


class FakeJira(Recorder):
    """Implements ports.Jira: tickets, their comments (the bot's carry the Jira marker), groups."""

    def __init__(
        self, ledger: EffectLedger, url: str = "https://jira.example.test", journal: list[Call] | None = None
    ) -> None:
        super().__init__(journal)
        self.ledger = ledger
        self._config = JiraConfig(url=url, token="fake-jira-token")
        self.bot = JiraUser(account_id="baton-bot-account", display_name="Baton")
        self.faults = Faults(JiraUnavailable)
        self.issues: dict[str, JiraIssue] = {}
        self.comments: dict[str, list[JiraComment]] = {}
        self.groups: dict[str, set[str]] = {}
        self._ids = itertools.count(10_000)

    @property
    def config(self) -> JiraConfig:
        return self._config

    # -- the world -------------------------------------------------------------------------------

    def add_issue(
        self, key: str, summary: str = "A ticket", description: str = "", issue_id: str = ""
    ) -> JiraIssue:
        issue = JiraIssue(
            key,
            issue_id or str(next(self._ids)),
            summary,
            description,
            (),
            "To Do",
            key.split("-")[0],
            (),
            (),
        )
        self.issues[key] = issue
        self.comments.setdefault(key, [])
        return issue

    def add_to_group(self, group: str, *accounts: str) -> None:
        self.groups.setdefault(group, set()).update(accounts)

    def bodies(self, key: str) -> list[str]:
        return [c.body for c in self.comments.get(key, [])]

    # -- Tickets ---------------------------------------------------------------------------------

    async def issue(self, key: str) -> JiraIssue:
        return replace(self._issue(key), comments=tuple(self.comments[key][-20:]))

    # -- Comments --------------------------------------------------------------------------------

    async def add_comment(self, key: str, body: str, effect_key: str, *, run_id: str | None = None) -> str:
        text = with_jira_marker(body, effect_key)  # validates the key (EffectKeyError) before anything

        async def find() -> str | None:
            mine = (c for c in self.comments.get(key, []) if c.author == self.bot)
            return next((c.id for c in mine if find_jira_marker(c.body) == effect_key), None)

        async def post() -> str:
            self.faults.before("add_comment")
            self._issue(key)
            comment = JiraComment(str(next(self._ids)), self.bot, text, CREATED_AT)
            self.comments[key].append(comment)
            self._record("add_comment", key, body)
            self.faults.after("add_comment")
            return comment.id

        return await exactly_once(
            self.ledger, effect_key, "jira_comment", find=find, post=post, run_id=run_id
        )

    async def edit_comment(self, key: str, comment_id: str, body: str) -> None:
        self.faults.before("edit_comment")
        self._issue(key)
        current = next((c for c in self.comments[key] if c.id == comment_id), None)
        if current is None:
            raise JiraError(f"Jira read comment {comment_id} failed: HTTP 404", 404)
        kept = find_jira_marker(current.body)
        text = with_jira_marker(body, kept) if kept and find_jira_marker(body) is None else body
        self.comments[key] = [replace(c, body=text) if c.id == comment_id else c for c in self.comments[key]]
        self._record("edit_comment", key, comment_id, body)

    # -- Groups ----------------------------------------------------------------------------------

    async def user_in_group(self, account: str, group: str) -> bool:
        members = next((m for g, m in self.groups.items() if g.casefold() == group.casefold()), set())
        return account in members

    def _issue(self, key: str) -> JiraIssue:
        issue = self.issues.get(key)
        if issue is None:
            raise JiraError(f"Jira read issue {key} failed: HTTP 404: Issue does not exist", 404)
        return issue


# --- the git workspace ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Commit:
    sha: str
    parent: str | None
    files: dict[str, str]


@dataclass
class _Worktree:
    repo_id: str
    branch: str
    head: str


class FakeWorkspace(Recorder):
    """Implements ports.Git: remotes and commits in memory, worktrees as real directories of text files.

    A test seeds a remote (`seed`), the workflow mirrors it and makes worktrees from it; the files a
    workflow (or the test) writes into a worktree are what `commit_all` commits and `diff` shows.
    A push lands in `remotes` and, when given, in the fake GitLab's branches.
    """

    def __init__(
        self, root: Path, gitlab: FakeGitLab | None = None, journal: list[Call] | None = None
    ) -> None:
        super().__init__(journal)
        self.root = root
        self.gitlab = gitlab
        self.faults = Faults(lambda message: GitError("push", None, message))
        self.remotes: dict[str, dict[str, str]] = {}  # remote URL -> branch -> SHA
        self.mirrors: dict[str, dict[str, str]] = {}  # repo id -> upstream branch -> SHA (as fetched)
        self.commits: dict[str, _Commit] = {}
        self.worktrees: dict[Path, _Worktree] = {}

    # -- the world -------------------------------------------------------------------------------

    def seed(self, remote_url: str, branch: str, files: dict[str, str], parent: str | None = None) -> str:
        """A commit on `branch` of the remote (what someone pushed); returns its SHA."""
        sha = self._commit(parent, files, f"seed {branch}")
        self.remotes.setdefault(remote_url, {})[branch] = sha
        if self.gitlab is not None:
            self.gitlab.pushed(remote_url, branch, sha)
        return sha

    def set_head(self, worktree: Path, sha: str) -> None:
        """Someone moved the worktree's HEAD (e.g. a later round committed)."""
        self._tree(worktree).head = sha

    # -- Worktrees -------------------------------------------------------------------------------

    async def ensure_mirror(self, repo_id: str, remote_url: str, token: Secret | None) -> Path:
        url = check_remote_url(remote_url)
        self.faults.before("ensure_mirror")
        self.mirrors[repo_id] = dict(self.remotes.get(url, {}))
        self._record("ensure_mirror", repo_id, remote_url)
        return self.root / "mirrors" / repo_id.replace("/", "__")

    async def read_at(self, repo_id: str, base_ref: str, path: str) -> str | None:
        if repo_id not in self.mirrors:
            raise WorkspaceError(f"no mirror for {repo_id[:80]!r} yet: call ensure_mirror first")
        return self.commits[self._resolve(repo_id, base_ref)].files.get(path)

    async def create_worktree(
        self,
        repo_id: str,
        run_id: str,
        base_ref: str,
        branch: str,
        *,
        sparse: Sequence[str] = (),
        arriving: Arriving | None = None,
    ) -> Path:
        path = self.root / "worktrees" / check_run_id(run_id)
        if not is_valid_branch(branch):
            raise UnsafeInput(f"refusing branch name {branch[:60]!r}")
        if repo_id not in self.mirrors:
            raise WorkspaceError(f"no mirror for {repo_id[:80]!r} yet: call ensure_mirror first")
        sha = self._resolve(repo_id, base_ref)
        await self.remove_worktree(run_id)
        path.mkdir(parents=True)
        if arriving is not None:  # as a warm worktree arrives: in place, its files not yet
            await arriving(path)
        for name, text in self.commits[sha].files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)
        self.worktrees[path] = _Worktree(repo_id, branch, sha)
        # every file even when `sparse` names directories (what a run may touch is the same either way)
        self._record(
            "create_worktree", repo_id, run_id, base_ref, branch, *([tuple(sparse)] if sparse else [])
        )
        return path

    async def remove_worktree(self, run_id: str, *, keep_branch: bool = False) -> None:
        path = self.root / "worktrees" / check_run_id(run_id)
        shutil.rmtree(path, ignore_errors=True)
        if self.worktrees.pop(path, None) is not None:
            self._record("remove_worktree", run_id, keep_branch)

    # -- Commits ---------------------------------------------------------------------------------

    async def commit_all(self, worktree: Path, message: str) -> str:
        tree = self._tree(worktree)
        text = message.replace("\x00", "").strip()
        if not text:
            raise UnsafeInput("commit message is empty")
        files = _read(worktree)
        if files == self.commits[tree.head].files:
            raise NothingToCommit(f"nothing to commit in run {worktree.name}")
        tree.head = self._commit(tree.head, files, text)
        self._record("commit_all", worktree.name, text)
        return tree.head

    async def head(self, worktree: Path) -> str:
        return self._tree(worktree).head

    async def push(
        self, worktree: Path, remote_url: str, branch: str, token: Secret | None, expected_sha: str
    ) -> None:
        url = check_remote_url(remote_url)
        if not is_valid_branch(branch) or not is_sha(expected_sha):
            raise UnsafeInput("push needs a valid branch name and a full commit SHA")
        head = self._tree(worktree).head
        if head != expected_sha:
            raise HeadMoved(f"worktree HEAD is {head[:12]}, not the approved {expected_sha[:12]}")
        self.faults.before("push")
        there = self.remotes.setdefault(url, {})
        if branch in there and not self._descends(expected_sha, there[branch]):
            raise GitError("push", 1, f"! [rejected] {branch} (non-fast-forward)")
        there[branch] = expected_sha
        if self.gitlab is not None:
            self.gitlab.pushed(url, branch, expected_sha)
        self._record("push", worktree.name, remote_url, branch, expected_sha)
        self.faults.after("push")

    # -- Diffs -----------------------------------------------------------------------------------

    async def snapshot(self, worktree: Path) -> str:
        self._tree(worktree)
        files = _read(worktree)
        tree = _tree_id(files)
        self.commits[tree] = _Commit(tree, None, files)  # a tree, kept like a parentless commit
        return tree

    async def tree_of(self, worktree: Path, commit: str) -> str:
        self._tree(worktree)
        if not is_sha(commit):
            raise UnsafeInput("tree_of needs a full commit SHA")
        return _tree_id(self.commits[commit].files)

    async def diff(self, worktree: Path, base: str, *, at: str | None = None) -> str:
        before, after = self._ends(worktree, base, at)
        lines: list[str] = []
        for name in sorted(before.keys() | after.keys()):
            lines += difflib.unified_diff(
                before.get(name, "").splitlines(keepends=True), after.get(name, "").splitlines(keepends=True),
                f"a/{name}", f"b/{name}",
            )  # fmt: skip
        return "".join(lines)

    async def diffstat(self, worktree: Path, base: str, *, at: str | None = None) -> DiffStat:
        before, after = self._ends(worktree, base, at)
        stats = []
        for name in sorted(before.keys() | after.keys()):
            if before.get(name) == after.get(name):
                continue
            old, new = before.get(name, "").splitlines(), after.get(name, "").splitlines()
            ops = difflib.SequenceMatcher(a=old, b=new).get_opcodes()
            added = sum(j2 - j1 for tag, _i1, _i2, j1, j2 in ops if tag != "equal")
            deleted = sum(i2 - i1 for tag, i1, i2, _j1, _j2 in ops if tag != "equal")
            stats.append(FileStat(name, added, deleted))
        return DiffStat(tuple(stats))

    # -- plumbing ----------------------------------------------------------------------------------

    def _commit(self, parent: str | None, files: dict[str, str], message: str) -> str:
        content = repr((parent, sorted(files.items()), message)).encode()
        sha = hashlib.sha1(content).hexdigest()  # noqa: S324
        self.commits[sha] = _Commit(sha, parent, dict(files))
        return sha

    def _tree(self, worktree: Path) -> _Worktree:
        tree = self.worktrees.get(worktree)
        if tree is None:
            raise WorkspaceError(f"{worktree} is not a worktree of this workspace")
        return tree

    def _resolve(self, repo_id: str, ref: str) -> str:
        name = ref.removeprefix(UPSTREAM_PREFIX)
        sha = ref if is_sha(ref) else self.mirrors[repo_id].get(name)
        if sha is None or sha not in self.commits:
            raise WorkspaceError(f"base ref {ref!r} is not a commit in the mirror")
        return sha

    def _ends(self, worktree: Path, base: str, at: str | None) -> tuple[dict[str, str], dict[str, str]]:
        tree = self._tree(worktree)
        if at is not None and not is_sha(at):
            raise UnsafeInput("a diff of a commit or snapshot needs its full SHA")
        after = _read(worktree) if at is None else self.commits[at].files
        return self.commits[self._resolve(tree.repo_id, base)].files, after

    def _descends(self, sha: str, ancestor: str) -> bool:
        seen: str | None = sha
        while seen is not None:
            if seen == ancestor:
                return True
            seen = self.commits[seen].parent if seen in self.commits else None
        return False


def _tree_id(files: dict[str, str]) -> str:
    """A content id for a set of files, as git's tree id is for a tree."""
    return hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()  # noqa: S324


def _read(worktree: Path) -> dict[str, str]:
    return {
        str(p.relative_to(worktree)): p.read_text(errors="replace")
        for p in sorted(worktree.rglob("*"))
        if p.is_file()
    }


# --- the knowledge base -----------------------------------------------------------------------------


class KnowledgeLost(RetryableError):
    """A wiki write whose answer was lost (fake): the write happened."""


class FakeKnowledge(Recorder):
    """The wiki in a dict of pages and a naive search in place of FTS5 (bot/knowledge `Knowledge`).

    `relevant` ranks pages by words shared with the text (title counts double) and by whether their
    modules cover a given path, then lets bot.knowledge.select (the real, pure chooser) fit the budget.
    `calls` lists the writes: ("land", paths, message), ("verify", path, who). `broken` makes every
    call raise (a store that cannot be read); `fail`/`lose` as for the other fakes.
    """

    def __init__(self, journal: list[Call] | None = None) -> None:
        super().__init__(journal)
        self.pages: dict[str, Page] = {}
        self.faults = Faults(KnowledgeLost)
        self.broken: Exception | None = None

    @property
    def wiki(self) -> FakeKnowledge:
        return self

    def add(self, page: Page) -> Page:
        self.pages[page.path] = page
        return page

    def _check(self, method: str) -> None:
        if self.broken is not None:
            raise self.broken
        self.faults.before(method)

    async def get(self, path: str, at: str | None = None) -> Page | None:
        self._check("get")
        check_path(path)
        return self.pages.get(path)

    async def search(self, text: str, modules: Sequence[str] = (), limit: int = 8) -> list[Hit]:
        self._check("search")
        words = set(query_terms(text))
        hits = []
        for page in self.pages.values():
            shared = len(words & set(query_terms(page.body))) + 2 * len(words & set(query_terms(page.title)))
            cover = best_coverage(page.modules, modules) if modules else 0.0
            if shared or cover:
                hits.append(Hit(page, shared + cover, cover > 0.0))
        return sorted(hits, key=lambda h: (-h.score, h.page.path))[:limit]

    async def relevant(self, text: str, modules: Sequence[str], budget_tokens: int) -> list[Page]:
        return select(await self.search(text, modules, limit=24), budget_tokens)

    async def land(self, pages: Sequence[Page], message: str, author: str = "Baton") -> str:
        self._check("land")
        for page in pages:
            self.pages[page.path] = page
        self._record("land", tuple(p.path for p in pages), message)
        self.faults.after("land")
        return hashlib.sha1(repr((sorted(self.pages), message)).encode()).hexdigest()  # noqa: S324

    async def verify(self, path: str, who: str) -> Page:
        self._check("verify")
        page = self.pages.get(check_path(path))
        if page is None:
            raise PageError(f"no page {path!r} in the wiki")
        self.pages[path] = page.model_copy(update={"status": "verified"})
        self._record("verify", path, who)
        self.faults.after("verify")
        return self.pages[path]


# --- the queue and the whole set --------------------------------------------------------------------


class FakeQueue(Recorder):
    """What workflows use of bot.queue.Queue: `enqueue_run` (one job per run id, like arq's job id)."""

    def __init__(self, journal: list[Call] | None = None) -> None:
        super().__init__(journal)
        self.jobs: set[str] = set()

    async def enqueue_run(self, run_id: str) -> bool:
        self._record("enqueue_run", run_id)
        if run_id in self.jobs:
            return False
        self.jobs.add(run_id)
        return True


@dataclass
class FakeWorld:
    """One fake per port over one ledger, and `clients()` to hand them to workflows as `Clients`."""

    ledger: EffectLedger
    gitlab: FakeGitLab
    jira: FakeJira
    workspace: FakeWorkspace
    knowledge: FakeKnowledge

    journal: list[Call]

    @classmethod
    def build(cls, root: Path, ledger: EffectLedger | None = None) -> FakeWorld:
        """Fakes over one ledger (an in-memory one unless given) that share one journal of writes."""
        kept: EffectLedger = ledger or FakeLedger()
        journal: list[Call] = []
        gitlab = FakeGitLab(kept, journal=journal)
        workspace = FakeWorkspace(root, gitlab, journal=journal)
        knowledge = FakeKnowledge(journal=journal)
        return cls(kept, gitlab, FakeJira(kept, journal=journal), workspace, knowledge, journal)

    def clients(self, projects: ProjectMap | None = None, skills: SkillManifest | None = None) -> Clients:
        agent = AgentEndpoint(
            base_url="http://127.0.0.1:9", api_key=SecretStr("no-agent-in-fakes"), model=None, timeout_s=1.0,
            environ={}, containment=Containment(bwrap=None, refusal="no agent in tests that use the fakes"),
        )  # fmt: skip
        return Clients(
            gitlab=self.gitlab, jira=self.jira, workspace=self.workspace, ledger=self.ledger,
            knowledge=self.knowledge, projects=projects or ProjectMap(), agent=agent,
            gitlab_token=SecretStr("fake-gitlab-token"), skills=skills or default_skills(),
        )  # fmt: skip

    def writes(self) -> list[str]:
        """The names of the writes in the journal, in order (e.g. `["push", "create_merge_request"]`)."""
        return [str(call[0]) for call in self.journal]
