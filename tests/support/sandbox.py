"""A running sandbox plus Baton's real server and worker processes, for end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bot.sandbox.stack import SandboxPorts, SandboxStack, baton_environment
from tests.support.processes import BatonProcess, baton_env, cli
from tests.support.servers import RedisServer, free_port

T = TypeVar("T")


@dataclass
class Running:
    stack: SandboxStack
    config: dict[str, Any]
    env: dict[str, str]
    port: int
    worker: BatonProcess
    server: BatonProcess
    log_dir: Path

    def kill_worker(self) -> None:
        """SIGKILL the worker, as a crash would (no cleanup, no requeue)."""
        self.worker.process.kill()
        self.worker.process.wait(10)

    def start_worker(self) -> BatonProcess:
        self.worker = BatonProcess("worker", self.env, self.log_dir)
        return self.worker

    def comments(self, key: str) -> list[str]:
        return [c.body for c in self.stack.jira_state.issue(key).comments]

    def as_person(self, user: str, key: str, body: str) -> None:
        answer = httpx.post(
            f"{self.config['jira']['url']}/_sandbox/comments",
            json={"user": user, "issue": key, "body": body},
            timeout=10,
        )
        assert answer.status_code < 300, answer.text

    def label(self, user: str, key: str, label: str = "ai-implement") -> None:
        answer = httpx.post(
            f"{self.config['jira']['url']}/_sandbox/labels",
            json={"user": user, "issue": key, "add": [label]},
            timeout=10,
        )
        assert answer.status_code < 300, answer.text


def wait(predicate: Callable[[], T | None], timeout_s: float, what: str, logs: Callable[[], str]) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}\n{logs()[-6000:]}")


@contextmanager
def running_sandbox(
    tmp_path: Path, db_url: str, scenario: Path, home: str | None = None, **extra_env: str
) -> Iterator[Running]:
    """Sandbox (simulators + scripted model) → Baton serve + worker, wired like `baton up` does.
    `extra_env` become BATON_* settings; `home` is the processes' HOME."""
    redis = RedisServer(tmp_path / "redis").start()
    port = free_port()
    stack = SandboxStack(tmp_path / "state", f"http://127.0.0.1:{port}", SandboxPorts.from_base(0), scenario)
    config = stack.start()
    env = baton_env(tmp_path / "state", db_url, redis.url, port)
    env.update(baton_environment(config))
    env["BATON_AGENT_TIMEOUT_S"] = "120"
    env.update({f"BATON_{k.upper()}": v for k, v in extra_env.items()})
    if home is not None:
        env["HOME"] = home
    assert cli(env, "migrate").returncode == 0
    server = BatonProcess("serve", env, tmp_path / "logs")
    worker = BatonProcess("worker", env, tmp_path / "logs")
    try:
        server.wait_http(f"http://127.0.0.1:{port}/healthz")
        running = Running(stack, config, env, port, worker, server, tmp_path / "logs")
        yield running
    finally:
        running.worker.stop(30) if "running" in locals() else worker.stop(30)
        server.stop()
        stack.stop()
        redis.stop()
