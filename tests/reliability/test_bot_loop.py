"""The bot's own posts fed back as webhooks start nothing: every Jira comment and GitLab note Baton
posted during a real run is delivered again, signed as the simulators sign it: as it was sent, with
its hidden marker removed (only the bot's identity left), and with the identity replaced by a
person's (only the marker left)."""

from __future__ import annotations

import copy
import itertools
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.effects import find_jira_marker
from bot.sandbox.gitlab_sim import model as gitlab_model
from bot.sandbox.gitlab_sim import webhooks as gitlab_hooks
from bot.sandbox.jira_sim import model as jira_model
from bot.sandbox.jira_sim import webhooks as jira_hooks
from bot.sandbox.jira_sim.demo import BOT_ACCOUNT_ID
from tests.reliability.test_external_faults import (
    check_world,
    guarded_sandbox,
    lifecycle,
    marked,
    plant,
    scenario_file,
    settled,
)
from tests.support.processes import cli_json
from tests.support.sandbox import Running, wait

NEW_IDS = itertools.count(990_001)
BOT_COMMENT = {"ignored": "the bot's own comment"}
BOT_NOTE = {"ignored": "the bot's own note"}
JIRA_MARKER = re.compile(r"\s*\{color:#ffffff\}baton\.effect=[A-Za-z0-9.%]+\{color\}")
GITLAB_MARKER = re.compile(r"\s*<!-- baton:effect=\S+ -->")


def _jira_payloads(running: Running) -> list[tuple[str, dict[str, Any]]]:
    """(event, payload) of every delivery the Jira simulator sent about a new comment (not an edit)."""
    out = []
    for delivery in list(running.stack.jira_state.deliveries):
        payload = json.loads(delivery.body)
        created = payload.get("webhookEvent") == "comment_created"
        if created or payload.get("issue_event_type_name") == "issue_commented":
            out.append((delivery.event, payload))
    return out


def _author(payload: dict[str, Any]) -> str:
    return str((payload["comment"].get("author") or {}).get("accountId"))


def _disguised_jira(payload: dict[str, Any], person: dict[str, Any]) -> dict[str, Any]:
    """The bot's comment as if a person (an approver) had written it: a new comment id, the marker kept."""

    def swap(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get("accountId") == BOT_ACCOUNT_ID:
                return copy.deepcopy(person)
            return {key: swap(item) for key, item in value.items()}
        if isinstance(value, list):
            return [swap(item) for item in value]
        return value

    out: dict[str, Any] = swap(payload)  # builds new containers; `payload` is left as it was
    out["comment"]["id"] = str(next(NEW_IDS))
    assert BOT_ACCOUNT_ID not in json.dumps(out) and find_jira_marker(out["comment"]["body"])
    return out


def _unmarked_jira(payload: dict[str, Any]) -> dict[str, Any]:
    """The bot's comment with its marker gone (only the bot's identity is left): a new comment id."""
    out = copy.deepcopy(payload)
    out["comment"]["body"] = JIRA_MARKER.sub("", out["comment"]["body"])
    out["comment"]["id"] = str(next(NEW_IDS))
    assert find_jira_marker(out["comment"]["body"]) is None
    return out


def _deliver_jira(running: Running, event: str, payload: dict[str, Any]) -> Any:
    (hook,) = running.stack.jira_state.webhooks.values()
    body = json.dumps(payload).encode()
    delivery = jira_model.Delivery(str(uuid.uuid4()), hook.id, event, body)
    headers = jira_hooks.delivery_headers(hook, delivery, 0)
    answer = httpx.post(running.config["baton"]["jira_webhook"], content=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _deliver_gitlab(running: Running, event: str, payload: dict[str, Any]) -> Any:
    state = running.stack.gitlab_state
    project_id = payload["project"]["id"]  # every sandbox project has Baton's hook: the payload's project's
    (hook,) = [h for h in state.hooks.values() if h.project_id == project_id]
    delivery = gitlab_model.Delivery(hook.id, hook.url, event, str(uuid.uuid4()), str(uuid.uuid4()), payload)
    headers = gitlab_hooks.delivery_headers(state, hook, delivery)
    answer = httpx.post(hook.url, content=json.dumps(payload).encode(), headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _bot_note_on_the_mr(running: Running) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ask on the MR with a near-miss command; Baton answers in the thread. (bot's note, person's note)."""
    (mr,) = running.stack.gitlab_state.merge_requests_of(running.stack.demo.project)
    asked = httpx.post(
        f"{running.config['gitlab']['url']}/_sandbox/notes",
        json={
            "user": "maintainer",
            "project": "demo/calculator",
            "merge_request_iid": mr.iid,
            "body": "/aprove",
        },
        timeout=10,
    )
    assert asked.status_code == 201, asked.text

    def note_hooks(username: str) -> list[dict[str, Any]]:
        hooks = running.stack.gitlab_state.deliveries_of("Note Hook")
        return [d.payload for d in hooks if d.payload["user"]["username"] == username and d.succeeded]

    bot = wait(lambda: note_hooks("baton-bot"), 60, "the bot's reply on the MR", running.worker.logs)
    return bot[0], note_hooks("maintainer")[0]


def _disguised_note(payload: dict[str, Any], person: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    out["user"] = copy.deepcopy(person["user"])
    out["object_attributes"]["author_id"] = person["object_attributes"]["author_id"]
    out["object_attributes"]["id"] = next(NEW_IDS)
    return out


def _unmarked_note(payload: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    out["object_attributes"]["note"] = GITLAB_MARKER.sub("", out["object_attributes"]["note"])
    out["object_attributes"]["id"] = next(NEW_IDS)
    assert find_jira_marker(out["object_attributes"]["note"]) is None
    return out


def _settled(running: Running, db: str) -> list[tuple[str, str]]:
    def done() -> bool:
        return all(r["status"] in ("waiting", "succeeded") for r in cli_json(running.env, "runs"))

    wait(done, 60, "every run to settle", running.worker.logs)
    return sorted((r["id"], r["status"]) for r in cli_json(running.env, "runs"))


@pytest.mark.timeout(200)
def test_the_bots_own_posts_fed_back_start_nothing(tmp_path: Path, pg_url: str) -> None:
    planted = plant(tmp_path)
    scenario = scenario_file(tmp_path, lifecycle(), planted)
    with guarded_sandbox(tmp_path, scenario, planted, db_url=pg_url) as (sandbox, db):
        logs = sandbox.worker.logs
        sandbox.label("dan", "DEMO-1")
        settled(sandbox, db, "waiting")
        sandbox.as_person("alice", "DEMO-1", "/approve")
        wait(lambda: marked(sandbox, "DEMO-1", "mr-link"), 60, "the MR link", logs)
        bot_note, person_note = _bot_note_on_the_mr(sandbox)
        assert "<!-- baton:effect=" in bot_note["object_attributes"]["note"]
        before = _settled(sandbox, db)

        payloads = _jira_payloads(sandbox)
        bots = [(event, p) for event, p in payloads if _author(p) == BOT_ACCOUNT_ID]
        alice = next(p["comment"]["author"] for _, p in payloads if p["comment"]["body"] == "/approve")
        kinds = {find_jira_marker(p["comment"]["body"]).split(":")[2] for _, p in bots}  # type: ignore[union-attr]
        assert {"ack", "status", "proposal", "mr-link"} <= kinds, kinds
        assert {event for event, _ in bots} == {"comment_created", "jira:issue_updated"}
        answers = []  # each post: as sent, with only the identity left, with only the marker left
        for event, payload in bots:
            answers.append(_deliver_jira(sandbox, event, payload))
            answers.append(_deliver_jira(sandbox, event, _unmarked_jira(payload)))
            answers.append(_deliver_jira(sandbox, event, _disguised_jira(payload, alice)))
        answers.append(_deliver_gitlab(sandbox, "Note Hook", bot_note))
        answers.append(_deliver_gitlab(sandbox, "Note Hook", _unmarked_note(bot_note)))
        answers.append(_deliver_gitlab(sandbox, "Note Hook", _disguised_note(bot_note, person_note)))

        expected = [BOT_COMMENT] * (3 * len(bots)) + [BOT_NOTE] * 3
        assert answers == expected, answers
        assert _settled(sandbox, db) == before  # no new run, none moved
        assert len(sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project)) == 1
        check_world(sandbox, db, planted)
