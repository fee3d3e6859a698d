"""Fixtures for agent tests: a temp git worktree, the scripted model server, a request builder."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.agent.profiles import ProfileName
from bot.agent.result import AgentRequest
from bot.containment.host import Containment, host_containment
from bot.sandbox.model_server import ModelServer, RecordedRequest
from bot.sandbox.scenario import load_scenario

SCENARIOS = Path(__file__).parent.parent / "fixtures" / "scenarios"
API_KEY = "sk-sandbox-test-key-0042"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def git(cwd: Path, *args: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), **GIT_ENV}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True, timeout=30
    )
    return done.stdout


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    """A git repository with one commit (README.md) and an untracked `.env` holding a canary."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# demo\n\nA demo repository.\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "initial")
    git(repo, "config", "remote.origin.url", "https://oauth2:canary-remote-token@gitlab.invalid/demo.git")
    (repo / ".env").write_text("SECRET=canary-dotenv-value\n")
    return repo


ServerFactory = Callable[..., ModelServer]


@pytest.fixture
def model_server() -> Iterator[ServerFactory]:
    """Start scripted model servers from scenario files (they insist on API_KEY); stopped at the end."""
    started: list[ModelServer] = []

    def start(name: str, placeholders: Mapping[str, str] | None = None) -> ModelServer:
        server = ModelServer(
            load_scenario(SCENARIOS / name), placeholders=placeholders, api_key=API_KEY
        ).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@functools.cache
def confined() -> Containment:
    """This machine's real OS sandbox, as the worker builds it (bubblewrap must be installed)."""
    return host_containment()


def make_request(
    profile: ProfileName, prompt: str, worktree: Path, server: ModelServer, **extra: Any
) -> AgentRequest:
    return AgentRequest(
        profile=profile,
        prompt=prompt,
        worktree=worktree,
        base_url=server.url,
        api_key=SecretStr(API_KEY),
        timeout_s=extra.pop("timeout_s", 60.0),
        environ=extra.pop("environ", {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}),
        containment=extra.pop("containment", None) or confined(),
        **extra,
    )


def tool_results(requests: list[RecordedRequest]) -> dict[str, str]:
    """Every tool_result the CLI sent back to the model, by tool_use_id, as text."""
    found: dict[str, str] = {}
    for request in requests:
        for message in (request.body or {}).get("messages", []):
            content = message.get("content")
            if message.get("role") != "user" or not isinstance(content, list):
                continue
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    found[block["tool_use_id"]] = json.dumps(block.get("content"))
    return found
