"""The steps of `baton demo`, each waited for within one deadline and printed with what to look at."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.text import Text

from bot.effects import JIRA_MARKER_TEXT
from bot.sandbox.demo.scenario import TICKET_KEY, TICKET_PROJECT, DemoScenario
from bot.sandbox.demo.watch import (
    APPROVER,
    REQUESTER,
    Comment,
    Runs,
    Sandbox,
    asks,
    is_proposal,
    is_status,
    totals,
)
from bot.sandbox.jira_sim.demo import BOT_ACCOUNT_ID
from bot.store import status
from config.projects import load_projects
from config.settings import Settings
from shell.up import Started, base_url

POLL_S = 0.5
SETTLE_S = 15.0  # how long to let the runs finish before the summary (and to watch for a stray proposal)
SUBJECT = f"jira:{TICKET_KEY}"
BRANCH_PREFIX = f"baton/{TICKET_KEY}-"
T = TypeVar("T")


class DemoFailed(Exception):
    """A step did not happen; `reason` says what was awaited, `last_seen` what the sandbox showed."""

    def __init__(self, step: int, title: str, reason: str, last_seen: list[str]) -> None:
        super().__init__(f"step {step} ({title}) failed: {reason}")
        self.step, self.title, self.reason, self.last_seen = step, title, reason, last_seen


@dataclass
class Seen:
    """What the demo has seen so far."""

    run_id: str = ""
    ack: Comment | None = None
    status_comment: Comment | None = None
    mr: dict[str, Any] = field(default_factory=dict)


def _run_line(run: dict[str, Any]) -> str:
    error = f": {run['error']}" if run["error"] else ""
    return f"run {run['id'][:12]} {run['kind']} {run['status']}{error}"


class Demo:
    """Plays a scenario against a started Baton + sandbox; `play()` raises `DemoFailed` at the first miss."""

    reported_kinds: tuple[
        str, ...
    ] = ()  # runs whose failure a step reports itself (not as a bare failed run)

    def __init__(
        self, world: DemoScenario, settings: Settings, started: Started, console: Console, timeout_s: float
    ) -> None:
        if started.sandbox is None:
            raise ValueError("the demo needs Baton in sandbox mode")
        self.world, self.settings, self.started, self.console = world, settings, started, console
        self.deadline = time.monotonic() + timeout_s
        self.sandbox = Sandbox(started.sandbox)
        self.runs = Runs(settings.async_database_url)
        self.seen = Seen()
        self.step, self.title = 0, "start"
        self.total = 5 if world.expect.wants_mr else 3
        project = load_projects(settings.projects_path.read_text()).for_jira(TICKET_PROJECT)
        self.label = project.trigger_label if project else settings.trigger_label

    def close(self) -> None:
        self.sandbox.close()
        self.runs.close()

    # --- printing --------------------------------------------------------------------------------

    def say(self, text: str, style: str = "") -> None:
        self.console.print(Text(text, style=style), soft_wrap=True)

    def begin(self, step: int, title: str) -> float:
        self.step, self.title = step, title
        self.say(f"[{step}/{self.total}] {title}", "bold")
        return time.monotonic()

    def done(self, started: float, *lines: str) -> None:
        self.say(f"      ok ({time.monotonic() - started:.1f} s)", "green")
        for line in lines:
            self.say(f"      {line}")

    def show_command(self, run_id: str) -> str:
        state = self.settings.state_dir
        database = f"sqlite:///{state / 'baton.db'}"
        return f"BATON_STATE_DIR={state} BATON_DATABASE_URL={database} baton show {run_id[:12]}"

    def jira_curl(self, path: str) -> str:
        user, token = self.sandbox.approver_auth
        return f"curl -s -u {user}:{token} {self.sandbox.jira_url}{path}"

    def log(self, role: str) -> Path:
        return self.settings.state_dir / "logs" / f"{role}.log"

    # --- waiting ---------------------------------------------------------------------------------

    def fail(self, reason: str) -> DemoFailed:
        return DemoFailed(self.step, self.title, reason, self.last_seen())

    def check_health(self) -> None:
        for role, code in self.started.exited():
            raise self.fail(f"`baton {role}` exited with code {code} (log: {self.log(role)})")
        for run in self.runs.of(SUBJECT):
            if run["status"] in (status.FAILED, status.CANCELLED) and run["kind"] not in self.reported_kinds:
                raise self.fail(f"run {run['id'][:12]} ({run['kind']}) {run['status']}: {run['error']}")

    def wait(self, what: str, probe: Callable[[], T | None]) -> T:
        """Poll `probe` until it returns something, the deadline passes, or a process or run fails."""
        while True:
            found = probe()
            if found is not None and found is not False:
                return found
            self.check_health()
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise self.fail(f"timed out waiting for {what}")
            time.sleep(min(POLL_S, remaining))

    def settle(self) -> None:
        """Give the runs a moment to leave queued/running (bounded by SETTLE_S and the deadline)."""
        until = min(time.monotonic() + SETTLE_S, self.deadline)
        while time.monotonic() < until and any(r["status"] in status.ACTIVE for r in self.runs.of(SUBJECT)):
            time.sleep(POLL_S)

    def bot_comments(self) -> list[Comment]:
        return [c for c in self.sandbox.comments(TICKET_KEY) if c.author == BOT_ACCOUNT_ID]

    def proposals(self) -> Iterator[Comment]:
        return (c for c in self.bot_comments() if is_proposal(c.body))

    def last_seen(self) -> list[str]:
        lines: list[str] = []
        try:
            runs = self.runs.of(SUBJECT)
            lines += [_run_line(run) for run in runs] or [f"no run on {SUBJECT}"]
            comments = self.sandbox.comments(TICKET_KEY)
            lines.append(f"{len(comments)} comment(s) on {TICKET_KEY}")
            for c in comments[-8:]:
                lines.append(f"  {'Baton' if c.author == BOT_ACCOUNT_ID else c.author}: {c.headline}")
            lines.append(f"{len(self.sandbox.merge_requests())} merge request(s) in {self.sandbox.project}")
        except (httpx.HTTPError, OSError) as exc:
            lines.append(f"could not read the sandbox or the store: {type(exc).__name__}")
        lines.append(f"logs: {self.log('serve')}  {self.log('worker')}")
        return lines

    # --- the steps -------------------------------------------------------------------------------

    def play(self) -> None:
        """Every step in order; an unanswered or refused call to the sandbox fails the current step."""
        try:
            self._steps()
        except httpx.HTTPError as exc:
            raise self.fail(f"the sandbox refused or did not answer: {type(exc).__name__}: {exc}") from None

    def _steps(self) -> None:
        self.ready()
        self.label_ticket()
        self.acknowledged()
        if self.world.expect.needs_info:
            self.questioned()
        else:
            self.proposed()
            if self.world.expect.wants_mr:
                self.approve()
                self.shipped()
        self.summary()

    def ready(self) -> None:
        started, url = time.monotonic(), f"{base_url(self.settings)}/readyz"

        def probe() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait(f"Baton to answer {url}", probe)
        sandbox = self.started.sandbox or {}
        self.say(f"[0/{self.total}] Baton, Redis and the sandbox are up ({time.monotonic() - started:.1f} s)")
        self.say(f"      Baton  {base_url(self.settings)}   Jira  {sandbox['jira']['url']}")
        self.say(f"      GitLab {sandbox['gitlab']['url']}   model {sandbox['model']['url']}")
        self.say(f"      logs   {self.log('serve')}  {self.log('worker')}")
        if self.started.dashboard_url:
            self.say(f"      dashboard (this link signs you in)  {self.started.dashboard_url}")

    def label_ticket(self) -> None:
        started = self.begin(1, f"{REQUESTER[0]} (a developer) adds the label {self.label} to {TICKET_KEY}")
        if not self.sandbox.add_label(TICKET_KEY, self.label):
            raise self.fail(
                f"{TICKET_KEY} already had {self.label}; take it off the scenario's ticket labels"
            )
        run = self.wait("Baton to start a run", lambda: next(iter(self.runs.of(SUBJECT)), None))
        self.seen.run_id = run["id"]
        self.done(
            started,
            f"Jira sent the label webhook; Baton started run {run['id'][:12]} ({run['kind']})",
            f"look: {self.jira_curl(f'/rest/api/2/issue/{TICKET_KEY}?fields=labels')}",
            f"      {self.show_command(run['id'])}",
        )

    def acknowledged(self) -> None:
        started = self.begin(2, "Baton acknowledges the ticket and posts one status comment")

        def probe() -> tuple[Comment, Comment] | None:
            comments = self.bot_comments()
            state = next((c for c in comments if is_status(c.body)), None)
            ack = next((c for c in comments if not is_status(c.body) and not is_proposal(c.body)), None)
            return (ack, state) if ack and state else None

        ack, state = self.wait("the acknowledgement and the status comment", probe)
        self.seen.ack, self.seen.status_comment = ack, state
        self.done(
            started,
            f"acknowledgement: {ack.headline}",
            f"status comment {state.id} (edited in place as the run goes):",
            *(f"  {line}" for line in shown_lines(state.body)),
            f"look: {self.jira_curl(f'/rest/api/2/issue/{TICKET_KEY}/comment')}",
        )

    def proposed(self) -> None:
        started = self.begin(3, "Baton implements, tests, reviews and posts a proposal")
        proposal = self.wait("the proposal comment", lambda: next(self.proposals(), None))
        replies = next((line.strip() for line in proposal.body.splitlines() if "/approve" in line), "")
        self.done(
            started,
            f"proposal: {proposal.headline}",
            f"it ends with: {replies}",
            f"look: {self.jira_curl(f'/rest/api/2/issue/{TICKET_KEY}/comment/{proposal.id}')}",
            f"      {self.show_command(self.seen.run_id)}   (phases, tokens, cost)",
        )

    def questioned(self) -> None:
        started = self.begin(3, "Baton asks clarifying questions instead of guessing (and proposes nothing)")
        questions = self.world.triage_questions()
        known = {c.id for c in (self.seen.ack, self.seen.status_comment) if c is not None}

        def probe() -> Comment | None:
            fresh = [c for c in self.bot_comments() if c.id not in known]
            fresh = [c for c in fresh if not is_status(c.body) and not is_proposal(c.body)]
            return next((c for c in fresh if not questions or asks(c.body, questions)), None)

        asked = self.wait("the clarifying questions", probe)
        self.settle()
        if next(self.proposals(), None) is not None or self.sandbox.merge_requests():
            raise self.fail("a proposal or an MR appeared although the ticket needs answers first")
        self.done(
            started,
            f"questions: {asked.headline}",
            *(f"  ? {q}" for q in questions),
            f"look: {self.jira_curl(f'/rest/api/2/issue/{TICKET_KEY}/comment/{asked.id}')}",
        )

    def approve(self) -> None:
        started = self.begin(4, f"{APPROVER[0]} (in baton-approvers) replies /approve")
        reply = self.sandbox.reply(TICKET_KEY, "/approve", APPROVER[0])
        self.done(started, f"comment {reply.id} posted; Jira sent the comment webhook to Baton")

    def shipped(self) -> None:
        started = self.begin(5, "Baton pushes the branch, opens the MR and links it on the ticket")

        def probe() -> tuple[dict[str, Any], Comment] | None:
            mrs = [m for m in self.sandbox.merge_requests() if m["source_branch"].startswith(BRANCH_PREFIX)]
            link = next((c for m in mrs for c in self.bot_comments() if m["web_url"] in c.body), None)
            return (mrs[0], link) if mrs and link else None

        mr, link = self.wait("the merge request and the MR link on the ticket", probe)
        count = len(self.sandbox.merge_requests())
        if count != 1:
            raise self.fail(f"expected one MR in {self.sandbox.project}, found {count}")
        if self.sandbox.branch(mr["source_branch"]) is None:
            raise self.fail(f"the MR's branch {mr['source_branch']} is not in the repository")
        self.seen.mr = mr
        api = self.sandbox.project_api(f"/merge_requests/{mr['iid']}")
        self.done(
            started,
            f"MR !{mr['iid']} {mr['title']}: {mr['web_url']}",
            f"branch {mr['source_branch']} -> {mr['target_branch']}; on the ticket: {link.headline}",
            f"look: curl -s -H 'PRIVATE-TOKEN: {self.sandbox.gitlab_token}' {api}/changes",
        )

    def summary(self) -> None:
        self.settle()
        runs = self.runs.of(SUBJECT)
        tokens_in, tokens_out, cost = totals(runs)
        first = self.seen.status_comment
        final = next((c for c in self.bot_comments() if first and c.id == first.id), None)
        self.say("demo passed", "bold green")
        for run in runs:
            self.say(f"  run    {run['id']}  {run['kind']}  {run['status']}")
        if self.seen.mr:
            self.say(f"  branch {self.seen.mr['source_branch']}")
            self.say(f"  MR     {self.seen.mr['web_url']}")
        self.say(f"  tokens {tokens_in:,} in / {tokens_out:,} out   cost ${cost:.4f}")
        if final is not None:
            self.say(f"  status comment {final.id}, edited in place, now reads:")
            for line in shown_lines(final.body):
                self.say(f"    {line}")
        self.say(f"  see    {self.show_command(self.seen.run_id)}")
        if self.started.dashboard_url:
            self.say(f"         or the dashboard, while Baton runs (--keep): {self.started.dashboard_url}")


def shown_lines(body: str, limit: int = 12) -> list[str]:
    """A comment's visible lines (Baton's white-text effect marker left out), at most `limit`."""
    lines = [line.strip() for line in body.splitlines() if line.strip() and JIRA_MARKER_TEXT not in line]
    return lines[:limit]
