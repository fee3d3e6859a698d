"""Baton's GitLab adapter, run with the real python-gitlab client against the GitLab simulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.clients.gitlab import (
    AccessLevel,
    GitLabClient,
    GitLabConflict,
    GitLabForbidden,
    GitLabNotFound,
    GitLabUnavailable,
)
from bot.clients.retry import RetryPolicy
from bot.effects import find_marker
from bot.redact import Redactor
from bot.sandbox.gitlab_sim import Demo, GitLabServer, GitLabState, repo, seed_demo
from bot.sandbox.gitlab_sim.faults import LoseMode
from config.settings import Settings, load_settings
from tests.clients.ledger import MemoryLedger

FEATURE = "feature/mul"
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02, max_retry_after_s=0.3)


@dataclass
class World:
    state: GitLabState
    demo: Demo
    url: str
    ledger: MemoryLedger

    def client(self, token: str | None = None, **options: Any) -> GitLabClient:
        options.setdefault("read_policy", FAST)
        options.setdefault("timeout_s", 3.0)
        return GitLabClient(self.url, token or self.demo.bot.token, self.ledger, **options)

    async def human_note(self, user: str, body: str, **where: Any) -> dict[str, Any]:
        """Comment as a person through the sandbox endpoint (fires the Note Hook like a real comment)."""
        payload = {"user": user, "project": "demo/calculator", "merge_request_iid": 1, "body": body, **where}
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as raw:
            answer = await raw.post("/_sandbox/notes", json=payload)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def notes_marked(self, key: str) -> list[int]:
        return [n.id for n in self.state.notes.values() if find_marker(n.body) == key]

    def post_hits(self) -> int:
        return len([h for h in self.state.faults.hits if h.method == "POST"])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    state = GitLabState()
    demo = seed_demo(state, tmp_path)
    mul = "def mul(a: float, b: float) -> float:\n    return a * b\n"
    repo.commit_files(demo.project.repo_path, FEATURE, {"mul.py": mul}, "Add mul", start_from="main")
    with GitLabServer(state) as server:
        yield World(state, demo, server.base_url, MemoryLedger())


@pytest.fixture
def client(world: World) -> GitLabClient:
    return world.client()


async def open_mr(client: GitLabClient, key: str = "run-1:mr") -> int:
    mr = await client.create_merge_request(1, FEATURE, "main", "Add mul", "Adds mul.", [], False, key)
    return mr.iid


# -- reads ------------------------------------------------------------------------------------------------


async def test_reads_return_small_typed_results(world: World, client: GitLabClient) -> None:
    me = await client.bot_user()
    assert (me.username, me.id) == ("baton-bot", world.demo.bot.id)
    project = await client.project("demo/calculator")
    assert project == await client.project(1)
    assert (project.default_branch, project.http_url_to_repo) == ("main", f"{world.url}/demo/calculator.git")
    head = repo.branch_head(world.demo.project.repo_path, FEATURE)
    assert await client.branch_head("demo/calculator", FEATURE) == head
    assert await client.branch_head(1, "no-such-branch") is None
    levels = [await client.member_access_level(1, u.id) for u in (world.demo.maintainer, world.demo.guest)]
    assert levels == [AccessLevel.MAINTAINER, AccessLevel.GUEST]
    assert await client.member_access_level(1, world.state.add_user("outsider").id) == AccessLevel.NONE


async def test_merge_requests_are_created_found_and_diffed(world: World, client: GitLabClient) -> None:
    mr = await client.create_merge_request(
        "demo/calculator", FEATURE, "main", "Add mul", "Adds mul.", ["ai"], True, "run-1:mr"
    )
    head = repo.branch_head(world.demo.project.repo_path, FEATURE)
    assert (mr.iid, mr.title, mr.draft, mr.labels, mr.sha) == (1, "Draft: Add mul", True, ("ai",), head)
    assert (
        find_marker(mr.description) == "run-1:mr"
        and mr.author is not None
        and mr.author.username == "baton-bot"
    )
    assert mr.diff_refs is not None and mr.diff_refs.head_sha == head
    assert await client.merge_request(1, 1) == mr
    assert await client.find_merge_request(1, FEATURE) == mr
    assert await client.find_merge_request(1, "elsewhere") is None
    diff = await client.mr_diff(1, 1)
    assert [f.new_path for f in diff.files] == ["mul.py"] and diff.files[0].new_file
    assert diff.diff_refs == mr.diff_refs
    assert diff.patch().startswith("--- /dev/null\n+++ b/mul.py\n@@ -0,0 +1,2 @@")


async def test_discussions_carry_threads_notes_and_positions(world: World, client: GitLabClient) -> None:
    await open_mr(client)
    mr = await client.merge_request(1, 1)
    assert mr.diff_refs is not None
    refs = {
        "base_sha": mr.diff_refs.base_sha,
        "head_sha": mr.diff_refs.head_sha,
        "start_sha": mr.diff_refs.start_sha,
    }
    position = {"position_type": "text", "old_path": "mul.py", "new_path": "mul.py", "new_line": 2, **refs}
    thread = await world.human_note("maintainer", "Use math.prod?", position=position)
    reply = await world.human_note(
        "developer", "/remediate use math.prod", discussion_id=thread["discussion_id"]
    )
    discussions = await client.discussions(1, 1)
    diff_thread = next(d for d in discussions if d.position is not None)
    assert diff_thread.position is not None and diff_thread.position.new_line == 2
    assert diff_thread.position.new_path == "mul.py" and diff_thread.position.old_line is None
    assert diff_thread.notes[0].type == "DiffNote" and not diff_thread.resolved
    assert diff_thread.notes[0].author is not None and diff_thread.notes[0].author.username == "maintainer"
    assert diff_thread.id == thread["discussion_id"] and [n.id for n in diff_thread.notes][1] == reply["id"]


# -- exactly-once writes ----------------------------------------------------------------------------------


async def test_posting_the_same_effect_twice_posts_one_note(world: World, client: GitLabClient) -> None:
    iid = await open_mr(client)
    first = await client.post_note(1, iid, "Proposal: ship it", "run-1:proposal")
    world.ledger.calls.clear()
    second = await client.post_note(1, iid, "Proposal: ship it", "run-1:proposal")
    assert first == second and world.notes_marked("run-1:proposal") == [first]
    assert world.ledger.calls == [("get", "run-1:proposal")]
    assert world.state.notes[first].body == "Proposal: ship it\n\n<!-- baton:effect=run-1:proposal -->"


@pytest.mark.parametrize("mode", ["502", "drop"])
async def test_a_lost_response_after_the_server_committed_yields_one_note(
    world: World, client: GitLabClient, mode: LoseMode
) -> None:
    iid = await open_mr(client)
    world.state.faults.lose_next(1, mode=mode, methods=["POST"])
    with pytest.raises(GitLabUnavailable):
        await client.post_note(1, iid, "Proposal", "run-1:proposal")
    assert world.ledger.records["run-1:proposal"].status == "pending"
    assert len(world.notes_marked("run-1:proposal")) == 1  # the server did commit it
    note_id = await client.post_note(1, iid, "Proposal", "run-1:proposal")  # the job runs again
    assert world.notes_marked("run-1:proposal") == [note_id]
    assert world.ledger.records["run-1:proposal"].external_id == str(note_id)


async def test_a_5xx_burst_on_a_post_surfaces_unavailable_and_never_duplicates(
    world: World, client: GitLabClient
) -> None:
    iid = await open_mr(client)
    world.state.faults.fail_next(2, status=503, methods=["POST"])
    for _ in range(2):
        with pytest.raises(GitLabUnavailable):
            await client.post_note(1, iid, "Status", "run-1:status")
    assert world.post_hits() == 2  # one POST per call: never retried blindly
    assert world.notes_marked("run-1:status") == []
    note_id = await client.post_note(1, iid, "Status", "run-1:status")
    assert world.notes_marked("run-1:status") == [note_id]


async def test_a_reply_in_a_thread_is_posted_once(world: World, client: GitLabClient) -> None:
    await open_mr(client)
    thread = await world.human_note("maintainer", "/remediate rename it", thread=True)
    discussion_id = str(thread["discussion_id"])
    world.state.faults.lose_next(1, methods=["POST"])
    with pytest.raises(GitLabUnavailable):
        await client.reply_in_discussion(1, 1, discussion_id, "Proposal in thread", "run-2:reply")
    reply_id = await client.reply_in_discussion(1, 1, discussion_id, "Proposal in thread", "run-2:reply")
    assert world.notes_marked("run-2:reply") == [reply_id]
    (thread_now,) = [d for d in await client.discussions(1, 1) if d.id == discussion_id]
    assert [n.id for n in thread_now.notes][-1] == reply_id


async def test_a_merge_request_is_opened_once_even_when_the_response_is_lost(
    world: World, client: GitLabClient
) -> None:
    world.state.faults.lose_next(1, methods=["POST"])
    with pytest.raises(GitLabUnavailable):
        await open_mr(client)
    assert await open_mr(client) == 1
    assert [mr.iid for mr in world.state.merge_requests.values()] == [1]


async def test_an_open_merge_request_without_our_marker_is_a_conflict(
    world: World, client: GitLabClient
) -> None:
    human = world.client(world.demo.developer.token)
    await human.create_merge_request(1, FEATURE, "main", "Mine", "", [], False, "human:mr")
    with pytest.raises(GitLabConflict):
        await open_mr(client, key="run-9:mr")


async def test_award_emoji_once_on_a_note_and_on_the_merge_request(
    world: World, client: GitLabClient
) -> None:
    await open_mr(client)
    trigger = await world.human_note("maintainer", "/approve")
    world.state.faults.lose_next(1, methods=["POST"])
    with pytest.raises(GitLabUnavailable):
        await client.award_emoji(1, 1, trigger["id"], "eyes", "run-3:eyes")
    eyes = await client.award_emoji(1, 1, trigger["id"], "eyes", "run-3:eyes")
    again = await client.award_emoji(1, 1, trigger["id"], "eyes", "run-4:eyes")  # other key, same award
    on_mr = await client.award_emoji(1, 1, None, "rocket", "run-3:rocket")
    awards = {(a.awardable_type, a.name): a.id for a in world.state.awards.values()}
    assert awards == {("Note", "eyes"): eyes, ("MergeRequest", "rocket"): on_mr} and again == eyes


async def test_edit_note_keeps_the_marker_and_threads_can_be_resolved(
    world: World, client: GitLabClient
) -> None:
    await open_mr(client)
    status = await client.post_note(1, 1, "- [ ] implement", "run-5:status")
    await client.edit_note(1, 1, status, "- [x] implement", effect_key="run-5:status")
    assert world.state.notes[status].body == "- [x] implement\n\n<!-- baton:effect=run-5:status -->"
    thread = await world.human_note("maintainer", "/remediate x", thread=True)
    await client.resolve_discussion(1, 1, thread["discussion_id"])
    (resolved,) = [d for d in await client.discussions(1, 1) if d.id == thread["discussion_id"]]
    assert resolved.resolved


# -- reads under faults -----------------------------------------------------------------------------------


async def test_a_429_with_retry_after_is_honoured_then_the_get_succeeds(world: World) -> None:
    patient = world.client(read_policy=RetryPolicy(attempts=2, max_retry_after_s=30))
    world.state.faults.rate_limit_next(1, retry_after=1, methods=["GET"])
    started = time.monotonic()
    assert (await patient.project(1)).id == 1
    assert time.monotonic() - started >= 1.0
    capped = world.client(read_policy=RetryPolicy(attempts=2, max_retry_after_s=0.2))
    world.state.faults.rate_limit_next(1, retry_after=60, methods=["GET"])
    started = time.monotonic()
    assert (await capped.project(1)).id == 1
    assert 0.2 <= time.monotonic() - started < 5
    assert [h.kind for h in world.state.faults.hits] == ["rate_limit", "rate_limit"]


async def test_429_without_retry_after_and_5xx_on_gets_are_retried(
    world: World, client: GitLabClient
) -> None:
    world.state.faults.rate_limit_next(1, methods=["GET"])
    world.state.faults.fail_next(1, status=502, methods=["GET"])
    assert (await client.project("demo/calculator")).id == 1
    assert [h.kind for h in world.state.faults.hits] == ["rate_limit", "status"]
    world.state.faults.fail_next(10, status=503, methods=["GET"])
    with pytest.raises(GitLabUnavailable):
        await client.project(1)
    assert len(world.state.faults.hits) == 2 + FAST.attempts


async def test_a_hung_server_surfaces_as_unavailable_within_the_timeout(world: World) -> None:
    impatient = world.client(timeout_s=0.3, read_policy=RetryPolicy(attempts=1))
    world.state.faults.hang()
    started = time.monotonic()
    try:
        with pytest.raises(GitLabUnavailable):
            await impatient.project(1)
    finally:
        world.state.faults.release()
    assert time.monotonic() - started < 2


async def test_errors_are_typed_and_never_contain_the_token(world: World) -> None:
    guest = world.client(world.demo.guest.token)
    with pytest.raises(GitLabForbidden) as forbidden:
        await guest.branch_head(1, "main")
    wrong = world.client("glpat-not-a-real-token-123")
    with pytest.raises(GitLabForbidden) as unauthorized:
        await wrong.bot_user()
    with pytest.raises(GitLabNotFound):
        await world.client().merge_request(1, 99)
    texts = [
        str(forbidden.value),
        repr(forbidden.value),
        str(unauthorized.value),
        str(unauthorized.value.__cause__),
    ]
    assert all(world.demo.guest.token not in t and "glpat-not-a-real-token-123" not in t for t in texts)
    assert "HTTP 401" in str(unauthorized.value) and "HTTP 403" in str(forbidden.value)


# -- redaction -------------------------------------------------------------------------------------------


async def test_every_posted_or_edited_text_is_redacted(world: World) -> None:
    canary = "canary-gitlab-secret-7f3e2d1c"
    client = world.client(redactor=Redactor([canary]))
    leaky = f"failed: TOKEN={canary} and glpat-AAAAbbbbCCCCdddd1234"
    mr = await client.create_merge_request(1, FEATURE, "main", f"Add {canary}", leaky, [], False, "run-9:mr")
    note = await client.post_note(1, mr.iid, leaky, "run-9:note")
    await client.edit_note(1, mr.iid, note, f"edited {canary}", effect_key="run-9:note")
    thread = await world.human_note("maintainer", "please look", merge_request_iid=mr.iid)
    await client.reply_in_discussion(1, mr.iid, thread["discussion_id"], leaky, "run-9:reply")

    (opened,) = [m for m in world.state.merge_requests_of(world.demo.project) if m.iid == mr.iid]
    stored = [opened.title, opened.description]
    stored += [n.body for n in world.state.notes.values()]
    assert not [text for text in stored if canary in text or "glpat-AAAA" in text]
    assert sum("[redacted]" in text for text in stored) >= 4
    assert world.notes_marked("run-9:note") == [note]  # the marker survives redaction


def settings_for(world: World, **secrets: str) -> Settings:
    environ = {"BATON_GITLAB_URL": world.url, "BATON_GITLAB_TOKEN": world.demo.bot.token}
    environ |= {f"BATON_{name.upper()}": value for name, value in secrets.items()}
    return load_settings(environ, check=False)


async def test_the_client_from_settings_redacts_every_configured_secret(world: World) -> None:
    """`GitLabClient.from_settings` (what shell/wiring.py calls) masks every secret setting, not only its
    own token: the model key, the other service's token, the webhook secrets, URL passwords."""
    settings = settings_for(
        world,
        anthropic_api_key="canary-model-key-1a2b3c4d",
        jira_token="canary-jira-token-5e6f7a8b",
        gitlab_webhook_secret="canary-hook-secret-9c0d1e2f",
        database_url="postgresql://baton:canary-db-password-3a4b@db/baton",
    )
    client = GitLabClient.from_settings(settings, world.ledger)
    canaries = ["canary-model-key-1a2b3c4d", "canary-jira-token-5e6f7a8b", "canary-hook-secret-9c0d1e2f"]
    canaries += ["canary-db-password-3a4b", world.demo.bot.token]
    mr = await open_mr(client, "run-8:mr")
    note = await client.post_note(1, mr, "env:\n" + "\n".join(canaries), "run-8:note")
    client.close()

    body = world.state.notes[note].body
    assert not [c for c in canaries if c in body]
    assert body.count("[redacted]") == len(canaries)


async def test_a_write_that_bypasses_the_client_methods_is_redacted_too(world: World) -> None:
    """The redactor sits under python-gitlab (`http_request`), not in each method: a note created with
    python-gitlab directly, or an MR edited through it, is redacted all the same."""
    canary = "canary-gitlab-secret-0a9b8c7d"
    client = world.client(redactor=Redactor([canary]))
    iid = await open_mr(client, "run-7:mr")
    mr = client._gl.projects.get(1, lazy=True).mergerequests.get(iid, lazy=True)
    created = mr.notes.create({"body": f"raw {canary}"})
    client._gl.http_put(f"/projects/1/merge_requests/{iid}", post_data={"description": f"now {canary}"})
    client.close()

    (opened,) = [m for m in world.state.merge_requests_of(world.demo.project) if m.iid == iid]
    assert world.state.notes[created.id].body == "raw [redacted]"
    assert opened.description == "now [redacted]"


async def test_markers_and_hook_tokens_are_not_rewritten(world: World) -> None:
    """A short secret that occurs in Baton's own marker (`<!-- baton:effect=… -->`) must not break it (a
    retry finds its earlier post by it), and a hook keeps the webhook secret it is registered with."""
    hook_secret = "canary-hook-secret-4d5e6f7a"
    client = world.client(redactor=Redactor(["baton", hook_secret]))
    iid = await open_mr(client, "run-6:mr")
    note = await client.post_note(1, iid, "posted by baton", "run-6:note")
    fresh = world.client(redactor=Redactor(["baton"]))
    fresh._ledger = MemoryLedger()  # an attempt whose outcome is unknown: only the marker can tell
    await fresh._ledger.begin("run-6:note", "gitlab.note", None)
    again = await fresh.post_note(1, iid, "posted by baton", "run-6:note")
    admin = world.client(world.demo.maintainer.token, redactor=Redactor(["baton", hook_secret]))
    hook = await admin.add_project_hook(1, "https://baton.example.com/webhooks/gitlab", hook_secret, {})
    for each in (client, fresh, admin):
        each.close()

    assert again == note and world.notes_marked("run-6:note") == [note]
    assert world.state.notes[note].body.startswith("posted by [redacted]")
    assert world.state.hooks[hook.id].token == hook_secret
    assert world.state.hooks[hook.id].url == "https://baton.example.com/webhooks/gitlab"
