"""`/remediate` refusals (orchestrators/remediate.py and the worker's authorization), as a table.

Each case: the merge request's state and who types what where → the writes in order (👀 on the command,
the refusal, the status reply, ❌), what the refusal says and where, and how the run ends. None of them
reaches the agent: every refusal is decided before a mirror is fetched or a worktree made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.store import runs, status
from tests.support.tables import (
    APPROVER,
    DEVELOPER,
    ISSUE,
    MR_IID,
    PROJECT_ID,
    REVIEWER,
    GitLabPerson,
    Table,
    gitlab_note,
    jira_comment,
    seed_gitlab,
    seed_jira,
    table,
)

GUEST = GitLabPerson(604, "guest")
# A refusal inside the workflow: 👀 on pickup, the status reply as assemble starts, the refusal, the
# status reply edited (assemble over, then the run's end), ❌ at the end.
REFUSED_IN_WORKFLOW = (
    "award_emoji", "reply_in_discussion", "reply_in_discussion", "edit_note", "edit_note", "award_emoji"
)  # fmt: skip
# A refusal by the worker's authorization, before the workflow runs: the refusal only.
REFUSED_BEFORE = ("reply_in_discussion",)
Setup = Callable[[Table, str], Awaitable[None]]


async def closed(t: Table, thread: str) -> None:
    t.fakes.gitlab.set_state(PROJECT_ID, MR_IID, "closed")


async def merged(t: Table, thread: str) -> None:
    t.fakes.gitlab.set_state(PROJECT_ID, MR_IID, "merged")


async def all_resolved(t: Table, thread: str) -> None:
    await t.fakes.gitlab.resolve_discussion(PROJECT_ID, MR_IID, thread)


async def busy(t: Table, thread: str) -> None:
    """Another /remediate in the same thread is queued and not yet done."""
    _, note = t.fakes.gitlab.add_note(PROJECT_ID, MR_IID, REVIEWER.user, "/remediate", thread)
    await t.deliver("gitlab", gitlab_note("/remediate", REVIEWER, note, thread))


async def three_already(t: Table, thread: str) -> None:
    """The developer started three rate-limited runs on this MR in the last 15 minutes."""
    for n in range(3):
        other = t.fakes.gitlab.start_thread(PROJECT_ID, MR_IID, REVIEWER.user, f"nit {n}").id
        _, note = t.fakes.gitlab.add_note(PROJECT_ID, MR_IID, DEVELOPER.user, "/remediate", other)
        await t.deliver("gitlab", gitlab_note("/remediate", DEVELOPER, note, other))


@dataclass(frozen=True)
class Case:
    name: str
    writes: tuple[str, ...]
    said: str
    outcome: str = status.SUCCEEDED
    message: str = "refused: "
    who: GitLabPerson = DEVELOPER
    text: str = "/remediate"
    overview: bool = False  # typed as a note on the MR overview, not in the thread
    setup: Setup | None = None


CASES = [
    Case("the merge request is closed", REFUSED_IN_WORKFLOW,
         "this merge request is closed; there is nothing to fix.", setup=closed),
    Case("the merge request is merged", REFUSED_IN_WORKFLOW,
         "this merge request is merged; there is nothing to fix.", setup=merged),
    Case("`all` with no unresolved thread", REFUSED_IN_WORKFLOW,
         "there is no unresolved thread on this merge request.", text="/remediate all", overview=True,
         setup=all_resolved),
    Case("the thread already has a run going", ("reply_in_discussion",),
         "I am already working on this thread (run ", status.CANCELLED, "joined run ", setup=busy),
    Case("a guest (below developer)", REFUSED_BEFORE,
         "/remediate is for members with developer access or higher; you have guest", who=GUEST),
    Case("a fourth run in 15 minutes", REFUSED_BEFORE, "you started 3 runs here in the last 15 minutes",
         setup=three_already),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_remediate_refusals(tmp_path: Path, case: Case) -> None:
    async with table(tmp_path) as t:
        seed_gitlab(t)
        t.fakes.gitlab.add_member(PROJECT_ID, GUEST.id, 10)
        thread = t.fakes.gitlab.start_thread(PROJECT_ID, MR_IID, REVIEWER.user, "add() ignores b").id
        if case.setup is not None:
            await case.setup(t, thread)
        discussion, note = t.fakes.gitlab.add_note(
            PROJECT_ID, MR_IID, case.who.user, case.text, None if case.overview else thread
        )
        t.forget_setup()
        run_id = await t.deliver("gitlab", gitlab_note(case.text, case.who, note, discussion.id))

        run = await t.job(run_id)

        assert t.writes() == list(case.writes)
        replies = [c for c in t.fakes.gitlab.calls if c[0] == "reply_in_discussion"]
        assert {c[1:4] for c in replies} == {(PROJECT_ID, MR_IID, discussion.id)}  # all where it was typed
        refusals = [str(c[4]) for c in replies if str(c[4]).startswith(f"@{case.who.username}: ")]
        assert len(refusals) == 1 and case.said in refusals[0]  # one answer to the person, saying why
        awards = [c for c in t.fakes.gitlab.calls if c[0] == "award_emoji"]
        assert [(c[3], c[4]) for c in awards] in ([], [(note.id, "eyes"), (note.id, "x")])  # on the command
        assert run.status == case.outcome
        assert (await t.last_message(run_id)).startswith(case.message)
        assert t.fakes.workspace.calls == []  # no mirror fetched, no worktree made


async def test_a_refused_remediate_starts_over_from_assemble_on_retry(tmp_path: Path) -> None:
    """A refusal leaves nothing gathered: the run's phases are reset so `/retry` begins at assemble."""
    async with table(tmp_path) as t:
        seed_gitlab(t)
        thread = t.fakes.gitlab.start_thread(PROJECT_ID, MR_IID, REVIEWER.user, "add() ignores b").id
        t.fakes.gitlab.set_state(PROJECT_ID, MR_IID, "closed")
        _, note = t.fakes.gitlab.add_note(PROJECT_ID, MR_IID, DEVELOPER.user, "/remediate", thread)
        run_id = await t.deliver("gitlab", gitlab_note("/remediate", DEVELOPER, note, thread))
        await t.job(run_id)

        phases = (await runs.detail(t.sm, run_id))["phases"]
        assert [(p["name"], p["status"]) for p in phases][:2] == [
            ("assemble", "pending"),
            ("implement", "pending"),
        ]


async def test_remediate_on_a_jira_ticket_is_refused_there(tmp_path: Path) -> None:
    """`/remediate` works on merge requests only: on a ticket the one reply says so, on the ticket."""
    async with table(tmp_path) as t:
        seed_jira(t)
        run_id = await t.deliver("jira", jira_comment("/remediate", APPROVER))

        run = await t.job(run_id)

        assert t.writes() == ["add_comment"]
        assert t.fakes.jira.calls[0][1] == ISSUE
        assert "/remediate works on GitLab merge requests only." in str(t.fakes.jira.calls[0][2])
        assert run.status == status.SUCCEEDED
