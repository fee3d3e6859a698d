"""The delivery key of a webhook: one key per delivery however often the sender retries it (pure)."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from typing import Literal

MAX_KEY = 200
GITLAB_HEADERS = (("idempotency-key", "idem"), ("x-gitlab-event-uuid", "uuid"))
JIRA_HEADERS = (("x-atlassian-webhook-identifier", "hook"),)
JIRA_COMMENT_CHANGED = frozenset({"comment_updated", "comment_deleted"})


def _printable(ch: str) -> str:
    category = unicodedata.category(ch)
    if category.startswith("C") or category in ("Zl", "Zp"):
        return ""
    return " " if category == "Zs" else ch


def clean(text: str) -> str:
    """Drop control, format, surrogate, unassigned and line-separator characters; spaces become " "."""
    return "".join(_printable(ch) for ch in text).strip()


def make_key(kind: str, value: str) -> str | None:
    """`kind:value`, hashed when longer than MAX_KEY; None when nothing usable is left."""
    value = clean(value)
    if not value:
        return None
    key = f"{kind}:{value}"
    if len(key) > MAX_KEY:
        key = f"{kind}:sha256:{hashlib.sha256(value.encode()).hexdigest()}"
    return key


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Header lookup that ignores the case the caller used for names."""
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return None


def _get(payload: object, *path: str) -> object:
    for part in path:
        if not isinstance(payload, Mapping):
            return None
        payload = payload.get(part)
    return payload


def _scalar(value: object) -> str | None:
    """An id-like value as text: strings and integers only (never bools, floats or containers)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


def _from_headers(headers: Mapping[str, str], names: tuple[tuple[str, str], ...]) -> str | None:
    for name, kind in names:
        value = header(headers, name)
        key = make_key(kind, value) if value is not None else None
        if key:
            return key
    return None


def _gitlab_payload_key(payload: object) -> str | None:
    if _get(payload, "object_kind") != "note":
        return None
    note_id = _scalar(_get(payload, "object_attributes", "id"))
    updated = _scalar(_get(payload, "object_attributes", "updated_at"))
    return make_key("note", f"{note_id}:{updated}") if note_id and updated else None


def _jira_payload_key(payload: object) -> str | None:
    event = _get(payload, "webhookEvent")
    comment_id = _scalar(_get(payload, "comment", "id"))
    commented = event == "jira:issue_updated" and _get(payload, "issue_event_type_name") == "issue_commented"
    if comment_id and (event == "comment_created" or commented):
        return make_key("comment", comment_id)  # one key for both deliveries of a new comment
    if comment_id and isinstance(event, str) and event in JIRA_COMMENT_CHANGED:
        updated = _scalar(_get(payload, "comment", "updated")) or ""
        return make_key("comment", f"{comment_id}:{event}:{updated}")
    changelog_id = _scalar(_get(payload, "changelog", "id"))
    return make_key("changelog", changelog_id) if changelog_id else None


def body_key(body: bytes) -> str:
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def delivery_key(
    source: Literal["gitlab", "jira"], headers: Mapping[str, str], payload: object, body: bytes
) -> str:
    """The sender's retry-stable id if it sent one, else one derived from the payload, else the body hash."""
    if source == "gitlab":
        key = _from_headers(headers, GITLAB_HEADERS) or _gitlab_payload_key(payload)
    else:
        key = _from_headers(headers, JIRA_HEADERS) or _jira_payload_key(payload)
    return key or body_key(body)
