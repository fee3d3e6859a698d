"""Handler test fixtures: recorded payloads (tests/fixtures) and variants derived from them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from handlers.context import BotIdentity, HandlerContext

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
Payload = Callable[..., dict[str, Any]]


def _set(data: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        data = data[int(part)] if isinstance(data, list) else data[part]
    if isinstance(data, list):
        data[int(last)] = value
    elif value is ...:
        data.pop(last, None)
    else:
        data[last] = value


def derive(name: str, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A fresh copy of `tests/fixtures/<name>.json` with dotted paths replaced (`...` deletes a key)."""
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    for path, value in (changes or {}).items():
        _set(data, path, value)
    return data


@pytest.fixture
def payload() -> Payload:
    """`payload("gitlab/note_mr_comment", {"object_attributes.note": "/approve"})`."""
    return derive


@pytest.fixture
def ctx() -> HandlerContext:
    """The bot as configured in these tests: GitLab user 83 "baton-bot", Jira "baton" / account "bot-acc"."""
    bot = BotIdentity(
        gitlab_user_id=83, gitlab_username="baton-bot", jira_account_id="bot-acc", jira_name="baton"
    )
    return HandlerContext(bot=bot)
