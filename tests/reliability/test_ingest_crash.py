"""`baton serve` killed (SIGKILL) while deliveries arrive from several senders at once, so that batches of
them share a transaction (group commit, bot/store/group.py): after a restart every delivery that got a 2xx
is in the inbox exactly once with its run, and the ones that got no answer, sent again, are accepted once
(SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.faults import Sender, delivery_keys, runs, tail, wait_until
from tests.support.processes import BatonProcess, baton_env, cli
from tests.support.servers import RedisServer, free_port

SENDERS = 8


@pytest.fixture
def procs() -> Iterator[list[BatonProcess]]:
    started: list[BatonProcess] = []
    yield started
    for proc in started:
        proc.stop()


def serve(procs: list[BatonProcess], env: dict[str, str], log_dir: Path) -> BatonProcess:
    proc = BatonProcess("serve", env, log_dir)
    procs.append(proc)
    proc.wait_http(f"http://127.0.0.1:{env['BATON_PORT']}/healthz")
    return proc


def batched(port: int) -> int:
    """Deliveries this server committed in transactions of more than one (from its /metrics)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    buckets = dict(re.findall(r'baton_ingest_batch_deliveries_bucket\{le="([^"]+)"\} ([0-9.e+]+)', text))
    total = float(re.search(r"baton_ingest_batch_deliveries_count ([0-9.e+]+)", text).group(1))  # type: ignore[union-attr]
    return int(total - float(buckets["1.0"]))


@pytest.mark.timeout(240)
def test_serve_killed_mid_batch_keeps_every_acknowledged_delivery(
    tmp_path: Path, db_url: str, redis_server: RedisServer, procs: list[BatonProcess]
) -> None:
    env = baton_env(tmp_path / "state", db_url, redis_server.url, free_port())
    assert cli(env, "migrate").returncode == 0
    log_dir = tmp_path / "logs"
    port = int(env["BATON_PORT"])
    first = serve(procs, env, log_dir)
    senders = [Sender(port, pause_s=0.0) for _ in range(SENDERS)]
    for sender in senders:
        sender.__enter__()
    try:
        wait_until(
            lambda: sum(1 for s in senders for i in s.snapshot() if i.answers) >= 150 and batched(port) > 0,
            60,
            "answers, some from shared transactions",
            tail(log_dir),
        )
        first.process.kill()  # SIGKILL: batches in flight die with it
        first.process.wait(10)
    finally:
        for sender in senders:
            sender.stop()
    sent = [item for s in senders for item in s.snapshot()]
    acked = [item for item in sent if any(200 <= code < 300 for code in item.answers)]
    unanswered = [item for item in sent if not item.answers]
    assert len(acked) >= 150

    serve(procs, env, log_dir)  # the same store, after the crash
    stored = delivery_keys(db_url)
    for item in acked:  # a 2xx means it was committed: nothing acknowledged is lost or stored twice
        copies = sum(n for key, n in stored.items() if key.endswith(":" + item.identifier))
        assert copies == 1, f"acknowledged delivery {item.identifier} stored {copies} time(s)"
    assert {i.run_id for i in acked} <= {r.id for r in runs(db_url)}

    with httpx.Client(timeout=15) as client:  # what GitLab and Jira do when they got no answer
        for item in unanswered:
            assert senders[0].post(client, item) in (200, 202), item.answers
    stored = delivery_keys(db_url)
    for item in sent:
        copies = sum(n for key, n in stored.items() if key.endswith(":" + item.identifier))
        assert copies == 1, f"delivery {item.identifier} (answers {item.answers}) stored {copies} time(s)"
    assert sum(stored.values()) == len(sent)
