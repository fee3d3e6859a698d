"""Dashboard latency: every page over HTTP from a real `baton serve`, with 10,000 runs in the store.

Run: `python -m bench.dashboard [--runs 10000] [--requests 200] [--db sqlite,postgresql]`

For each database (a SQLite file in a temporary directory; a throwaway database on the local PostgreSQL,
`BATON_BENCH_PG_URL`) the schema is migrated as `baton migrate` does and `--runs` runs are written
(`tests/dashboard/seed.py`: over the last 90 days, three in four `implement` runs of a weighted outcome —
shipped, waiting for approval, needs info, needs a human, failed, … — with six phases each carrying
timings, tokens, cost, a ~4 KB brief and the earlier outputs as input, the activity trail with the
outcome's flags, proposals and the effects that posted them; the rest command runs). Then `baton serve`
starts with the dashboard on, the benchmark signs in once (the `?token=` exchange) and requests each page
`--requests` times one after another, after 5 warm-up requests, from this process. The target is p99 under
100 ms per page. The cost page serves the latest figures and reads them again in the background at most
every 30 s, so how long that read takes is printed apart (in-process, median). Figures go to stdout and to
`bench/results/dashboard.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.inbox import throwaway_database
from bench.ingest import quiet, wait_healthy
from bot.store.dashboard import cost_report
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.store.tables import Proposal, Run
from config.settings import async_database_url
from tests.dashboard.seed import seed_many
from tests.support.processes import baton_env
from tests.support.servers import free_port, terminate

RESULTS = Path(__file__).with_name("results")
TARGET_P99_MS = 100.0
TOKEN = "bench-dashboard-token-0123456789"
WARM_UP = 5
SEED_DAYS = 90  # the runs are spread over the last 90 days: the 90-day cost page covers all of them


@dataclass
class Figures:
    database: str
    page: str
    path: str
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    bytes: int


async def seed(url: str, runs: int) -> tuple[dict[str, str], dict[str, float]]:
    """Migrate and fill the store; returns a shipped run's id (for the run page) and how long reading the
    cost figures from the store takes (median ms per window; the page serves the latest figures and reads
    them again in the background at most every 30 s, so no request waits for this)."""
    engine = create_engine(async_database_url(url))
    try:
        await upgrade(engine)
        sm = sessionmaker(engine)
        began = time.monotonic()
        made = await seed_many(sm, runs, datetime.now(UTC), random.Random(14), days=SEED_DAYS)
        print(f"  seeded {runs:,} runs in {time.monotonic() - began:.1f} s: {made}", flush=True)
        if engine.dialect.name == "postgresql":  # after a bulk load, as autovacuum would soon do
            async with engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql(
                    "VACUUM ANALYZE"
                )
        async with sm() as session:
            shipped = select(Proposal.run_id).where(Proposal.status == "shipped").limit(1)
            run_id = (await session.execute(shipped)).scalar_one()
            subject = (await session.execute(select(Run.subject).where(Run.id == run_id))).scalar_one()
        reads = {f"{days} days": await read_time(sm, days) for days in (30, 90)}
    finally:
        await engine.dispose()
    return {"run": run_id, "subject": subject}, reads


async def read_time(sm: async_sessionmaker[AsyncSession], days: int, times: int = 15) -> float:
    took = []
    for _ in range(times):
        began = time.perf_counter()
        await cost_report(sm, days)
        took.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(took), 2)


def pages(named: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("runs", "/dashboard/"),
        ("runs, waiting", "/dashboard/?status=waiting"),
        ("runs, subject filter, page 2", "/dashboard/?subject=alpha&page=2"),
        ("one run (shipped)", f"/dashboard/runs/{named['run']}"),
        ("awaiting approval", "/dashboard/proposals"),
        ("stopped for a person", "/dashboard/stopped"),
        ("cost and outcomes, 30 days", "/dashboard/costs"),
        ("cost and outcomes, 90 days", "/dashboard/costs?days=90"),
    ]


def measure(base: str, database: str, named: dict[str, str], requests: int) -> list[Figures]:
    figures = []
    with httpx.Client(base_url=base, timeout=30) as http:
        signed = http.get(f"/dashboard/?token={TOKEN}", follow_redirects=False)
        if signed.status_code != 303 or "baton_dashboard" not in signed.cookies:
            raise RuntimeError(f"signing in answered {signed.status_code}")
        for name, path in pages(named):
            for _ in range(WARM_UP):
                http.get(path)
            latencies, size = [], 0
            for _ in range(requests):
                began = time.perf_counter()
                answer = http.get(path)
                latencies.append((time.perf_counter() - began) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"{path} answered {answer.status_code}")
                size = len(answer.content)
            cuts = statistics.quantiles(latencies, n=100)
            figures.append(
                Figures(database, name, path, requests, round(cuts[49], 2), round(cuts[98], 2),
                        round(max(latencies), 2), size)
            )  # fmt: skip
            print(f"  {name:32} p50 {cuts[49]:7.2f} ms   p99 {cuts[98]:7.2f} ms", flush=True)
    return figures


def run_database(kind: str, runs: int, requests: int) -> tuple[list[Figures], dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as name:
        tmp = Path(name)
        with throwaway_database(kind, tmp) as url:
            print(f"\n{kind}:", flush=True)
            named, reads = asyncio.run(seed(url, runs))
            print(f"  cost figures read from the store (median): {reads}", flush=True)
            port = free_port()
            env = baton_env(
                tmp / "state", url, "redis://127.0.0.1:9/0", port, dashboard="token", dashboard_token=TOKEN,
                log_level="WARNING",
            )  # fmt: skip
            server = quiet([sys.executable, "-m", "shell.cli", "serve"], env)
            try:
                wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
                return measure(f"http://127.0.0.1:{port}", kind, named, requests), reads
            finally:
                terminate(server)


def report(rows: Sequence[Figures], command: str) -> str:
    lines = [
        f"{'database':10} {'page':32} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'KB':>6}"
    ]
    for f in rows:
        lines.append(
            f"{f.database:10} {f.page:32} {f.requests:8d} {f.p50_ms:8.2f} {f.p99_ms:8.2f} {f.max_ms:8.2f} "
            f"{f.bytes / 1024:6.1f}"
        )
    worst = max(rows, key=lambda f: f.p99_ms)
    verdict = "under" if worst.p99_ms < TARGET_P99_MS else "OVER"
    lines.append(
        f"slowest p99: {worst.p99_ms:.2f} ms ({worst.page}, {worst.database}): {verdict} the "
        f"{TARGET_P99_MS:.0f} ms target"
    )
    lines.append(f"reproduce: {command}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    args = parser.parse_args(argv)
    kinds = [k for k in args.db.split(",") if k]
    if not kinds or any(k not in ("sqlite", "postgresql") for k in kinds):
        parser.error("--db takes sqlite and/or postgresql")
    rows: list[Figures] = []
    reads: dict[str, dict[str, float]] = {}
    for kind in kinds:
        figures, reads[kind] = run_database(kind, args.runs, args.requests)
        rows += figures
    command = f"python -m bench.dashboard --runs {args.runs} --requests {args.requests} --db {args.db}"
    print("\n" + report(rows, command))
    for kind, read in reads.items():
        print(f"cost figures read from the store ({kind}, median, in the background): {read} ms")
    RESULTS.mkdir(exist_ok=True)
    document = {
        "command": command,
        "runs": args.runs,
        "target_p99_ms": TARGET_P99_MS,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "figures": [asdict(f) for f in rows],
        "cost_figures_read_ms": reads,
    }
    (RESULTS / "dashboard.json").write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
