"""Recorded fixtures and the headers a real GitLab or Jira sends with them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from bot.verify import jira_signature

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GITLAB_SECRET = "gitlab-webhook-secret-for-tests"
JIRA_SECRET = "jira-webhook-secret-for-tests"
GITLAB_EVENTS = {
    "note": "Note Hook",
    "merge_request": "Merge Request Hook",
    "push": "Push Hook",
    "pipeline": "Pipeline Hook",
}


def fixture(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / relative).read_text())
    return data


def all_fixtures() -> list[str]:
    return sorted(
        str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*.json") if p.parent.name in ("gitlab", "jira")
    )


def gitlab_headers(
    payload: dict[str, Any], token: str = GITLAB_SECRET, key: str | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Gitlab-Event": GITLAB_EVENTS.get(str(payload.get("object_kind")), "System Hook"),
        "X-Gitlab-Token": token,
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "Idempotency-Key": key or str(uuid.uuid4()),
        "User-Agent": "GitLab/17.4.0",
    }


def jira_headers(body: bytes, secret: str = JIRA_SECRET, key: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Atlassian-Webhook-Identifier": key or str(uuid.uuid4()),
        "X-Hub-Signature": jira_signature(secret, body),
    }


def signed(source: str, payload: dict[str, Any], key: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a correctly authenticated delivery of `payload`."""
    body = json.dumps(payload).encode()
    headers = gitlab_headers(payload, key=key) if source == "gitlab" else jira_headers(body, key=key)
    return body, headers


def label_added(label: str = "ai-implement", changelog_id: str | None = None) -> dict[str, Any]:
    """The recorded labels-changed delivery, with `label` added (changelog id unique unless given)."""
    payload = fixture("jira/issue_updated_labels.json")
    item = payload["changelog"]["items"][0]
    item["fromString"], item["toString"] = "", label
    payload["changelog"]["id"] = changelog_id or str(uuid.uuid4().int % 10**9)
    return payload
