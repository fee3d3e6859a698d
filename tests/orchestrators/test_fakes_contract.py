"""The recording fakes (tests/support/fakes.py) keep the real clients' contracts the table tests rely on:
a write happens once per effect key, a write whose answer was lost is found again by its marker, and
what does not exist answers like the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.clients.gitlab import GitLabNotFound, GitLabUnavailable, GitLabUser
from bot.clients.jira import JiraError, JiraUnavailable
from bot.effects import find_jira_marker, find_marker
from bot.git.errors import GitError, HeadMoved, NothingToCommit
from tests.support.fakes import FakeLedger, FakeWorld

PERSON = GitLabUser(7, "rita", "Rita")


def world(tmp_path: Path) -> FakeWorld:
    fakes = FakeWorld.build(tmp_path)
    fakes.gitlab.add_project("g/p", 5)
    fakes.gitlab.add_merge_request(5, "feature", author=PERSON)
    fakes.jira.add_issue("DEMO-1")
    return fakes


async def test_a_comment_is_posted_once_per_key_and_carries_the_jira_marker(tmp_path: Path) -> None:
    fakes = world(tmp_path)
    first = await fakes.jira.add_comment("DEMO-1", "hello", "run:1:reply")
    again = await fakes.jira.add_comment("DEMO-1", "hello again", "run:1:reply")
    assert first == again and fakes.jira.calls == [("add_comment", "DEMO-1", "hello")]
    assert [find_jira_marker(b) for b in fakes.jira.bodies("DEMO-1")] == ["run:1:reply"]


@pytest.mark.parametrize("method", ["add_comment", "reply_in_discussion", "post_note"])
async def test_a_lost_answer_is_found_again_by_its_marker(tmp_path: Path, method: str) -> None:
    fakes = world(tmp_path)
    thread = fakes.gitlab.start_thread(5, 1, PERSON, "please fix")

    async def write() -> object:
        if method == "add_comment":
            return await fakes.jira.add_comment("DEMO-1", "text", "k:1")
        if method == "reply_in_discussion":
            return await fakes.gitlab.reply_in_discussion(5, 1, thread.id, "text", "k:1")
        return await fakes.gitlab.post_note(5, 1, "text", "k:1")

    fake = fakes.jira if method == "add_comment" else fakes.gitlab
    fake.faults.lose.add(method)
    with pytest.raises((JiraUnavailable, GitLabUnavailable)):
        await write()
    record = await fakes.ledger.get("k:1")
    assert record is not None and record.status == "pending"

    posted = await write()  # the retry adopts the post instead of posting again

    assert [c[0] for c in fake.calls] == [method] and str(posted) == (
        await fakes.ledger.get("k:1")
    ).external_id  # type: ignore[union-attr]


async def test_replies_carry_the_marker_and_resolving_needs_a_resolvable_thread(tmp_path: Path) -> None:
    fakes = world(tmp_path)
    thread = fakes.gitlab.start_thread(5, 1, PERSON, "please fix")
    await fakes.gitlab.reply_in_discussion(5, 1, thread.id, "done", "k:2")
    await fakes.gitlab.resolve_discussion(5, 1, thread.id)
    notes = fakes.gitlab.thread(5, 1, thread.id).notes
    assert find_marker(notes[-1].body) == "k:2" and fakes.gitlab.thread(5, 1, thread.id).resolved
    overview, _ = fakes.gitlab.add_note(5, 1, PERSON, "thanks")
    with pytest.raises(Exception, match="not resolvable"):
        await fakes.gitlab.resolve_discussion(5, 1, overview.id)


async def test_a_second_mr_for_the_branch_is_adopted_by_its_marker_and_awards_are_once(
    tmp_path: Path,
) -> None:
    fakes = world(tmp_path)
    args = (5, "baton/x", "main", "T", "D", ["baton"], False)
    mr = await fakes.gitlab.create_merge_request(*args, "proposal:p:mr")
    fakes.gitlab.ledger = FakeLedger()  # the ledger lost its record: the marker still finds the MR
    assert (await fakes.gitlab.create_merge_request(*args, "proposal:p:mr")).iid == mr.iid
    note = fakes.gitlab.thread(5, 1, fakes.gitlab.start_thread(5, 1, PERSON, "x").id).notes[0]
    first = await fakes.gitlab.award_emoji(5, 1, note.id, "eyes", "run:1:ack")
    fakes.gitlab.ledger = FakeLedger()
    assert await fakes.gitlab.award_emoji(5, 1, note.id, "eyes", "run:1:ack") == first
    assert [c[0] for c in fakes.gitlab.calls] == ["create_merge_request", "award_emoji"]


async def test_what_does_not_exist_answers_like_the_server(tmp_path: Path) -> None:
    fakes = world(tmp_path)
    assert await fakes.gitlab.branch_head(5, "nope") is None
    assert await fakes.gitlab.member_access_level("g/p", 99) == 0
    assert not await fakes.jira.user_in_group("someone", "admins")
    with pytest.raises(GitLabNotFound):
        await fakes.gitlab.merge_request(5, 99)
    with pytest.raises(GitLabNotFound):
        await fakes.gitlab.project("g/unknown")
    with pytest.raises(JiraError):
        await fakes.jira.add_comment("DEMO-404", "x", "k:3")


async def test_the_workspace_commits_diffs_and_pushes_exactly_the_approved_sha(tmp_path: Path) -> None:
    fakes = world(tmp_path)
    ws, url = fakes.workspace, fakes.gitlab.projects[5].http_url_to_repo
    base = ws.seed(url, "main", {"a.txt": "one\n"})
    await ws.ensure_mirror("g/p", url, None)
    tree = await ws.create_worktree("g/p", "run1", "main", "baton/x")
    with pytest.raises(NothingToCommit):
        await ws.commit_all(tree, "nothing")
    (tree / "a.txt").write_text("one\ntwo\n")
    sha = await ws.commit_all(tree, "add two")
    stat = await ws.diffstat(tree, base)
    assert [(f.path, f.added, f.deleted) for f in stat.files] == [("a.txt", 1, 0)]
    assert "+two" in await ws.diff(tree, base)
    with pytest.raises(HeadMoved):
        await ws.push(tree, url, "baton/x", None, base)
    await ws.push(tree, url, "baton/x", None, sha)
    assert await fakes.gitlab.branch_head(5, "baton/x") == sha
    ws.seed(url, "main", {"a.txt": "other\n"}, base)  # someone else moved main
    with pytest.raises(GitError, match="non-fast-forward"):
        await ws.push(tree, url, "main", None, sha)
