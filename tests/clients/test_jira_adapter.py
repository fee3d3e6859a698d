"""Contract tests: Baton's JiraClient (on the real `jira` client) against the simulated Jira, with faults."""

from __future__ import annotations

import base64
import json
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
from jira import JIRAError

from bot.clients.jira import (
    JiraClient,
    JiraConfig,
    JiraError,
    JiraLink,
    JiraTransition,
    JiraUnavailable,
    JiraUser,
    client_from_settings,
    find_jira_marker,
    is_jira_bot_text,
    jira_marker,
    parse_issue,
    pick_transition,
    translate,
    with_jira_marker,
)
from bot.clients.retry import RetryableError, RetryPolicy
from bot.effects import EffectKeyError, EffectRecord, marker
from bot.redact import Redactor
from bot.sandbox.jira_sim import (
    DEMO_BOT_TOKEN,
    DemoWorld,
    JiraState,
    ServerThread,
    create_jira_app,
    seed_demo,
)
from config.settings import load_settings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "jira"
BOT_LOGIN = "baton-bot@example.com"


class MemoryLedger:
    """The EffectLedger contract in memory: `begin` returns the existing record if there is one."""

    def __init__(self) -> None:
        self.records: dict[str, EffectRecord] = {}

    async def get(self, key: str) -> EffectRecord | None:
        return self.records.get(key)

    async def begin(self, key: str, kind: str, run_id: str | None) -> EffectRecord:
        return self.records.setdefault(key, EffectRecord(key, kind, "pending", None))

    async def complete(self, key: str, external_id: str) -> None:
        self.records[key] = replace(self.records[key], status="done", external_id=external_id)


@dataclass
class Sleeps:
    """Records the pauses the client asks for instead of sleeping."""

    calls: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@dataclass
class Env:
    state: JiraState
    world: DemoWorld
    url: str
    ledger: MemoryLedger
    sleeps: Sleeps
    jira: JiraClient

    def comments(self, key: str = "DEMO-1") -> list[str]:
        return [c.body for c in self.state.issues[key].comments]


def config(url: str, **overrides: object) -> JiraConfig:
    reads = RetryPolicy(attempts=3, base_delay_s=0.5, jitter=0.0, max_retry_after_s=30.0)
    base = JiraConfig(
        url=url, token=DEMO_BOT_TOKEN, user=BOT_LOGIN, connect_timeout_s=1.0, read_timeout_s=2.0, reads=reads
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def served() -> Iterator[tuple[JiraState, DemoWorld, str]]:
    state = JiraState()
    world = seed_demo(state)
    with ServerThread(create_jira_app(state)) as served:
        url = served.url
        yield state, world, url


@pytest.fixture
async def env(served: tuple[JiraState, DemoWorld, str]) -> AsyncIterator[Env]:
    state, world, url = served
    ledger, sleeps = MemoryLedger(), Sleeps()
    client = JiraClient(config(url), ledger, sleep=sleeps)
    await client.bot_account()  # connect (serverInfo) before a test arms any fault
    yield Env(state, world, url, ledger, sleeps, client)
    await client.close()


# --- reads --------------------------------------------------------------------------------------------------


async def test_bot_account(env: Env) -> None:
    assert await env.jira.bot_account() == JiraUser(env.world.bot.account_id, "Baton Bot")


async def test_issue_is_typed(env: Env) -> None:
    env.state.add_comment("DEMO-1", env.world.approver, "Please keep it small.")
    issue = await env.jira.issue("DEMO-1")
    assert (issue.key, issue.id, issue.project_key, issue.status) == (
        "DEMO-1",
        env.world.precise.id,
        "DEMO",
        "To Do",
    )
    assert issue.summary == "Add a multiply function to the calculator"
    assert issue.description is not None and "Acceptance criteria" in issue.description
    assert issue.labels == ()
    assert issue.links == (JiraLink("DEMO-2", "relates to", "Make it better"),)
    [comment] = issue.comments
    assert (comment.body, comment.author) == (
        "Please keep it small.",
        JiraUser(env.world.approver.account_id, "Alice Approver"),
    )


async def test_recent_comments_are_capped(served: tuple[JiraState, DemoWorld, str]) -> None:
    state, world, url = served
    for n in range(5):
        state.add_comment("DEMO-1", world.developer, f"note {n}")
    client = JiraClient(config(url, recent_comments=2), MemoryLedger())
    assert [c.body for c in (await client.issue("DEMO-1")).comments] == ["note 3", "note 4"]
    await client.close()


def test_parse_issue_reads_the_recorded_webhook_issue() -> None:
    recorded = json.loads((FIXTURES / "issue_updated_labels.json").read_text())["issue"]
    issue = parse_issue(recorded)
    assert (issue.key, issue.id, issue.status, issue.project_key) == ("TES-41", "10040", "To Do", "TES")
    assert issue.labels == ("sad", "test-label")
    assert issue.comments == () and issue.links == ()


async def test_transitions_are_listed(env: Env) -> None:
    names = [(t.name, t.to_status) for t in await env.jira.transitions("DEMO-1")]
    assert names == [("In Progress", "In Progress"), ("In Review", "In Review"), ("Done", "Done")]
    assert env.state.transition_log == []


async def test_user_in_group(env: Env) -> None:
    assert await env.jira.user_in_group(env.world.approver.account_id, "baton-approvers") is True
    assert await env.jira.user_in_group(env.world.approver.account_id, "BATON-APPROVERS") is True
    assert await env.jira.user_in_group(env.world.developer.account_id, "baton-approvers") is False
    assert await env.jira.user_in_group("no-such-account", "baton-approvers") is False


# --- exactly-once comments ----------------------------------------------------------------------------------


async def test_add_comment_posts_once_with_marker(env: Env) -> None:
    first = await env.jira.add_comment("DEMO-1", "Proposal: *multiply*", "run:1:proposal:DEMO-1")
    again = await env.jira.add_comment("DEMO-1", "Proposal: *multiply*", "run:1:proposal:DEMO-1")
    assert first == again
    [body] = env.comments()
    assert body.startswith("Proposal: *multiply*\n\n{color:#ffffff}baton.effect=")
    assert find_jira_marker(body) == "run:1:proposal:DEMO-1"
    assert env.ledger.records["run:1:proposal:DEMO-1"] == EffectRecord(
        "run:1:proposal:DEMO-1", "jira_comment", "done", first
    )


async def test_lost_response_after_commit_yields_one_comment(env: Env) -> None:
    env.state.faults.configure(lose_next=1)
    with pytest.raises(JiraUnavailable):
        await env.jira.add_comment("DEMO-1", "Status: implementing", "run:2:status")
    assert env.ledger.records["run:2:status"].status == "pending"
    assert len(env.comments()) == 1  # Jira committed it; Baton never saw the answer
    adopted = await env.jira.add_comment("DEMO-1", "Status: implementing", "run:2:status")
    assert env.comments() == [with_jira_marker("Status: implementing", "run:2:status")]
    assert adopted == env.state.issues["DEMO-1"].comments[0].id
    assert env.ledger.records["run:2:status"].external_id == adopted


async def test_lost_response_by_timeout_yields_one_comment(served: tuple[JiraState, DemoWorld, str]) -> None:
    state, _, url = served
    client = JiraClient(config(url, read_timeout_s=0.3), MemoryLedger(), sleep=Sleeps())
    await client.bot_account()
    state.faults.configure(lose_next=1, lose_mode="hang", hang_s=1.0)
    with pytest.raises(JiraUnavailable):
        await client.add_comment("DEMO-1", "hello", "run:3:hello")
    await client.add_comment("DEMO-1", "hello", "run:3:hello")
    assert len(state.issues["DEMO-1"].comments) == 1
    await client.close()


async def test_5xx_burst_then_retry_with_same_key_yields_one_comment(env: Env) -> None:
    env.state.faults.configure(error_next=1)
    with pytest.raises(JiraUnavailable) as failed:
        await env.jira.add_comment("DEMO-1", "Proposal", "run:4:proposal")
    assert "503" in str(failed.value)
    assert env.comments() == []
    env.state.faults.configure(error_next=2)  # the marker search hits two more 503s, then succeeds
    comment_id = await env.jira.add_comment("DEMO-1", "Proposal", "run:4:proposal")
    assert env.sleeps.calls == [0.5, 1.0]
    assert [c.id for c in env.state.issues["DEMO-1"].comments] == [comment_id]


async def test_marker_copied_by_a_human_is_not_adopted(env: Env) -> None:
    env.ledger.records["run:5:reply"] = EffectRecord("run:5:reply", "jira_comment", "pending", None)
    env.state.add_comment("DEMO-1", env.world.developer, with_jira_marker("quoting the bot", "run:5:reply"))
    posted = await env.jira.add_comment("DEMO-1", "the real reply", "run:5:reply")
    assert posted == env.state.issues["DEMO-1"].comments[-1].id
    assert len(env.comments()) == 2


async def test_edit_comment_keeps_the_marker(env: Env) -> None:
    comment_id = await env.jira.add_comment("DEMO-1", "- [ ] assemble", "run:6:status")
    await env.jira.edit_comment("DEMO-1", comment_id, "- [x] assemble\n- [ ] implement")
    [body] = env.comments()
    assert body.startswith("- [x] assemble\n- [ ] implement")
    assert find_jira_marker(body) == "run:6:status"


async def test_bad_effect_key_is_refused_before_any_write(env: Env) -> None:
    with pytest.raises(EffectKeyError):
        await env.jira.add_comment("DEMO-1", "x", "bad key with spaces")
    assert env.comments() == [] and env.ledger.records == {}


# --- exactly-once transitions -------------------------------------------------------------------------------


async def test_transition_once_per_effect(env: Env) -> None:
    assert await env.jira.transition("DEMO-1", "In Progress", "run:7:start") == "In Progress"
    assert await env.jira.transition("DEMO-1", "In Progress", "run:7:start") == "In Progress"
    assert len(env.state.transition_log) == 1
    assert env.state.issues["DEMO-1"].status_id == "3"


async def test_transition_with_lost_response_is_adopted(env: Env) -> None:
    env.state.faults.configure(lose_next=1)
    with pytest.raises(JiraUnavailable):
        await env.jira.transition("DEMO-1", "done", "run:8:done")
    assert await env.jira.transition("DEMO-1", "done", "run:8:done") == "Done"
    assert [t[1] for t in env.state.transition_log] == ["31"]
    assert env.ledger.records["run:8:done"].status == "done"


async def test_unavailable_transition_is_a_permanent_error(env: Env) -> None:
    with pytest.raises(JiraError, match="not available"):
        await env.jira.transition("DEMO-1", "Shipped", "run:9:ship")
    assert env.state.transition_log == []


# --- labels -------------------------------------------------------------------------------------------------


async def test_add_label(env: Env) -> None:
    await env.jira.add_label("DEMO-2", "ai-implement")
    await env.jira.add_label("DEMO-2", "ai-implement")
    assert env.state.issues["DEMO-2"].labels == ["ai-implement"]
    with pytest.raises(JiraError):
        await env.jira.add_label("DEMO-2", "two words")


# --- retries and errors -------------------------------------------------------------------------------------


async def test_429_with_retry_after_then_success(env: Env) -> None:
    env.state.faults.configure(throttle_next=1, retry_after=2)
    assert (await env.jira.issue("DEMO-1")).key == "DEMO-1"
    assert env.sleeps.calls == [2.0]


async def test_429_without_retry_after_backs_off(env: Env) -> None:
    env.state.faults.configure(throttle_next=1, retry_after=None)
    assert (await env.jira.issue("DEMO-1")).key == "DEMO-1"
    assert env.sleeps.calls == [0.5]


async def test_429_retry_after_is_capped(env: Env) -> None:
    env.state.faults.configure(throttle_next=1, retry_after=120)
    assert (await env.jira.issue("DEMO-1")).key == "DEMO-1"
    assert env.sleeps.calls == [30.0]


async def test_429_on_every_attempt_reports_retry_after(env: Env) -> None:
    env.state.faults.configure(throttle_next=3, retry_after=7)
    with pytest.raises(JiraUnavailable) as throttled:
        await env.jira.issue("DEMO-1")
    assert throttled.value.retry_after == 7.0
    assert isinstance(throttled.value, RetryableError)
    assert env.sleeps.calls == [7.0, 7.0]


async def test_reads_give_up_after_bounded_attempts(env: Env) -> None:
    env.state.faults.configure(error_next=10)
    with pytest.raises(JiraUnavailable):
        await env.jira.transitions("DEMO-1")
    assert env.sleeps.calls == [0.5, 1.0]
    assert env.state.faults.error_next == 7


async def test_hung_read_times_out_and_is_retried(served: tuple[JiraState, DemoWorld, str]) -> None:
    state, _, url = served
    sleeps = Sleeps()
    client = JiraClient(config(url, read_timeout_s=0.3), MemoryLedger(), sleep=sleeps)
    await client.bot_account()
    state.faults.configure(hang_next=1, hang_s=1.0)
    assert (await client.issue("DEMO-2")).summary == "Make it better"
    assert sleeps.calls == [0.5]
    await client.close()


async def test_posts_are_not_retried(env: Env) -> None:
    env.state.faults.configure(error_next=1)
    with pytest.raises(JiraUnavailable):
        await env.jira.add_comment("DEMO-1", "x", "run:10:x")
    assert env.sleeps.calls == [] and env.state.faults.error_next == 0


async def test_wrong_token_is_permanent_and_never_echoed(served: tuple[JiraState, DemoWorld, str]) -> None:
    _, _, url = served
    token = "wrong-token-that-must-not-leak"
    client = JiraClient(config(url, token=token), MemoryLedger(), sleep=Sleeps())
    with pytest.raises(JiraError) as refused:
        await client.bot_account()
    assert refused.value.status == 401
    rendered = "".join(traceback.format_exception(refused.value))
    assert token not in rendered and token not in repr(client.config)
    await client.close()


async def test_missing_issue_is_permanent(env: Env) -> None:
    with pytest.raises(JiraError) as missing:
        await env.jira.issue("DEMO-99")
    assert missing.value.status == 404
    assert env.sleeps.calls == []


async def test_unreachable_jira_is_unavailable() -> None:
    sleeps = Sleeps()
    client = JiraClient(config("http://127.0.0.1:9", connect_timeout_s=0.5), MemoryLedger(), sleep=sleeps)
    with pytest.raises(JiraUnavailable):
        await client.bot_account()
    assert sleeps.calls == [0.5, 1.0]


async def test_data_center_pat_uses_names() -> None:
    state = JiraState(deployment="Server")
    world = seed_demo(state)
    state.users[world.bot.account_id].pat = "dc-pat"
    with ServerThread(create_jira_app(state)) as served:
        url = served.url
        client = JiraClient(config(url, user=None, token="dc-pat"), MemoryLedger())
        assert await client.bot_account() == JiraUser("baton-bot", "Baton Bot")
        assert await client.user_in_group("alice", "baton-approvers") is True
        comment_id = await client.add_comment("DEMO-1", "hi", "run:11:hi")
        assert await client.add_comment("DEMO-1", "hi", "run:11:hi") == comment_id
        await client.close()


def test_client_from_settings_needs_url_and_token() -> None:
    settings = load_settings(
        {
            "BATON_JIRA_URL": "http://jira.invalid",
            "BATON_JIRA_TOKEN": "t0k",
            "BATON_JIRA_USER": "bot@example.com",
        },
        check=False,
    )
    client = client_from_settings(settings, MemoryLedger())
    assert (client.config.url, client.config.user, client.config.token) == (
        "http://jira.invalid",
        "bot@example.com",
        "t0k",
    )
    with pytest.raises(JiraError, match="BATON_JIRA_URL"):
        client_from_settings(load_settings({}, check=False), MemoryLedger())


def test_translate_masks_the_token_and_leaves_bugs_alone() -> None:
    problem = translate("read x", JIRAError("token sekrit rejected", status_code=400), "sekrit")
    assert isinstance(problem, JiraError) and problem.status == 400
    assert "sekrit" not in str(problem) and "[REDACTED]" in str(problem)
    assert isinstance(translate("read x", JIRAError("busy", status_code=503), "sekrit"), JiraUnavailable)
    assert translate("read x", KeyError("fields"), "sekrit") is None


def test_pick_transition_by_name_or_target_status() -> None:
    offered = [JiraTransition("21", "Start work", "In Progress"), JiraTransition("31", "Done", "Done")]
    assert pick_transition(offered, "start WORK") == offered[0]
    assert pick_transition(offered, "in progress") == offered[0]
    assert pick_transition(offered, "Shipped") is None


# --- the Jira marker ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["run:42:comment:DEMO-1", "a+b!c#d@e/f", "x.y_z", "ship:DEMO-7:transition:Done", "k" * 200]
)
def test_jira_marker_round_trips_and_hides_wiki_syntax(key: str) -> None:
    text = jira_marker(key)
    inner = text.removeprefix("{color:#ffffff}baton.effect=").removesuffix("{color}")
    assert all(ch.isalnum() or ch in ".%" for ch in inner)
    assert find_jira_marker(f"Some *wiki* text\n\n{text}") == key
    assert is_jira_bot_text(text)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (None, None),
        ("", None),
        ("just a human comment", None),
        ("baton.effect=%ZZ", None),
        ("baton.effect=has%20space", None),
        (f"generic form\n\n{marker('run:1:x')}", "run:1:x"),
        ("{color:#FFFFFF}baton.effect=run%3A1{color}", "run:1"),
    ],
)
def test_find_jira_marker_on_hostile_and_foreign_text(text: str | None, found: str | None) -> None:
    assert find_jira_marker(text) == found


@pytest.mark.parametrize("key", ["", "two words", "a}b", "x" * 201, "é"])
def test_jira_marker_refuses_keys_that_could_break_out(key: str) -> None:
    with pytest.raises(EffectKeyError):
        jira_marker(key)


async def test_comment_read_back_over_rest_is_recognised_as_the_bots(env: Env) -> None:
    await env.jira.add_comment("DEMO-1", "Proposal", "run:12:p")
    async with httpx.AsyncClient(auth=(BOT_LOGIN, DEMO_BOT_TOKEN), timeout=5) as http:
        response = await http.get(f"{env.url}/rest/api/2/issue/DEMO-1/comment")
    [comment] = response.json()["comments"]
    assert is_jira_bot_text(comment["body"])


async def test_every_posted_or_edited_comment_is_redacted(served: tuple[JiraState, DemoWorld, str]) -> None:
    state, _world, url = served
    canary = "canary-jira-secret-5b6a4c3d"
    jira = JiraClient(config(url), MemoryLedger(), redactor=Redactor([canary]))
    wrapped = f"evidence:\n> {canary[:11]}\n> {canary[11:]}"
    comment_id = await jira.add_comment("DEMO-1", f"failed with {canary}\n{wrapped}", "run:7:evidence")
    await jira.edit_comment("DEMO-1", comment_id, f"edited: {base64.b64encode(canary.encode()).decode()}")
    await jira.add_comment("DEMO-1", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345", "run:7:other")
    await jira.close()

    bodies = [c.body for c in state.issues["DEMO-1"].comments]
    assert len(bodies) == 2 and all("[redacted]" in body for body in bodies)
    assert not [b for b in bodies if canary in b or canary[11:] in b or "sk-ant-api03" in b]
    assert find_jira_marker(bodies[0]) == "run:7:evidence"  # the marker survives redaction


async def test_the_client_from_settings_redacts_every_configured_secret(
    served: tuple[JiraState, DemoWorld, str],
) -> None:
    """`client_from_settings` (what shell/wiring.py calls) masks every secret setting, in every form."""
    state, _world, url = served
    canaries = ["canary-model-key-1a2b3c4d", "canary-gitlab-token-5e6f7a8b", "canary-redis-pass-9c0d"]
    environ = {"BATON_JIRA_URL": url, "BATON_JIRA_TOKEN": DEMO_BOT_TOKEN, "BATON_JIRA_USER": BOT_LOGIN}
    environ |= {"BATON_ANTHROPIC_API_KEY": canaries[0], "BATON_GITLAB_TOKEN": canaries[1]}
    environ |= {"BATON_REDIS_URL": f"redis://:{canaries[2]}@redis:6379/0"}
    jira = client_from_settings(load_settings(environ, check=False), MemoryLedger())
    auth = base64.b64encode(f"{BOT_LOGIN}:{canaries[1]}".encode()).decode()
    body = f"{canaries[0]}\nAuthorization: Basic {auth}\n{json.dumps({'redis': canaries[2]})}"
    await jira.add_comment("DEMO-1", body, "run:5:env")
    await jira.close()

    [comment] = state.issues["DEMO-1"].comments
    assert not [c for c in canaries if c in comment.body] and auth not in comment.body
    assert comment.body.count("[redacted]") == 3


async def test_a_write_that_bypasses_the_client_methods_is_redacted_too(
    served: tuple[JiraState, DemoWorld, str],
) -> None:
    """The redactor sits in the `jira` library's session, not in each method: a comment added or edited
    with the library directly is redacted all the same, and its JSON body stays valid."""
    state, _world, url = served
    canary = "canary-jira-secret-0f1e2d3c"
    jira = JiraClient(config(url), MemoryLedger(), redactor=Redactor([canary]))
    raw = await jira._connection()
    comment = raw.add_comment("DEMO-1", f'quote " and {canary}')
    raw.comment("DEMO-1", comment.id).update(body=f"edited {canary}\n-----BEGIN EC PRIVATE KEY-----\nMHc")
    await jira.close()

    [stored] = state.issues["DEMO-1"].comments
    assert stored.body == "edited [redacted]\n[redacted]"


async def test_a_short_secret_in_the_marker_does_not_break_it(
    served: tuple[JiraState, DemoWorld, str],
) -> None:
    state, _world, url = served
    jira = JiraClient(config(url), MemoryLedger(), redactor=Redactor(["baton", "effect"]))
    await jira.add_comment("DEMO-1", "posted by baton, effect pending", "run:4:baton")
    await jira.close()

    [stored] = state.issues["DEMO-1"].comments
    assert stored.body.startswith("posted by [redacted], [redacted] pending")
    assert find_jira_marker(stored.body) == "run:4:baton"
