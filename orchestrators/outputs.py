"""What each phase stores as its output, typed.

A phase returns `PhaseResult(Model(...).model_dump(mode="json"))`; the engine persists that JSON and
later phases read it back once, validated, through the accessors at the end (`ticket_assembled(ctx)`,
`validated(ctx)`, …), which refuse a malformed output with `PhaseOutputError` naming the field.

The JSON keeps the keys the untyped outputs had, so a run stored by an earlier version still resumes.
`.baton.yml` is parsed once, by assemble, and stored parsed (`repo`); its raw text stays stored as
`repo_config`, and is parsed only for an output stored before `repo` existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, model_validator

from bot.agent.result import AgentResult
from bot.repo_config import RepoConfig, RepoConfigError, Stage, parse_repo_config
from orchestrators.agents import denials
from orchestrators.brief import KnowledgeItem, KnowledgeStatus
from orchestrators.engine import PhaseContext
from orchestrators.threads import Thread, thread_data, thread_from
from orchestrators.validate import CommandResult, Status
from orchestrators.verdicts import Verdict


class Output(BaseModel):
    """A phase output: immutable; keys a later version adds are ignored, missing or mistyped ones refused."""

    model_config = ConfigDict(frozen=True, extra="ignore")


# --- triage --------------------------------------------------------------------------------------


class Triaged(Output):
    """The planner's answer on the ticket (read by no later phase; kept for the run's record)."""

    ready: bool
    summary: str = ""
    questions: tuple[str, ...] = ()
    agent_ms: int = 0
    # around the agent: agent start, fingerprint, agent end (bot/agent/runner.py)
    mechanics_ms: dict[str, int] = {}


# --- assemble ------------------------------------------------------------------------------------


class Fact(Output):
    """A fact from the team's wiki that assemble put in the brief (the run's record; `baton show`)."""

    path: str
    status: KnowledgeStatus
    kind: str = ""
    title: str = ""
    source: str = ""
    modules: tuple[str, ...] = ()
    text: str = ""

    @classmethod
    def of(cls, item: KnowledgeItem) -> Fact:
        return cls(
            path=item.path, status=item.status, kind=item.kind, title=item.title, source=item.source,
            modules=item.modules, text=item.text,
        )  # fmt: skip

    def item(self) -> KnowledgeItem:
        return KnowledgeItem(
            self.title,
            self.status,
            self.source,
            self.text,
            kind=self.kind,
            path=self.path,
            modules=self.modules,
        )


class Assembled(Output):
    """What both assemble phases (ticket and MR thread) gather: the worktree, its base, the brief."""

    worktree: Path
    branch: str
    base_sha: str
    target_branch: str
    project_id: int
    project_path: str
    remote_url: str
    repo: RepoConfig  # `.baton.yml`, parsed by assemble
    repo_config: str | None = None  # its raw text (None: the repository has none), for older runs
    brief: str
    brief_tokens: int = 0
    knowledge: tuple[Fact, ...] = ()  # the wiki's facts in the brief (none in outputs stored before)
    knowledge_unavailable: str = ""  # why the wiki could not be read, when it could not
    mechanics_ms: dict[str, int] = {}  # Baton's own steps: fetch, workspace, brief (orchestrators/clock.py)

    @model_validator(mode="before")
    @classmethod
    def _parse_stored_text(cls, data: Any) -> Any:
        """An output stored before the parsed config was: parse the raw text it kept, this once."""
        if not isinstance(data, Mapping) or "repo" in data:
            return data
        text = data.get("repo_config")
        if text is not None and not isinstance(text, str):
            return data  # refused below, by the field's type
        try:
            return {**data, "repo": parse_repo_config(text)}
        except RepoConfigError as exc:
            raise ValueError(str(exc)) from None

    def decisions(self) -> list[KnowledgeItem]:
        """The decisions (ADRs) among the brief's facts, for the reviewer."""
        return [fact.item() for fact in self.knowledge if fact.kind == "decision"]

    def workdir(self) -> Path:
        """The run's worktree, which must still exist."""
        if not self.worktree.is_dir():
            raise FileNotFoundError(f"the run's worktree is gone ({self.worktree}); reply /retry assemble")
        return self.worktree


class TicketAssembled(Assembled):
    """The `implement` workflow's assemble: a worktree on a new branch from the ticket's target branch."""

    summary: str  # the ticket's summary

    def target(self) -> dict[str, Any]:
        """What `/approve` needs to ship the proposal (part of the proposal's target)."""
        return {
            "branch": self.branch,
            "project_path": self.project_path,
            "target_branch": self.target_branch,
            "remote_url": self.remote_url,
            "project_id": self.project_id,
        }


class StoredPosition(Output):
    old_path: str | None = None
    new_path: str | None = None
    old_line: int | None = None
    new_line: int | None = None
    head_sha: str | None = None


class StoredNote(Output):
    author: str = ""
    created: str = ""
    body: str = ""
    by_bot: bool = False


class StoredThread(Output):
    """A review thread as `orchestrators.threads.thread_data` writes it."""

    id: str
    notes: tuple[StoredNote, ...] = ()
    position: StoredPosition | None = None
    resolvable: bool = False
    resolved: bool = False

    @classmethod
    def of(cls, thread: Thread) -> StoredThread:
        return cls.model_validate(thread_data(thread))

    def thread(self) -> Thread:
        return thread_from(self.model_dump())


class ThreadAssembled(Assembled):
    """`/remediate`'s assemble: the chosen thread(s), one brief each, a worktree of the MR's branch."""

    source_branch: str
    web_url: str
    all: bool  # `/remediate all`: every unresolved thread, one commit each
    discussion_id: str  # the thread the command was given in
    threads: tuple[StoredThread, ...]
    briefs: tuple[str, ...]  # one per thread, in the same order
    title: str  # the MR's title
    ticket: str | None = None  # the linked Jira ticket's key

    @model_validator(mode="after")
    def _one_brief_per_thread(self) -> ThreadAssembled:
        if len(self.briefs) != len(self.threads):
            raise ValueError(f"{len(self.threads)} thread(s) but {len(self.briefs)} brief(s)")
        return self

    def chosen(self) -> list[Thread]:
        return [t.thread() for t in self.threads]

    def target(self) -> dict[str, Any]:
        """What `/approve` needs to push the proposal to the MR's branch (part of the proposal's target)."""
        return {
            "project_id": self.project_id,
            "project_path": self.project_path,
            "source_branch": self.source_branch,
            "base_sha": self.base_sha,
            "remote_url": self.remote_url,
            "web_url": self.web_url,
            "branch": self.branch,
        }


class Refused(Output):
    """An assemble that found nothing to do (the MR is closed, the thread is gone); the run stopped."""

    refused: str


# --- implement -----------------------------------------------------------------------------------


class Denial(Output):
    tool: str
    reason: str
    source: str


class Implemented(Output):
    """One implementer call."""

    summary: str = ""
    turns: int = 0
    denials: tuple[Denial, ...] = ()
    agent_ms: int = 0
    # around the agent: agent start, fingerprint, agent end (bot/agent/runner.py)
    mechanics_ms: dict[str, int] = {}

    @classmethod
    def of(cls, result: AgentResult, **more: Any) -> Self:
        """What one implementer call did: its summary, turns, tool denials and time (and `more` fields)."""
        return cls(
            summary=(result.text or "")[:4000],
            turns=result.num_turns,
            denials=tuple(Denial.model_validate(d) for d in denials(result)),
            agent_ms=result.duration_ms,
            mechanics_ms=result.mechanics_ms,
            **more,
        )


class ThreadCommit(Output):
    """One thread of a `/remediate all` round: its commit (None: the implementer changed nothing)."""

    id: str
    sha: str | None = None
    agent_ms: int = 0


class ThreadsImplemented(Implemented):
    """`/remediate`'s implement; `threads` is filled for `/remediate all` (carried over by fix-up rounds)."""

    threads: tuple[ThreadCommit, ...] = ()

    def committed(self) -> dict[str, bool]:
        """Thread id → whether it got a commit."""
        return {t.id: bool(t.sha) for t in self.threads}


# --- validate and review -------------------------------------------------------------------------


class Check(Output):
    """One of the repository's commands as validate ran it (its output is in the feedback only)."""

    stage: Stage
    command: str
    status: Status
    exit_code: int | None = None
    duration_s: float = 0.0

    @classmethod
    def of(cls, result: CommandResult) -> Check:
        return cls(
            stage=result.stage,
            command=result.command,
            status=result.status,
            exit_code=result.exit_code,
            duration_s=result.duration_s,
        )

    def result(self) -> CommandResult:
        return CommandResult(self.stage, self.command, self.status, self.exit_code)

    def line(self) -> str:
        """`test: pytest → passed`, for the reviewer's prompt."""
        return f"{self.stage}: {self.command} → {self.status}"


class Validated(Output):
    """The repository's checks; non-empty `feedback` sent the change back to implement."""

    passed: bool
    feedback: str = ""
    checks: tuple[Check, ...]
    ci_changes: tuple[str, ...] = ()  # CI files the change touches, flagged for the human
    changed: tuple[str, ...] = ()
    # the worktree as the repository's commands left it (a tree object: Workspace.snapshot), which the
    # review reads; None in outputs recorded before it was kept
    tree: str | None = None


class Reviewed(Output):
    """The reviewer's verdict; non-empty `feedback` (its blockers) sent the change back to implement."""

    verdict: Verdict
    feedback: str = ""
    agent_ms: int = 0
    # around the agent: agent start, fingerprint, agent end (bot/agent/runner.py)
    mechanics_ms: dict[str, int] = {}


# --- propose -------------------------------------------------------------------------------------


class Proposed(Output):
    proposal_id: str
    sha: str
    mechanics_ms: dict[str, int] = {}  # Baton's own steps: commit, post (orchestrators/clock.py)


# --- typed access from a phase -------------------------------------------------------------------


def assembled(ctx: PhaseContext) -> Assembled:
    """The assemble output either workflow stored (for the phases both share: validate)."""
    return ctx.output("assemble", Assembled)


def ticket_assembled(ctx: PhaseContext) -> TicketAssembled:
    return ctx.output("assemble", TicketAssembled)


def thread_assembled(ctx: PhaseContext) -> ThreadAssembled:
    return ctx.output("assemble", ThreadAssembled)


def implemented(ctx: PhaseContext) -> Implemented:
    return ctx.output("implement", Implemented)


def threads_implemented(ctx: PhaseContext) -> ThreadsImplemented:
    return ctx.output("implement", ThreadsImplemented)


def validated(ctx: PhaseContext) -> Validated:
    return ctx.output("validate", Validated)


def reviewed(ctx: PhaseContext) -> Reviewed:
    return ctx.output("review", Reviewed)


def sent_back(ctx: PhaseContext) -> list[str]:
    """The feedback of the validate and review rounds that sent the change back to implement."""
    notes = [
        ctx.previous_output("validate", Validated),
        ctx.previous_output("review", Reviewed),
    ]
    return [note.feedback for note in notes if note is not None and note.feedback]
