"""Ingest benchmark: Baton's webhook endpoint vs a bare 202 endpoint, driven from this process.

Run: `python -m bench.ingest [--requests N] [--concurrency C] [--db sqlite|postgresql]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from bot.verify import jira_signature
from tests.support.deliveries import FIXTURES
from tests.support.servers import RedisServer, free_port, terminate

SECRET = "bench-jira-webhook-secret"
RESULTS = Path(__file__).with_name("results")


@dataclass
class Figures:
    target: str
    requests: int
    concurrency: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def deliveries(n: int) -> list[tuple[bytes, dict[str, str]]]:
    """N distinct label-added deliveries (each one commits a delivery and a run, then enqueues)."""
    template = json.loads((FIXTURES / "jira/issue_updated_labels.json").read_text())
    template["changelog"]["items"][0].update(fromString="", toString="ai-implement")
    out = []
    for i in range(n):
        template["changelog"]["id"] = str(10_000_000 + i)
        body = json.dumps(template).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Atlassian-Webhook-Identifier": str(uuid.uuid4()),
            "X-Hub-Signature": jira_signature(SECRET, body),
        }
        out.append((body, headers))
    return out


async def drive(url: str, load: list[tuple[bytes, dict[str, str]]], concurrency: int, target: str) -> Figures:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for item in load:
        queue.put_nowait(item)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            body, headers = queue.get_nowait()
            began = time.perf_counter()
            try:
                response = await http.post(url, content=body, headers=headers)
                ok = response.status_code < 300
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - began)
            errors += not ok

    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return Figures(
        target,
        len(load),
        concurrency,
        round(elapsed, 3),
        round(len(load) / elapsed, 1),
        round(quantiles[49] * 1000, 2),
        round(quantiles[98] * 1000, 2),
        errors,
    )


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout_s} s")


def baton_env(tmp: Path, db_url: str, redis_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(
        BATON_STATE_DIR=str(tmp / "state"),
        BATON_DATABASE_URL=db_url,
        BATON_REDIS_URL=redis_url,
        BATON_PORT=str(port),
        BATON_SANDBOX="1",
        BATON_JIRA_WEBHOOK_SECRET=SECRET,
        BATON_LOG_LEVEL="WARNING",
    )
    return env


def database_url(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'bench.db'}"
    name = f"baton_bench_{uuid.uuid4().hex[:8]}"
    create = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {name}"]
    subprocess.run(create, check=True)
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def quiet(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(requests: int, concurrency: int, db: str) -> list[Figures]:
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as name:
        tmp = Path(name)
        redis = RedisServer(tmp / "redis").start()
        baton_port, bare_port = free_port(), free_port()
        env = baton_env(tmp, database_url(db, tmp), redis.url, baton_port)
        subprocess.run(
            [sys.executable, "-m", "shell.cli", "migrate"], env=env, check=True, capture_output=True
        )
        baton = quiet([sys.executable, "-m", "shell.cli", "serve"], env)
        bare = quiet([sys.executable, "-m", "bench.bare", str(bare_port)], env)
        try:
            wait_healthy(f"http://127.0.0.1:{baton_port}/healthz", baton)
            wait_healthy(f"http://127.0.0.1:{bare_port}/healthz", bare)
            warm = deliveries(50)
            asyncio.run(drive(f"http://127.0.0.1:{bare_port}/webhooks/jira", warm, 8, "warm-up"))
            bare_url = f"http://127.0.0.1:{bare_port}/webhooks/jira"
            baton_url = f"http://127.0.0.1:{baton_port}/webhooks/jira"
            figures = [
                asyncio.run(drive(bare_url, deliveries(requests), concurrency, "bare Starlette 202")),
                asyncio.run(
                    drive(baton_url, deliveries(requests), concurrency, f"Baton /webhooks/jira ({db})")
                ),
            ]
        finally:
            terminate(baton)
            terminate(bare)
            redis.stop()
    return figures


def report(figures: list[Figures], command: str) -> None:
    print(f"{'target':34} {'requests':>8} {'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for f in figures:
        row = f"{f.target:34} {f.requests:8d} {f.concurrency:5d} {f.rps:9.1f}"
        print(f"{row} {f.p50_ms:8.2f} {f.p99_ms:8.2f} {f.errors:6d}")
    bare, baton = figures[0], figures[-1]
    print(f"Baton/bare throughput ratio: {baton.rps / bare.rps:.2f}  (p50 {baton.p50_ms / bare.p50_ms:.1f}x)")
    print(f"reproduce: {command}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args(argv)
    figures = run(args.requests, args.concurrency, args.db)
    command = f"python -m bench.ingest --requests {args.requests} --concurrency {args.concurrency}"
    command += f" --db {args.db}"
    report(figures, command)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ingest-{args.db}.json"
    out.write_text(json.dumps({"command": command, "figures": [asdict(f) for f in figures]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
