"""Contract tests: the real `jira` client against the simulated Jira; its webhooks to a live receiver.

Field names follow Atlassian's documentation; the sources, quoted:
- Cloud REST v2 "Get current user" / "Get user" (developer.atlassian.com/cloud/jira/platform/rest/v2/
  api-group-myself, api-group-users): a user is `{"self", "accountId", "accountType": "atlassian",
  "displayName", "active", "timeZone", "avatarUrls"}`; `expand=groups` adds `"groups": {"size", "items"}`.
  Data Center users carry `name` and `key` instead of `accountId`
  (tests/fixtures/jira/issue_updated_commented_dc.json).
- "Get comments" returns `PageOfComments`: "startAt: The index of the first item returned. maxResults: The
  maximum number of items that could be returned. total: The number of items returned. comments: The list
  of comments." (Jira Cloud OpenAPI, model PageOfComments). A comment is `{self, id, author, body,
  updateAuthor, created, updated, jsdPublic}` (tests/fixtures/jira/comment_created_cloud.json).
- "Get transitions" returns `{"expand", "transitions": [IssueTransition]}`, where IssueTransition has
  "id: The ID of the issue transition", "name", "to: Details of the issue status after the transition",
  "hasScreen", "isGlobal", "isInitial", "isAvailable", "isConditional", "looped" (OpenAPI IssueTransition).
- Issue links: `{"id", "self", "type": {"id", "name", "inward", "outward", "self"}, "outwardIssue" |
  "inwardIssue": {"id", "key", "self", "fields": {"summary", "status", "priority", "issuetype"}}}`
  (Cloud REST v2 "Get issue link").
- Webhooks: PROTOCOLS.md §B1/§B2 and the recorded payloads in tests/fixtures/jira/.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from jira import JIRA, JIRAError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.sandbox.jira_sim import (
    APPROVERS_GROUP,
    DEMO_BOT_TOKEN,
    DemoWorld,
    JiraState,
    ServerThread,
    WebhookPolicy,
    create_jira_app,
    seed_demo,
    signature,
)
from bot.sandbox.jira_sim.adf import AdfError, adf_to_wiki, wiki_to_adf
from bot.sandbox.jira_sim.jql import JqlError, parse
from bot.sandbox.jira_sim.webhooks import should_retry

FIXTURES = Path(__file__).parent.parent / "fixtures" / "jira"
BOT_LOGIN = "baton-bot@example.com"
SECRET = "webhook-secret-for-tests"
WAIT_S = 5.0
FAST_POLICY = WebhookPolicy(
    max_attempts=3, retry_delays_s=(0.05, 0.05), connect_timeout_s=1.0, read_timeout_s=2.0
)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


@dataclass
class Sim:
    state: JiraState
    world: DemoWorld
    url: str

    def client(self, login: str = BOT_LOGIN, token: str = DEMO_BOT_TOKEN, timeout: float = 5.0) -> JIRA:
        return JIRA(self.url, basic_auth=(login, token), max_retries=0, timeout=timeout)

    def act(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}/_sandbox/{path}", json=payload, timeout=5)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A webhook receiver on a free port: records each request; answers the scripted statuses, then 200."""

    url: str = ""
    got: queue.Queue[Received] = field(default_factory=queue.Queue)
    statuses: list[int] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.got.put(Received({k.lower(): v for k, v in request.headers.items()}, await request.body()))
            return Response(status_code=self.statuses.pop(0) if self.statuses else 200)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def next(self) -> Received:
        return self.got.get(timeout=WAIT_S)

    def by_event(self, count: int) -> dict[str, Received]:
        items = [self.next() for _ in range(count)]
        return {r.json()["webhookEvent"]: r for r in items}


def make_sim(deployment: str = "Cloud") -> tuple[JiraState, DemoWorld]:
    state = JiraState(deployment="Cloud" if deployment == "Cloud" else "Server", webhook_policy=FAST_POLICY)
    return state, seed_demo(state)


@pytest.fixture
def sim() -> Iterator[Sim]:
    state, world = make_sim()
    with ServerThread(create_jira_app(state)) as served:
        url = served.url
        yield Sim(state, world, url)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with ServerThread(rec.app()) as served:
        url = served.url
        rec.url = f"{url}/hook"
        yield rec


def register(
    sim: Sim, url: str, events: list[str], secret: str | None = SECRET, jql: str = ""
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "baton",
        "url": url,
        "events": events,
        "filters": {"issue-related-events-section": jql},
    }
    if secret:
        body["secret"] = secret
    response = requests.post(
        f"{sim.url}/rest/webhooks/1.0/webhook", json=body, auth=(BOT_LOGIN, DEMO_BOT_TOKEN), timeout=5
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


# --- instance, auth, users ----------------------------------------------------------------------------------


def test_server_info_and_myself_have_cloud_fields(sim: Sim) -> None:
    jira = sim.client()
    assert jira.deploymentType == "Cloud"
    me = jira.myself()
    assert {"self", "accountId", "accountType", "displayName", "active", "timeZone", "avatarUrls"} <= set(me)
    assert me["accountId"] == sim.world.bot.account_id
    assert me["displayName"] == "Baton Bot"
    assert "name" not in me


def test_bad_or_missing_credentials_get_401(sim: Sim) -> None:
    with pytest.raises(JIRAError) as wrong:
        sim.client(token="not-the-token").myself()
    assert wrong.value.status_code == 401
    anonymous = requests.get(f"{sim.url}/rest/api/2/myself", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json()["errorMessages"] == ["Client must be authenticated to access this resource."]
    assert requests.get(f"{sim.url}/rest/api/2/serverInfo", timeout=5).status_code == 200


def test_bearer_pat_authenticates_like_data_center() -> None:
    state, _ = make_sim("Server")
    state.add_user("Robot", name="robot", pat="pat-123", groups=["bots"])
    with ServerThread(create_jira_app(state)) as served:
        url = served.url
        jira = JIRA(url, token_auth="pat-123", max_retries=0, timeout=5)
        me = jira.myself()
        assert jira.deploymentType == "Server"
        assert (me["name"], me["key"]) == ("robot", "robot")
        assert "accountId" not in me
        user = jira.user("alice", expand="groups")  # Server: ?username=
        assert [g["name"] for g in user.raw["groups"]["items"]] == [APPROVERS_GROUP]
        with pytest.raises(JIRAError) as wrong:
            JIRA(url, token_auth="pat-999", max_retries=0, timeout=5).myself()
        assert wrong.value.status_code == 401


def test_user_groups_and_group_members(sim: Sim) -> None:
    jira, approver = sim.client(), sim.world.approver
    user = jira.user(approver.account_id, expand="groups")
    assert user.raw["accountId"] == approver.account_id
    assert user.raw["groups"] == {"size": 1, "items": [user.raw["groups"]["items"][0]]}
    assert user.raw["groups"]["items"][0]["name"] == APPROVERS_GROUP
    assert list(jira.group_members(APPROVERS_GROUP)) == [approver.account_id]
    page = jira._get_json("group/member", params={"groupname": APPROVERS_GROUP})
    assert {"self", "maxResults", "startAt", "total", "isLast", "values"} <= set(page)
    assert [u["displayName"] for u in page["values"]] == ["Alice Approver"]
    groups = jira._get_json("user/groups", params={"accountId": sim.world.developer.account_id})
    assert [g["name"] for g in groups] == ["developers"]
    with pytest.raises(JIRAError) as missing:
        jira.user("no-such-account")
    assert missing.value.status_code == 404


# --- issues, comments, transitions, labels, search ----------------------------------------------------------


def test_issue_has_documented_fields(sim: Sim) -> None:
    issue = sim.client().issue("DEMO-1")
    fields = issue.raw["fields"]
    assert issue.key == "DEMO-1"
    assert fields["summary"] == "Add a multiply function to the calculator"
    assert "Acceptance criteria" in fields["description"]
    assert fields["labels"] == []
    assert fields["status"]["name"] == "To Do"
    assert set(fields["status"]["statusCategory"]) == {"self", "id", "key", "colorName", "name"}
    assert fields["project"]["key"] == "DEMO"
    assert fields["issuetype"]["name"] == "Story"
    assert set(fields["comment"]) == {"comments", "maxResults", "total", "startAt"}
    [link] = fields["issuelinks"]
    assert set(link) == {"id", "self", "type", "inwardIssue"}
    assert set(link["type"]) == {"id", "name", "inward", "outward", "self"}
    assert link["inwardIssue"]["key"] == "DEMO-2"
    assert set(link["inwardIssue"]["fields"]) == {"summary", "status", "priority", "issuetype"}
    assert set(sim.client().issue("DEMO-1", fields="summary,labels").raw["fields"]) == {"summary", "labels"}


def test_comments_post_list_edit(sim: Sim) -> None:
    jira = sim.client()
    first = jira.add_comment("DEMO-1", "first *bold*")
    second = jira.add_comment("DEMO-1", "second")
    assert set(first.raw) == set(fixture("comment_created_cloud.json")["comment"])
    assert first.raw["author"]["accountId"] == sim.world.bot.account_id
    assert first.raw["self"].endswith(f"/rest/api/2/issue/{sim.world.precise.id}/comment/{first.id}")
    page = jira._get_json("issue/DEMO-1/comment", params={"orderBy": "-created", "maxResults": 1})
    assert (page["startAt"], page["maxResults"], page["total"]) == (0, 1, 2)
    assert [c["id"] for c in page["comments"]] == [second.id]
    comment = jira.comment("DEMO-1", first.id)
    comment.update(body="first, edited")
    assert comment.body == "first, edited"
    assert [c.body for c in jira.comments("DEMO-1")] == ["first, edited", "second"]


def test_only_the_author_may_edit_a_comment(sim: Sim) -> None:
    posted = sim.act("comments", {"user": "alice", "issue": "DEMO-1", "body": "mine"}).json()
    comment = sim.client().comment("DEMO-1", posted["id"])
    with pytest.raises(JIRAError) as refused:
        comment.update(body="hijacked")
    assert refused.value.status_code == 403


def test_v3_comment_takes_adf_and_v2_shows_wiki_markup(sim: Sim) -> None:
    doc = {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "Looks good"},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "ship it"},
                ],
            },
            {"type": "paragraph", "content": [{"type": "text", "text": "/approve"}]},
        ],
    }
    auth = (BOT_LOGIN, DEMO_BOT_TOKEN)
    posted = requests.post(
        f"{sim.url}/rest/api/3/issue/DEMO-1/comment", json={"body": doc}, auth=auth, timeout=5
    )
    assert posted.status_code == 201
    assert posted.json()["body"]["type"] == "doc"
    assert [c.body for c in sim.client().comments("DEMO-1")] == ["Looks good\nship it\n\n/approve"]
    wiki = requests.post(
        f"{sim.url}/rest/api/3/issue/DEMO-1/comment", json={"body": "text"}, auth=auth, timeout=5
    )
    assert wiki.status_code == 400


def test_transitions_are_listed_and_recorded(sim: Sim) -> None:
    jira = sim.client()
    listed = jira.transitions("DEMO-1")
    assert [t["name"] for t in listed] == ["In Progress", "In Review", "Done"]
    assert {
        "id",
        "name",
        "to",
        "hasScreen",
        "isGlobal",
        "isInitial",
        "isAvailable",
        "isConditional",
        "looped",
    } <= set(listed[0])
    jira.transition_issue("DEMO-1", "31")
    assert jira.issue("DEMO-1").fields.status.name == "Done"
    assert sim.state.transition_log == [("DEMO-1", "31", sim.world.bot.account_id)]
    with pytest.raises(JIRAError) as invalid:
        jira.transition_issue("DEMO-1", "31")  # already Done: no longer offered
    assert invalid.value.status_code == 400


def test_labels_are_added_and_removed_with_update_operations(sim: Sim) -> None:
    jira = sim.client()
    issue = jira.issue("DEMO-1")
    issue.add_field_value("labels", "ai-implement")
    assert issue.fields.labels == ["ai-implement"]
    issue.update(update={"labels": [{"add": "backend"}, {"remove": "ai-implement"}]})
    assert jira.issue("DEMO-1").fields.labels == ["backend"]
    with pytest.raises(JIRAError) as spaced:
        issue.update(update={"labels": [{"add": "two words"}]})
    assert spaced.value.status_code == 400


def test_search_supports_a_small_jql_subset(sim: Sim) -> None:
    sim.act("labels", {"user": "dan", "issue": "DEMO-2", "add": "ai-implement"})
    jira = sim.client()
    assert [i.key for i in jira.search_issues("project = DEMO ORDER BY key")] == ["DEMO-1", "DEMO-2"]
    assert [i.key for i in jira.search_issues('project = DEMO AND labels in ("ai-implement")')] == ["DEMO-2"]
    assert [i.key for i in jira.search_issues('status = "To Do" AND key != DEMO-1')] == ["DEMO-2"]
    with pytest.raises(JIRAError) as unsupported:
        jira.search_issues("summary ~ multiply")
    assert unsupported.value.status_code == 400


def test_seed_demo_world() -> None:
    state, world = make_sim()
    assert world.bot.display_name == "Baton Bot"
    assert APPROVERS_GROUP in world.approver.groups and APPROVERS_GROUP not in world.developer.groups
    assert world.precise.summary == "Add a multiply function to the calculator"
    assert "h3. Acceptance criteria" in (world.precise.description or "")
    assert (world.vague.key, world.vague.summary) == ("DEMO-2", "Make it better")
    assert state.issues.keys() == {"DEMO-1", "DEMO-2"}


# --- webhooks -----------------------------------------------------------------------------------------------


def test_label_change_sends_signed_issue_updated(sim: Sim, receiver: Receiver) -> None:
    register(sim, receiver.url, ["jira:issue_updated"])
    sim.act("labels", {"user": "dan", "issue": "DEMO-1", "add": "ai-implement"})
    got = receiver.next()
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-atlassian-webhook-identifier"]
    assert "x-atlassian-webhook-retry" not in got.headers
    expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(got.headers["x-hub-signature"], expected)
    body, recorded = got.json(), fixture("issue_updated_labels.json")
    assert set(recorded) <= set(body)
    assert (body["webhookEvent"], body["issue_event_type_name"]) == ("jira:issue_updated", "issue_updated")
    assert body["user"]["accountId"] == sim.world.developer.account_id
    [item] = body["changelog"]["items"]
    assert set(item) == set(recorded["changelog"]["items"][0])
    assert item == {
        "field": "labels",
        "fieldtype": "jira",
        "fieldId": "labels",
        "from": None,
        "fromString": "",
        "to": None,
        "toString": "ai-implement",
    }
    assert body["issue"]["key"] == "DEMO-1"
    assert body["issue"]["fields"]["labels"] == ["ai-implement"]
    assert {"summary", "description", "labels", "status", "project"} <= set(body["issue"]["fields"])


def test_comment_sends_trimmed_comment_created_and_issue_commented(sim: Sim, receiver: Receiver) -> None:
    register(sim, receiver.url, ["comment_created", "jira:issue_updated"], secret=None)
    sim.act("comments", {"user": "alice", "issue": "DEMO-1", "body": "/approve"})
    events = receiver.by_event(2)
    created, recorded = events["comment_created"], fixture("comment_created_cloud.json")
    body = created.json()
    assert "x-hub-signature" not in created.headers
    assert set(body) == set(recorded)
    assert set(body["comment"]) == set(recorded["comment"])
    assert body["comment"]["body"] == "/approve"
    assert body["comment"]["author"]["accountId"] == sim.world.approver.account_id
    assert set(body["issue"]["fields"]) == set(recorded["issue"]["fields"])
    assert "labels" not in body["issue"]["fields"] and "description" not in body["issue"]["fields"]
    commented = events["jira:issue_updated"].json()
    assert commented["issue_event_type_name"] == "issue_commented"
    assert commented["comment"]["id"] == body["comment"]["id"]
    assert (
        created.headers["x-atlassian-webhook-identifier"]
        != events["jira:issue_updated"].headers["x-atlassian-webhook-identifier"]
    )


def test_retries_keep_the_identifier_and_count(sim: Sim, receiver: Receiver) -> None:
    register(sim, receiver.url, ["comment_created"])
    receiver.statuses = [503, 429]
    sim.act("comments", {"user": "dan", "issue": "DEMO-1", "body": "hello"})
    first, second, third = receiver.next(), receiver.next(), receiver.next()
    ids = {r.headers["x-atlassian-webhook-identifier"] for r in (first, second, third)}
    assert len(ids) == 1
    assert [r.headers.get("x-atlassian-webhook-retry") for r in (first, second, third)] == [None, "1", "2"]
    assert first.body == third.body
    assert sim.state.wait_for(lambda: sim.state.deliveries[0].state == "delivered", WAIT_S)
    assert [a.status for a in sim.state.deliveries[0].attempts] == [503, 429, 200]


def test_other_4xx_is_not_retried_and_unreachable_gives_up(sim: Sim, receiver: Receiver) -> None:
    register(sim, receiver.url, ["comment_created"])
    register(sim, "http://127.0.0.1:9/closed", ["comment_created"])
    receiver.statuses = [400]
    sim.act("comments", {"user": "dan", "issue": "DEMO-1", "body": "hello"})
    receiver.next()
    assert sim.state.wait_for(lambda: all(d.state != "pending" for d in sim.state.deliveries), WAIT_S)
    refused, unreachable = sim.state.deliveries
    assert (refused.state, [a.status for a in refused.attempts]) == ("failed", [400])
    assert unreachable.state == "failed"
    assert [a.retry for a in unreachable.attempts] == [0, 1, 2]
    assert all(a.status is None and a.error for a in unreachable.attempts)
    assert receiver.got.empty()


def test_jql_filter_and_unchanged_labels_send_nothing(sim: Sim, receiver: Receiver) -> None:
    register(sim, receiver.url, ["jira:issue_updated", "comment_created"], jql="project = OTHER")
    sim.act("comments", {"user": "dan", "issue": "DEMO-1", "body": "hi"})
    assert (
        sim.act("labels", {"user": "dan", "issue": "DEMO-1", "remove": "absent"}).json()["changed"] is False
    )
    assert sim.state.deliveries == []


def test_sandbox_webhook_route_and_deliveries_listing(sim: Sim, receiver: Receiver) -> None:
    created = sim.act("webhooks", {"url": receiver.url, "secret": SECRET})
    assert created.status_code == 201
    sim.act("labels", {"user": "alice", "issue": "DEMO-2", "add": ["ai-implement"]})
    got = receiver.next()
    assert got.headers["x-hub-signature"] == signature(SECRET, got.body)
    assert sim.state.wait_for(lambda: sim.state.deliveries[0].state == "delivered", WAIT_S)
    listed = httpx.get(f"{sim.url}/_sandbox/deliveries", timeout=5).json()
    assert [(d["event"], d["state"]) for d in listed] == [("jira:issue_updated", "delivered")]


def test_exclude_body_sends_an_empty_signed_post(sim: Sim, receiver: Receiver) -> None:
    auth = (BOT_LOGIN, DEMO_BOT_TOKEN)
    hook = {
        "name": "n",
        "url": receiver.url,
        "events": ["comment_created"],
        "excludeBody": True,
        "secret": SECRET,
    }
    created = requests.post(f"{sim.url}/rest/webhooks/1.0/webhook", json=hook, auth=auth, timeout=5)
    assert created.json()["excludeBody"] is True
    sim.act("comments", {"user": "dan", "issue": "DEMO-1", "body": "hi"})
    got = receiver.next()
    assert got.body == b""
    assert got.headers["x-hub-signature"] == signature(SECRET, b"")


def test_webhook_url_must_be_http(sim: Sim) -> None:
    refused = sim.act("webhooks", {"url": "file:///etc/passwd"})
    assert refused.status_code == 400
    assert sim.state.webhooks == {}


def test_registered_webhook_never_echoes_its_secret(sim: Sim) -> None:
    hook = register(sim, "http://127.0.0.1:9/x", ["comment_created"])
    assert SECRET not in json.dumps(hook)
    listed = requests.get(f"{sim.url}/rest/webhooks/1.0/webhook", auth=(BOT_LOGIN, DEMO_BOT_TOKEN), timeout=5)
    assert SECRET not in listed.text and listed.json()[0]["url"] == "http://127.0.0.1:9/x"


# --- faults -------------------------------------------------------------------------------------------------


def test_fault_5xx_burst_then_recovery(sim: Sim) -> None:
    jira = sim.client()
    sim.state.faults.configure(error_next=2, error_status=502)
    for _ in range(2):
        with pytest.raises(JIRAError) as failed:
            jira.myself()
        assert failed.value.status_code == 502
    assert jira.myself()["displayName"] == "Baton Bot"


@pytest.mark.parametrize("retry_after", [3.0, None])
def test_fault_429_with_and_without_retry_after(sim: Sim, retry_after: float | None) -> None:
    sim.act("faults", {"throttle_next": 1, "retry_after": retry_after})
    response = requests.get(f"{sim.url}/rest/api/2/myself", auth=(BOT_LOGIN, DEMO_BOT_TOKEN), timeout=5)
    assert response.status_code == 429
    assert response.headers.get("Retry-After") == (None if retry_after is None else "3")


def test_fault_lost_response_commits_the_write(sim: Sim) -> None:
    jira = sim.client()
    sim.state.faults.configure(lose_next=1)
    with pytest.raises(JIRAError) as lost:
        jira.add_comment("DEMO-1", "did it land?")
    assert lost.value.status_code == 502
    assert [c.body for c in sim.state.issues["DEMO-1"].comments] == ["did it land?"]


def test_fault_hang_times_out_the_client_and_latency_slows_it(sim: Sim) -> None:
    jira = sim.client(timeout=0.3)
    sim.state.faults.configure(hang_next=1, hang_s=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        jira.myself()
    sim.state.faults.configure(latency_s=0.2)
    started = time.monotonic()
    assert jira.myself()["displayName"] == "Baton Bot"
    assert time.monotonic() - started >= 0.2


def test_fault_knobs_reject_unknown_names(sim: Sim) -> None:
    assert sim.act("faults", {"explode": 1}).status_code == 400


# --- pure helpers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (None, True),
        (408, True),
        (409, True),
        (425, True),
        (429, True),
        (500, True),
        (503, True),
        (400, False),
        (401, False),
        (404, False),
        (200, False),
    ],
)
def test_retry_policy_matches_jira_cloud(status: int | None, retried: bool) -> None:
    assert should_retry(status) is retried


def test_signature_is_lowercase_hex_hmac_sha256() -> None:
    body = b'{"a": 1}'
    digest = signature("s3cret", body).removeprefix("sha256=")
    assert digest == hmac.new(b"s3cret", body, hashlib.sha256).hexdigest() == digest.lower()


@pytest.mark.parametrize(
    "query", ["summary ~ x", "project = A OR project = B", "labels >= 3", "cf[10010] = 1"]
)
def test_jql_outside_the_subset_is_refused(query: str) -> None:
    with pytest.raises(JqlError):
        parse(query)


def test_adf_round_trip_and_refusal() -> None:
    assert adf_to_wiki(wiki_to_adf("one\ntwo\n\nthree")) == "one\ntwo\n\nthree"
    with pytest.raises(AdfError):
        adf_to_wiki("plain text")


def test_basic_auth_header_must_be_well_formed(sim: Sim) -> None:
    garbage = {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}
    assert requests.get(f"{sim.url}/rest/api/2/myself", headers=garbage, timeout=5).status_code == 401
    bad_b64 = {"Authorization": "Basic !!!"}
    assert requests.get(f"{sim.url}/rest/api/2/myself", headers=bad_b64, timeout=5).status_code == 401
