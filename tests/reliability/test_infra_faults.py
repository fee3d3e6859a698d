"""Infrastructure faults under load: Redis killed and restarted, Redis flushed, PostgreSQL restarted.

Real `baton serve` and `baton worker` processes (the plain `baton_env` setup: no agent key, so
implement runs fail fast once claimed and settle), a real redis-server, a private PostgreSQL cluster,
signed label deliveries posted from a thread; `invariants.check` after every case.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability import invariants
from tests.reliability.faults import (
    Sender,
    actions,
    claimed,
    delivery_keys,
    infra_canaries,
    plant_canaries,
    runs,
    tail,
    wait_until,
)
from tests.support.deliveries import label_added, signed
from tests.support.processes import BatonProcess, baton_env, cli
from tests.support.servers import PrivatePostgres, RedisServer, free_port


@pytest.fixture
def procs() -> Iterator[list[BatonProcess]]:
    started: list[BatonProcess] = []
    yield started
    for proc in started:
        proc.stop()


def start(procs: list[BatonProcess], role: str, env: dict[str, str], log_dir: Path) -> BatonProcess:
    proc = BatonProcess(role, env, log_dir)
    procs.append(proc)
    if role == "serve":
        proc.wait_http(f"http://127.0.0.1:{env['BATON_PORT']}/healthz")
    else:
        wait_until(lambda: '"worker started"' in proc.logs(), 60, "the worker", proc.logs)
    return proc


def environment(tmp_path: Path, db_url: str, redis_url: str) -> tuple[dict[str, str], list[str]]:
    env = baton_env(tmp_path / "state", db_url, redis_url, free_port())
    canaries = [*infra_canaries(), *plant_canaries(env)]
    assert cli(env, "migrate").returncode == 0
    return env, sorted(set(canaries))


def world(env: dict[str, str], log_dir: Path, canaries: list[str]) -> invariants.World:
    return invariants.World(
        db_url=env["BATON_DATABASE_URL"],
        redis_url=env["BATON_REDIS_URL"],
        logs=sorted(log_dir.glob("*.log")),
        canaries=canaries,
    )


def all_claimed(db_url: str, run_ids: set[str]) -> bool:
    return run_ids <= claimed(db_url)


def claims(db_url: str, run_id: str) -> int:
    return actions(db_url, run_id).count("claimed")


@pytest.mark.timeout(180)
def test_redis_killed_and_restarted_under_load_loses_no_acknowledged_delivery(
    tmp_path: Path, pg_url: str, procs: list[BatonProcess]
) -> None:
    """kill -9 redis-server while deliveries keep arriving, then restart it (empty) on the same port:
    every delivery is still answered 202 (never a 5xx while only Redis is down), and every one of them
    becomes a run that a worker claims (the sweeper re-enqueues what the queue lost)."""
    redis = RedisServer(tmp_path / "redis").start()
    try:
        env, canaries = environment(tmp_path, pg_url, redis.url)
        log_dir = tmp_path / "logs"
        serve = start(procs, "serve", env, log_dir)
        worker = start(procs, "worker", env, log_dir)
        with Sender(int(env["BATON_PORT"])) as sender:
            sender.answered(10)
            redis.stop()  # SIGKILL
            down_from = len(sender.snapshot())
            sender.answered(15)
            down_to = len(sender.snapshot())
            redis.start()
            sender.answered(15)
        sent = sender.snapshot()

        assert not sender.errors, sender.errors[:5]
        assert sender.codes().keys() == {202}, sender.codes()
        while_down = [s for s in sent[down_from:down_to] if s.answers]
        assert len(while_down) >= 10 and all(s.answers == [202] for s in while_down)
        assert "the sweeper will enqueue the run" in serve.logs()  # enqueues really failed meanwhile
        acked = {s.run_id for s in sent if s.answers == [202] and s.run_id}
        assert len(acked) == sum(1 for s in sent if s.answers)  # one run per delivery
        assert {r.id for r in runs(pg_url)} == acked

        def everything() -> bool:
            return all_claimed(pg_url, acked)

        wait_until(lambda: everything() or worker.process.poll() is not None, 90, "claims", tail(log_dir))
        assert worker.process.poll() is None, "the worker must survive the Redis restart"
        assert everything()
        assert serve.process.poll() is None
        invariants.check(world(env, log_dir, canaries))
    finally:
        redis.stop()


@pytest.mark.timeout(90)
def test_a_running_worker_survives_a_redis_restart(tmp_path: Path, procs: list[BatonProcess]) -> None:
    """A Redis restart must not take the worker down: afterwards the same process claims a new run."""
    redis = RedisServer(tmp_path / "redis").start()
    try:
        env, canaries = environment(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", redis.url)
        log_dir = tmp_path / "logs"
        start(procs, "serve", env, log_dir)
        worker = start(procs, "worker", env, log_dir)
        redis.stop()
        time.sleep(3)
        redis.start()
        body, headers = signed("jira", label_added())
        url = f"http://127.0.0.1:{env['BATON_PORT']}/webhooks/jira"
        answer = httpx.post(url, content=body, headers=headers, timeout=10)
        assert answer.status_code == 202
        run_id = answer.json()["run"]
        wait_until(
            lambda: worker.process.poll() is not None or run_id in claimed(env["BATON_DATABASE_URL"]),
            30,
            "the run to be claimed",
            tail(log_dir),
        )
        assert worker.process.poll() is None, f"the worker exited with {worker.process.returncode}"
        invariants.check(world(env, log_dir, canaries))
    finally:
        redis.stop()


def queue_depth(redis: RedisServer) -> int:
    """Run jobs in arq's queue (the worker's cron sweeps queue there too; they are not counted)."""
    with redis.client() as client:
        return sum(1 for job in client.zrange("arq:queue", 0, -1) if not job.startswith(b"cron:"))


@pytest.mark.timeout(120)
def test_redis_flushed_with_queued_runs_the_sweeper_requeues_them_from_the_store(
    tmp_path: Path, redis_server: RedisServer, procs: list[BatonProcess]
) -> None:
    """Runs are committed and queued while no worker runs; Redis loses everything (FLUSHALL); the
    worker that starts afterwards finds the queue empty, and its sweeper re-enqueues every
    non-terminal run from the store, which it then drains."""
    db_url = f"sqlite:///{tmp_path / 'baton.db'}"
    env, canaries = environment(tmp_path, db_url, redis_server.url)
    log_dir = tmp_path / "logs"
    start(procs, "serve", env, log_dir)
    url = f"http://127.0.0.1:{env['BATON_PORT']}/webhooks/jira"
    accepted: set[str] = set()
    for _ in range(8):
        body, headers = signed("jira", label_added())
        answer = httpx.post(url, content=body, headers=headers, timeout=10)
        assert answer.status_code == 202, answer.text
        accepted.add(answer.json()["run"])
    assert queue_depth(redis_server) == len(accepted) == 8

    redis_server.flush()
    assert queue_depth(redis_server) == 0
    assert {r.status for r in runs(db_url)} == {"queued"}
    start(procs, "worker", env, log_dir)
    wait_until(lambda: all_claimed(db_url, accepted), 60, "the worker to drain the swept runs", tail(log_dir))
    assert "sweeper recovered" in procs[-1].logs()
    invariants.check(world(env, log_dir, canaries))
    assert {r.status for r in runs(db_url)} == {"failed"}  # this worker has no agent: fails fast
    assert all(claims(db_url, run_id) == 1 for run_id in accepted)  # each run executed once
    # A sweep racing the drain may enqueue a job for a run that just finished; it claims nothing.
    wait_until(lambda: queue_depth(redis_server) == 0, 20, "the queue to drain", tail(log_dir))


@pytest.mark.timeout(180)
def test_postgres_restarted_mid_ingest_answers_503_and_stores_every_acknowledged_delivery_once(
    tmp_path: Path, redis_server: RedisServer, procs: list[BatonProcess]
) -> None:
    """The state store stops (immediate shutdown) and comes back while deliveries keep arriving: during
    the outage the answer is 503 with Retry-After, never a 2xx; afterwards the 503'd deliveries,
    sent again, are accepted; every acknowledged delivery is in the store exactly once."""
    pg = PrivatePostgres().init().start()
    try:
        env, canaries = environment(tmp_path, pg.url, redis_server.url)
        log_dir = tmp_path / "logs"
        start(procs, "serve", env, log_dir)
        start(procs, "worker", env, log_dir)
        with Sender(int(env["BATON_PORT"])) as sender:
            sender.answered(10)
            pg.stop()
            sender.answered(15)
            pg.start()
            wait_until(lambda: sender.snapshot()[-2].answers == [202], 30, "ingest to recover", tail(log_dir))
            sender.answered(10)
        sent = [s for s in sender.snapshot() if s.answers]

        assert not sender.errors, sender.errors[:5]
        codes = sender.codes()
        assert set(codes) <= {202, 503}, codes
        stored = delivery_keys(pg.url)
        for item in sent:  # 2xx only for what was committed; a 503 stored nothing
            copies = sum(n for key, n in stored.items() if key.endswith(":" + item.identifier))
            expected = 1 if item.answers == [202] else 0
            assert copies == expected, f"delivery answered {item.answers} is stored {copies} time(s)"
        refused = [s for s in sent if s.answers == [503]]
        assert len(refused) >= 10, codes  # the outage was seen
        assert all((s.retry_after[0] or "").isdigit() for s in refused), [s.retry_after for s in refused]

        with httpx.Client(timeout=15) as client:  # what GitLab and Jira do after a 503
            for item in refused:
                assert sender.post(client, item) == 202, item.answers
        stored = delivery_keys(pg.url)
        for item in sent:
            copies = sum(n for key, n in stored.items() if key.endswith(":" + item.identifier))
            assert copies == 1, f"delivery answered {item.answers} is stored {copies} time(s)"
        assert sum(stored.values()) == len(sent)
        assert len({s.run_id for s in sent}) == len(sent)
        wait_until(
            lambda: all_claimed(pg.url, {s.run_id for s in sent if s.run_id}),
            90,
            "every run claimed",
            tail(log_dir),
        )
        for proc in procs:
            assert proc.process.poll() is None, f"{proc.log_path.name} died:\n{proc.logs()[-3000:]}"
        invariants.check(world(env, log_dir, canaries))
    finally:
        for proc in procs:
            proc.stop()
        procs.clear()
        pg.remove()
