"""Contract tests: the real python-gitlab client against the GitLab simulator, its webhooks and faults.

Response field names are checked against GitLab's documented example responses:
- doc/api/merge_requests.md, "Get single MR" example (gitlab-org/gitlab docs as mirrored in
  pavankalisetti009/gitlab @ 0b917ddeab3856f35724b86110e50f99df1ce349);
- doc/api/notes.md, "Get single merge request note" example
  (same mirror @ a4d84368cb9b24c8374bbe3ac5bd891658bc655c);
- doc/api/discussions.md, "List project merge request discussion items" and "Diff comments also contain
  position" examples (same mirror @ 4d5af20bf55d3eee7690523d1431ed92756722cf);
- doc/api/award_emoji.md, "Award a new emoji" example
  (gitlabhq/gitlabhq @ 04d4cf89dbe213ad994badad4c8a9a3f2ccb754f).
Webhook bodies are checked against the recorded deliveries in tests/fixtures/gitlab (see SOURCES.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import gitlab.exceptions
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.git.askpass import askpass_env, install_script
from bot.sandbox.gitlab_sim import Demo, GitLabServer, GitLabState, ServerThread, repo, seed_demo
from bot.sandbox.gitlab_sim.faults import LoseMode

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gitlab"
GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Baton",
    "GIT_AUTHOR_EMAIL": "baton@example.com",
    "GIT_COMMITTER_NAME": "Baton",
    "GIT_COMMITTER_EMAIL": "baton@example.com",
}
HOOK_TOKEN = "hook-secret-123"
FEATURE = "feature/mul"

# fmt: off
# doc/api/merge_requests.md, "Get single MR", example response (premium-only fields included as null).
DOC_MR_KEYS = frozenset({
    "id", "iid", "project_id", "title", "description", "state", "imported", "imported_from", "created_at",
    "updated_at", "merged_by", "merge_user", "merged_at", "merge_after", "prepared_at", "closed_by",
    "closed_at", "target_branch", "source_branch", "user_notes_count", "upvotes", "downvotes", "author",
    "assignees", "assignee", "reviewers", "source_project_id", "target_project_id", "labels", "draft",
    "work_in_progress", "milestone", "merge_when_pipeline_succeeds", "merge_status",
    "detailed_merge_status", "sha", "merge_commit_sha", "squash_commit_sha", "discussion_locked",
    "should_remove_source_branch", "force_remove_source_branch", "reference", "references", "web_url",
    "time_stats", "squash", "task_completion_status", "has_conflicts", "blocking_discussions_resolved",
    "approvals_before_merge", "subscribed", "changes_count", "latest_build_started_at",
    "latest_build_finished_at", "first_deployed_to_production_at", "pipeline", "head_pipeline", "diff_refs",
    "merge_error", "first_contribution", "user",
})
# doc/api/notes.md, "Get single merge request note", example response.
DOC_NOTE_KEYS = frozenset({
    "id", "body", "attachment", "author", "created_at", "updated_at", "system", "noteable_id",
    "noteable_type", "project_id", "noteable_iid", "resolvable", "confidential", "internal",
})
# fmt: on
# doc/api/discussions.md, MR discussion items: thread notes are resolvable; diff notes have a position.
DOC_DISCUSSION_KEYS = frozenset({"id", "individual_note", "notes"})
DOC_THREAD_NOTE_KEYS = DOC_NOTE_KEYS - {"confidential", "internal"} | {"type", "resolved", "resolved_by"}
DOC_POSITION_KEYS = frozenset(
    {"base_sha", "start_sha", "head_sha", "old_path", "new_path", "position_type", "old_line", "new_line"}
)
DOC_AUTHOR_KEYS = frozenset({"id", "name", "username", "state", "avatar_url", "web_url"})
# doc/api/award_emoji.md, "Award a new emoji", example response.
DOC_AWARD_KEYS = frozenset(
    {"id", "name", "user", "created_at", "updated_at", "awardable_id", "awardable_type"}
)


@dataclass
class World:
    state: GitLabState
    demo: Demo
    url: str

    def client(self, token: str) -> gitlab.Gitlab:
        return gitlab.Gitlab(self.url, private_token=token, timeout=5, retry_transient_errors=False)

    def raw(self, token: str | None = None) -> httpx.Client:
        headers = {"PRIVATE-TOKEN": token} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=5)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    state = GitLabState()
    state.webhook_retry_delays_s = (0.02, 0.05, 0.1)
    demo = seed_demo(state, tmp_path)
    mul = "def mul(a: float, b: float) -> float:\n    return a * b\n"
    repo.commit_files(demo.project.repo_path, FEATURE, {"mul.py": mul}, "Add mul", start_from="main")
    with GitLabServer(state) as server:
        yield World(state, demo, server.base_url)


@dataclass
class Receiver:
    """A webhook receiver on a free port that fails its first `fail_first` deliveries with 500."""

    fail_first: int = 0
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    async def hook(self, request: Request) -> Response:
        self.received.append((dict(request.headers), json.loads(await request.body())))
        if len(self.received) <= self.fail_first:
            return JSONResponse({"error": "boom"}, status_code=500)
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    with ServerThread(rec.app()) as server:
        yield rec, f"{server.base_url}/hook"


def open_mr(world: World, title: str = "Add mul") -> Any:
    project = world.client(world.demo.developer.token).projects.get(world.demo.project.id)
    return project.mergerequests.create({"source_branch": FEATURE, "target_branch": "main", "title": title})


def run_git(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(["git", *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def missing_keys(
    expected: dict[str, Any], actual: dict[str, Any], skip: frozenset[str] = frozenset()
) -> list[str]:
    """Keys of `expected` (recursively through dicts) that `actual` lacks."""
    missing = []
    for key, value in expected.items():
        if key in skip:
            continue
        if key not in actual:
            missing.append(key)
        elif isinstance(value, dict) and isinstance(actual[key], dict):
            missing += [f"{key}.{k}" for k in missing_keys(value, actual[key], skip)]
    return missing


# -- authentication, projects, members --------------------------------------------------------------------


def test_private_token_and_bearer_token_authenticate_and_anything_else_is_401(world: World) -> None:
    bot = world.demo.bot
    by_header = world.client(bot.token)
    by_header.auth()
    by_bearer = gitlab.Gitlab(world.url, oauth_token=bot.token, timeout=5)
    by_bearer.auth()
    assert by_header.user is not None and by_header.user.username == "baton-bot"
    assert by_bearer.user is not None and by_bearer.user.id == bot.id
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
        world.client("glpat-wrong").auth()
    with world.raw() as raw:
        answer = raw.get("/api/v4/user")
    assert (answer.status_code, answer.json()) == (401, {"message": "401 Unauthorized"})


def test_project_by_id_and_by_encoded_path_and_invisible_to_non_members(world: World) -> None:
    gl = world.client(world.demo.guest.token)
    by_id = gl.projects.get(world.demo.project.id)
    by_path = gl.projects.get("demo/calculator")
    assert by_id.id == by_path.id and by_path.path_with_namespace == "demo/calculator"
    assert by_path.default_branch == "main" and by_path.http_url_to_repo == f"{world.url}/demo/calculator.git"
    outsider = world.state.add_user("outsider")
    with world.raw(outsider.token) as raw:
        answer = raw.get("/api/v4/projects/demo%2Fcalculator")
    assert answer.status_code == 404 and answer.json()["message"].startswith("404")


def test_member_access_levels_by_role_and_404_for_non_members(world: World) -> None:
    project = world.client(world.demo.bot.token).projects.get(world.demo.project.id, lazy=True)
    demo = world.demo
    levels = {u.username: project.members_all.get(u.id).access_level for u in (demo.maintainer, demo.guest)}
    assert levels == {"maintainer": 40, "guest": 10}
    outsider = world.state.add_user("outsider")
    with pytest.raises(gitlab.exceptions.GitlabGetError) as err:
        project.members_all.get(outsider.id)
    assert err.value.response_code == 404


# -- merge requests ---------------------------------------------------------------------------------------


def test_merge_request_has_the_documented_fields_and_live_diff_refs(world: World) -> None:
    with world.raw(world.demo.developer.token) as raw:
        data = {
            "source_branch": FEATURE,
            "target_branch": "main",
            "title": "Draft: Add mul",
            "labels": "ai,calc",
        }
        created = raw.post("/api/v4/projects/demo%2Fcalculator/merge_requests", json=data)
        single = raw.get(f"/api/v4/projects/{world.demo.project.id}/merge_requests/{created.json()['iid']}")
    assert created.status_code == 201
    body = single.json()
    assert not DOC_MR_KEYS - set(body)
    assert not DOC_AUTHOR_KEYS - set(body["author"])
    head = repo.branch_head(world.demo.project.repo_path, FEATURE)
    main = repo.branch_head(world.demo.project.repo_path, "main")
    assert body["diff_refs"] == {"base_sha": main, "head_sha": head, "start_sha": main}
    assert (body["sha"], body["draft"], body["labels"], body["state"]) == (
        head,
        True,
        ["ai", "calc"],
        "opened",
    )
    assert body["web_url"] == f"{world.url}/demo/calculator/-/merge_requests/1"


def test_merge_requests_list_filters_by_source_branch_and_state(world: World) -> None:
    repo.commit_files(world.demo.project.repo_path, "other", {"x.py": "x = 1\n"}, "x", start_from="main")
    project = world.client(world.demo.developer.token).projects.get(world.demo.project.id)
    first = open_mr(world)
    project.mergerequests.create({"source_branch": "other", "target_branch": "main", "title": "Other"})
    assert [m.iid for m in project.mergerequests.list(source_branch=FEATURE, get_all=True)] == [first.iid]
    first.state_event = "close"
    first.save()
    assert [m.iid for m in project.mergerequests.list(state="opened", get_all=True)] == [2]
    assert [m.iid for m in project.mergerequests.list(state="closed", get_all=True)] == [1]
    assert len(project.mergerequests.list(state="all", get_all=True)) == 2


def test_a_second_open_merge_request_for_the_same_branches_is_409(world: World) -> None:
    open_mr(world)
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as err:
        open_mr(world, "again")
    assert err.value.response_code == 409


def test_changes_and_diffs_come_from_the_bare_repository(world: World) -> None:
    mr = open_mr(world)
    changes = mr.changes()["changes"]
    gl = world.client(world.demo.developer.token)
    diffs = list(
        gl.http_list(f"/projects/{world.demo.project.id}/merge_requests/{mr.iid}/diffs", get_all=True)
    )
    assert [c["new_path"] for c in changes] == ["mul.py"] == [d["new_path"] for d in diffs]
    assert diffs[0]["new_file"] is True and diffs[0]["diff"].startswith("@@ -0,0 +1,2 @@")
    assert "+    return a * b" in diffs[0]["diff"]


# -- notes, discussions, award emoji ----------------------------------------------------------------------


def test_notes_on_merge_requests_and_issues_have_documented_fields_and_can_be_edited(world: World) -> None:
    mr = open_mr(world)  # as the developer, who then edits their own note
    with world.raw(world.demo.developer.token) as raw:
        created = raw.post(f"/api/v4/projects/1/merge_requests/{mr.iid}/notes", json={"body": "Looks good"})
    assert created.status_code == 201
    note = mr.notes.get(created.json()["id"])
    assert not DOC_NOTE_KEYS - set(note.attributes) and not DOC_AUTHOR_KEYS - set(note.author)
    assert (note.body, note.noteable_type, note.noteable_iid, note.type) == (
        "Looks good",
        "MergeRequest",
        1,
        None,
    )
    note.body = "Looks great"
    note.save()
    assert mr.notes.get(note.id).body == "Looks great"
    issue = world.state.add_issue(world.demo.project, "Bug")
    issue_notes = (
        world.client(world.demo.guest.token).projects.get(1, lazy=True).issues.get(issue.iid, lazy=True).notes
    )
    posted = issue_notes.create({"body": "Seen it too"})
    assert [n.body for n in issue_notes.list(get_all=True)] == ["Seen it too"]
    assert posted.noteable_type == "Issue"


def test_only_the_author_may_edit_a_note(world: World) -> None:
    mr = open_mr(world)
    note = mr.notes.create({"body": "mine"})
    other = (
        world.client(world.demo.maintainer.token).projects.get(1, lazy=True).mergerequests.get(1, lazy=True)
    )
    with pytest.raises(gitlab.exceptions.GitlabUpdateError) as err:
        other.notes.update(note.id, {"body": "yours"})
    assert err.value.response_code == 403


def test_threads_diff_positions_replies_and_resolving(world: World) -> None:
    mr = open_mr(world)
    refs = mr.diff_refs
    position = {"position_type": "text", "old_path": "mul.py", "new_path": "mul.py", "new_line": 2, **refs}
    thread = mr.discussions.create({"body": "Use math.prod?", "position": position})
    reply = thread.notes.create({"body": "/remediate use math.prod"})
    listed = mr.discussions.list(get_all=True)
    assert [d.id for d in listed] == [thread.id]
    body = listed[0].attributes
    assert not DOC_DISCUSSION_KEYS - set(body) and body["individual_note"] is False
    first, second = body["notes"]
    assert not DOC_THREAD_NOTE_KEYS - set(first)
    assert not DOC_POSITION_KEYS - set(first["position"]) and first["position"]["new_line"] == 2
    assert (first["type"], second["type"], second["id"]) == ("DiffNote", "DiffNote", reply.id)
    reporter_mr = (
        world.client(world.demo.reporter.token).projects.get(1, lazy=True).mergerequests.get(1, lazy=True)
    )
    with pytest.raises(gitlab.exceptions.GitlabUpdateError) as err:
        reporter_mr.discussions.update(thread.id, {"resolved": True})
    assert err.value.response_code == 403
    mr.discussions.update(thread.id, {"resolved": True})
    notes = mr.discussions.get(thread.id).attributes["notes"]
    assert all(n["resolved"] for n in notes) and notes[0]["resolved_by"]["username"] == "developer"


def test_replying_to_a_plain_comment_turns_it_into_a_thread(world: World) -> None:
    mr = open_mr(world)
    with world.raw(world.demo.maintainer.token) as raw:
        comment = raw.post("/api/v4/projects/1/merge_requests/1/notes", json={"body": "hi"}).json()
    (discussion,) = mr.discussions.list(get_all=True)
    assert discussion.individual_note is True and discussion.attributes["notes"][0]["id"] == comment["id"]
    discussion.notes.create({"body": "hello back"})
    again = mr.discussions.get(discussion.id)
    assert again.individual_note is False and {n["type"] for n in again.attributes["notes"]} == {
        "DiscussionNote"
    }


def test_award_emoji_on_notes_and_merge_requests_and_a_repeat_is_404(world: World) -> None:
    mr = open_mr(world)
    note = mr.notes.create({"body": "/approve"})
    eyes = mr.notes.get(note.id, lazy=True).awardemojis.create({"name": "eyes"})
    rocket = mr.awardemojis.create({"name": "rocket"})
    assert not DOC_AWARD_KEYS - set(eyes.attributes)
    assert (eyes.awardable_type, eyes.awardable_id, rocket.awardable_type) == (
        "Note",
        note.id,
        "MergeRequest",
    )
    assert [a.name for a in mr.notes.get(note.id, lazy=True).awardemojis.list(get_all=True)] == ["eyes"]
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as err:
        mr.notes.get(note.id, lazy=True).awardemojis.create({"name": "eyes"})
    assert err.value.response_code == 404


def test_pagination_headers_and_python_gitlab_follows_the_link_header(world: World) -> None:
    mr = open_mr(world)
    for i in range(25):
        world.state.add_note(
            world.demo.project, world.state.merge_request(world.demo.project, 1), world.demo.bot, f"n{i}"
        )
    with world.raw(world.demo.bot.token) as raw:
        page = raw.get("/api/v4/projects/1/merge_requests/1/notes", params={"per_page": 10, "page": 2})
    headers = page.headers
    assert (headers["X-Page"], headers["X-Next-Page"], headers["X-Prev-Page"], headers["X-Total"]) == (
        "2",
        "3",
        "1",
        "25",
    )
    assert headers["X-Total-Pages"] == "3" and 'rel="next"' in headers["Link"] and len(page.json()) == 10
    everything = mr.notes.list(get_all=True, per_page=10, sort="asc")
    assert [n.body for n in everything] == [f"n{i}" for i in range(25)]


def test_branch_head_is_read_from_the_bare_repository(world: World) -> None:
    project = world.client(world.demo.reporter.token).projects.get(1, lazy=True)
    branch = project.branches.get(FEATURE)
    assert branch.commit["id"] == repo.branch_head(world.demo.project.repo_path, FEATURE)
    assert branch.commit["title"] == "Add mul" and branch.name == FEATURE
    with pytest.raises(gitlab.exceptions.GitlabGetError) as err:
        project.branches.get("no-such-branch")
    assert err.value.response_code == 404
    with pytest.raises(gitlab.exceptions.GitlabGetError) as err:
        world.client(world.demo.guest.token).projects.get(1, lazy=True).branches.get("main")
    assert err.value.response_code == 403


def test_unknown_routes_answer_like_gitlab(world: World) -> None:
    with world.raw(world.demo.bot.token) as raw:
        answer = raw.get("/api/v4/nothing/here")
    assert (answer.status_code, answer.json()) == (404, {"error": "404 Not Found"})


# -- webhooks ---------------------------------------------------------------------------------------------


def add_hook(world: World, url: str, **events: bool) -> Any:
    project = world.client(world.demo.maintainer.token).projects.get(1, lazy=True)
    return project.hooks.create({"url": url, "token": HOOK_TOKEN, **events})


def test_hooks_are_registered_by_maintainers_and_never_show_the_token(world: World) -> None:
    hook = add_hook(world, "http://127.0.0.1:9/hook", note_events=True)
    assert hook.note_events is True and "token" not in hook.attributes
    listed = world.client(world.demo.maintainer.token).projects.get(1, lazy=True).hooks.list(get_all=True)
    assert [h.url for h in listed] == ["http://127.0.0.1:9/hook"]
    developer_project = world.client(world.demo.developer.token).projects.get(1, lazy=True)
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as err:
        developer_project.hooks.create({"url": "http://127.0.0.1:9/x"})
    assert err.value.response_code == 403


def test_a_note_created_through_the_api_sends_a_note_hook_like_gitlab(
    world: World, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    add_hook(world, url, note_events=True)
    mr = open_mr(world)
    note = mr.notes.create({"body": "/approve"})
    world.state.wait_for(lambda: len(rec.received) == 1)
    headers, body = rec.received[0]
    assert headers["x-gitlab-event"] == "Note Hook" and headers["x-gitlab-token"] == HOOK_TOKEN
    assert headers["user-agent"].startswith("GitLab/17.") and headers["content-type"] == "application/json"
    assert headers["x-gitlab-instance"] == world.url and headers["idempotency-key"]
    assert headers["x-gitlab-event-uuid"] and headers["x-gitlab-webhook-uuid"]
    fixture = json.loads((FIXTURES / "note_mr_comment.json").read_text())
    assert missing_keys(fixture, body) == []
    attrs = body["object_attributes"]
    assert (attrs["id"], attrs["note"], attrs["action"], attrs["type"], attrs["noteable_type"]) == (
        note.id, "/approve", "create", None, "MergeRequest"
    )  # fmt: skip
    assert (
        attrs["url"].endswith(f"/-/merge_requests/{mr.iid}#note_{note.id}")
        and len(attrs["discussion_id"]) == 40
    )
    assert (body["merge_request"]["iid"], body["merge_request"]["source_branch"]) == (mr.iid, FEATURE)
    assert body["user"]["username"] == "developer" and body["project_id"] == 1
    note.body = "/approve please"
    note.save()
    world.state.wait_for(lambda: len(rec.received) == 2)
    edited_headers, edited = rec.received[1]
    assert (edited["object_attributes"]["action"], edited["object_attributes"]["id"]) == ("update", note.id)
    assert edited_headers["idempotency-key"] != headers["idempotency-key"]


def test_sandbox_note_as_a_human_replies_in_a_thread_and_fires_the_hook(
    world: World, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    mr = open_mr(world)
    thread = mr.discussions.create({"body": "Proposal: ship it"})
    add_hook(world, url, note_events=True)
    payload = {"user": "maintainer", "project": "demo/calculator", "merge_request_iid": 1}
    with httpx.Client(base_url=world.url, timeout=5) as raw:
        answer = raw.post("/_sandbox/notes", json=payload | {"discussion_id": thread.id, "body": "/approve"})
    assert answer.status_code == 201 and answer.json()["author"]["username"] == "maintainer"
    world.state.wait_for(lambda: rec.received)
    attrs = rec.received[0][1]["object_attributes"]
    assert (attrs["discussion_id"], attrs["type"], attrs["note"]) == (thread.id, "DiscussionNote", "/approve")
    assert rec.received[0][1]["user"]["username"] == "maintainer"


def test_a_failed_delivery_is_retried_with_the_same_idempotency_key(world: World) -> None:
    rec = Receiver(fail_first=2)
    with ServerThread(rec.app()) as server:
        add_hook(world, f"{server.base_url}/hook", note_events=True)
        open_mr(world).notes.create({"body": "hello"})
        (delivery,) = world.state.wait_for(lambda: [d for d in world.state.deliveries if d.succeeded])
    assert [a.status for a in delivery.attempts] == [500, 500, 200]
    keys = {h["idempotency-key"] for h, _ in rec.received}
    assert keys == {delivery.idempotency_key} and len(rec.received) == 3
    with httpx.Client(base_url=world.url, timeout=5) as raw:
        recorded = raw.get("/_sandbox/deliveries", params={"event": "Note Hook"}).json()
    assert [a["status"] for a in recorded[0]["attempts"]] == [500, 500, 200]


def test_merge_request_hooks_on_open_and_on_push_with_oldrev(
    world: World, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    add_hook(world, url, merge_requests_events=True)
    open_mr(world)
    old = repo.branch_head(world.demo.project.repo_path, FEATURE)
    new = repo.commit_files(world.demo.project.repo_path, FEATURE, {"mul.py": "mul = None\n"}, "Rework")
    with httpx.Client(base_url=world.url, timeout=5) as raw:
        moved = raw.post("/_sandbox/push", json={"project": "demo/calculator", "branch": FEATURE}).json()
    assert moved == {"updated": [1]}
    world.state.wait_for(lambda: len(rec.received) == 2)
    opened, updated = (body for _, body in rec.received)
    fixture = json.loads((FIXTURES / "merge_request_open.json").read_text())
    assert missing_keys(fixture, opened, skip=frozenset({"changes"})) == []
    assert rec.received[0][0]["x-gitlab-event"] == "Merge Request Hook"
    assert opened["object_attributes"]["action"] == "open" and "oldrev" not in opened["object_attributes"]
    assert (updated["object_attributes"]["action"], updated["object_attributes"]["oldrev"]) == ("update", old)
    assert updated["object_attributes"]["last_commit"]["id"] == new


def test_a_git_push_over_http_sends_merge_request_hooks_with_oldrev(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    state = GitLabState()
    demo = seed_demo(state, tmp_path / "world")
    old = repo.commit_files(
        demo.project.repo_path, FEATURE, {"mul.py": "mul = 1\n"}, "Add mul", start_from="main"
    )
    with GitLabServer(state, git_root=demo.repos_root, git_token=demo.bot.token) as server:
        world = World(state, demo, server.base_url)
        open_mr(world)
        add_hook(world, url, merge_requests_events=True)
        remote = f"{server.base_url}/demo/calculator.git"
        env = {
            **GIT_ENV,
            **askpass_env(install_script(tmp_path / "bin"), remote, demo.bot.token, "baton-bot"),
        }
        clone = tmp_path / "clone"
        run_git(env, "clone", "--quiet", "--branch", FEATURE, "--", remote, str(clone))
        (clone / "mul.py").write_text("def mul(a, b):\n    return a * b\n")
        run_git(env, "-C", str(clone), "commit", "--quiet", "-am", "Implement mul")
        run_git(env, "-C", str(clone), "push", "--quiet", "origin", FEATURE)
        new = repo.branch_head(demo.project.repo_path, FEATURE)
        (delivery,) = state.wait_for(lambda: [d for d in state.deliveries if d.succeeded])
    attrs = delivery.payload["object_attributes"]
    assert new != old and (attrs["action"], attrs["oldrev"], attrs["last_commit"]["id"]) == (
        "update",
        old,
        new,
    )
    assert (
        delivery.payload["user"]["username"] == "baton-bot"
        and rec.received[0][0]["x-gitlab-token"] == HOOK_TOKEN
    )


# -- faults -----------------------------------------------------------------------------------------------


def test_fault_knobs_5xx_burst_429_latency_and_hang(world: World) -> None:
    faults = world.state.faults
    with world.raw(world.demo.bot.token) as raw:
        faults.fail_next(2, status=503)
        statuses = [raw.get("/api/v4/user").status_code for _ in range(3)]
        faults.rate_limit_next(1, retry_after=7)
        faults.rate_limit_next(1)
        limited = [raw.get("/api/v4/user") for _ in range(2)]
        faults.latency_s = 0.2
        started = time.monotonic()
        raw.get("/api/v4/user")
        slow = time.monotonic() - started
        faults.latency_s = 0.0
        faults.hang()
        with pytest.raises(httpx.ReadTimeout):
            raw.get("/api/v4/user", timeout=0.3)
        faults.release()
        assert raw.get("/api/v4/user").status_code == 200
    assert statuses == [503, 503, 200]
    assert [r.status_code for r in limited] == [429, 429]
    assert limited[0].headers["Retry-After"] == "7" and "Retry-After" not in limited[1].headers
    assert slow >= 0.2


def test_faults_can_be_limited_to_a_method_and_set_over_http(world: World) -> None:
    with httpx.Client(base_url=world.url, timeout=5) as raw:
        raw.post("/_sandbox/faults", json={"fail_next": 1, "status": 500, "methods": ["POST"]})
    project = world.client(world.demo.developer.token).projects.get(1)
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as err:
        project.mergerequests.create({"source_branch": FEATURE, "target_branch": "main", "title": "x"})
    assert err.value.response_code == 500 and world.state.merge_requests == {}
    assert (
        project.mergerequests.create({"source_branch": FEATURE, "target_branch": "main", "title": "x"}).iid
        == 1
    )


@pytest.mark.parametrize("mode", ["502", "drop"])
def test_a_lost_response_still_commits_the_write(world: World, mode: LoseMode) -> None:
    mr = open_mr(world)
    world.state.faults.lose_next(1, mode=mode, methods=["POST"])
    with pytest.raises((gitlab.exceptions.GitlabCreateError, gitlab.exceptions.GitlabParsingError, OSError)):
        mr.notes.create({"body": "did this land?"})
    assert [n.body for n in world.state.notes.values()] == ["did this land?"]


# -- the seeded demo --------------------------------------------------------------------------------------


def test_seed_demo_creates_people_by_role_and_a_calculator_whose_tests_pass(
    world: World, tmp_path: Path
) -> None:
    demo = world.demo
    roles = {u.username: world.state.access_level(demo.project, u) for u in world.state.users.values()}
    assert roles == {"baton-bot": 30, "maintainer": 40, "developer": 30, "reporter": 20, "guest": 10}
    assert demo.bot.bot and world.state.hooks == {}
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "--", str(demo.project.repo_path), str(clone)], check=True, timeout=30
    )
    assert sorted(p.name for p in clone.iterdir() if p.name != ".git") == [
        "README.md", "calculator.py", "pyproject.toml", "tests"
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
