"""Real processes (`baton serve`, `worker`, `up`) with real Redis and PostgreSQL, killed and restarted."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.deliveries import label_added, signed
from tests.support.processes import CANARY, BatonProcess, baton_env, cli, cli_json, wait_for
from tests.support.servers import PrivatePostgres, RedisServer, free_port, wait_port


@pytest.fixture
def procs() -> Iterator[list[BatonProcess]]:
    started: list[BatonProcess] = []
    yield started
    for proc in started:
        proc.stop()


def start(procs: list[BatonProcess], role: str, env: dict[str, str], tmp_path: Path) -> BatonProcess:
    proc = BatonProcess(role, env, tmp_path / "logs")
    procs.append(proc)
    if role == "serve":
        proc.wait_http(f"http://127.0.0.1:{env['BATON_PORT']}/healthz")
    return proc


def post(port: int, payload: dict[str, object], key: str | None = None) -> httpx.Response:
    body, headers = signed("jira", payload, key=key)
    return httpx.post(f"http://127.0.0.1:{port}/webhooks/jira", content=body, headers=headers, timeout=10)


def test_fifty_concurrent_duplicates_yield_one_run(
    tmp_path: Path, db_url: str, redis_server: RedisServer, procs: list[BatonProcess]
) -> None:
    port = free_port()
    env = baton_env(tmp_path / "state", db_url, redis_server.url, port)
    assert cli(env, "migrate").returncode == 0
    start(procs, "serve", env, tmp_path)
    body, headers = signed("jira", label_added("ai-implement"))

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=20) as http:
            url = f"http://127.0.0.1:{port}/webhooks/jira"
            answers = await asyncio.gather(
                *(http.post(url, content=body, headers=headers) for _ in range(50))
            )
            return [a.status_code for a in answers]

    codes = asyncio.run(burst())
    assert codes.count(202) == 1 and codes.count(200) == 49
    runs = cli_json(env, "runs")
    assert len(runs) == 1
    assert runs[0]["kind"] == "implement" and runs[0]["subject"].startswith("jira:")


def test_database_down_gives_503_and_recovers(
    tmp_path: Path, redis_server: RedisServer, procs: list[BatonProcess]
) -> None:
    pg = PrivatePostgres().init().start()
    try:
        port = free_port()
        env = baton_env(tmp_path / "state", pg.url, redis_server.url, port)
        assert cli(env, "migrate").returncode == 0
        start(procs, "serve", env, tmp_path)
        assert post(port, label_added()).status_code == 202
        pg.stop()
        down = post(port, label_added())
        assert down.status_code == 503 and down.headers["retry-after"]
        assert "unavailable" in down.json()["error"]
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["database"].startswith("unavailable")
        pg.start()
        assert post(port, label_added()).status_code == 202
        assert len(cli_json(env, "runs")) == 2  # the 503'd delivery stored nothing
    finally:
        pg.remove()


def test_redis_down_then_sweeper_enqueues_and_worker_claims(
    tmp_path: Path, db_url: str, procs: list[BatonProcess]
) -> None:
    redis = RedisServer(tmp_path / "redis")  # not started yet: Redis is down
    port = free_port()
    env = baton_env(tmp_path / "state", db_url, redis.url, port)
    assert cli(env, "migrate").returncode == 0
    serve = start(procs, "serve", env, tmp_path)
    accepted = post(port, label_added())
    assert accepted.status_code == 202
    run_id = accepted.json()["run"]
    redis.start()
    try:
        worker = start(procs, "worker", env, tmp_path)

        def claimed() -> bool:
            detail = cli_json(env, "show", run_id[:8])
            return any(a["action"] == "claimed" for a in detail["activity"])

        wait_for(claimed, 30, "the worker to claim the swept run")
        detail = cli_json(env, "show", run_id)
        assert detail["id"] == run_id and detail["status"] == "failed"
        assert "no GitLab/Jira clients" in detail["error"]  # this worker has no agent key configured
        lines = [json.loads(line) for line in worker.logs().splitlines() if line.startswith("{")]
        assert any(line.get("run_id") == run_id for line in lines)
        for proc in (serve, worker):
            assert CANARY not in proc.logs()
    finally:
        redis.stop()


def test_baton_up_runs_the_sandbox_end_to_end(tmp_path: Path, procs: list[BatonProcess]) -> None:
    port = free_port()
    env = baton_env(tmp_path / "state", f"sqlite:///{tmp_path / 'up.db'}", "", port, sandbox_port="0")
    for name in [k for k in env if k.startswith(("BATON_GITLAB", "BATON_JIRA", "BATON_REDIS"))]:
        del env[name]
    up = BatonProcess("up", env, tmp_path / "logs")
    procs.append(up)
    up.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
    assert (tmp_path / "state" / "sandbox-secrets.json").stat().st_mode & 0o077 == 0
    config = cli_json_plain(env, "sandbox", "--print-config")
    assert config["baton"]["jira_webhook"] == f"http://127.0.0.1:{port}/webhooks/jira"
    # A person adds the trigger label in the Jira simulator; its signed webhook reaches Baton.
    added = httpx.post(
        f"{config['jira']['url']}/_sandbox/labels",
        json={"user": "alice", "issue": "DEMO-1", "add": ["ai-implement"]},
        timeout=10,
    )
    assert added.status_code < 300, added.text
    runs = wait_for(lambda: cli_json(env, "runs"), 30, "the label webhook to start a run")
    assert [(r["kind"], r["subject"]) for r in runs] == [("implement", "jira:DEMO-1")]
    up.process.send_signal(signal.SIGTERM)
    assert up.process.wait(60) == 0
    with pytest.raises(TimeoutError):
        wait_port(port, timeout_s=0.5)
    assert not (tmp_path / "state" / "sandbox.json").exists()
    assert "sandbox mode" in up.logs()


def cli_json_plain(env: dict[str, str], *args: str) -> Any:
    done = cli(env, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
