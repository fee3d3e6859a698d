"""Durable-inbox cost: `bot.store.inbox.record` (delivery + run + activity, one commit) vs a bare INSERT.

Run: `python -m bench.inbox [--ops N] [--concurrency C] [--db sqlite,postgresql] [--quick]`

For each database (a SQLite file in a temporary directory; a throwaway database on the local PostgreSQL,
`BATON_BENCH_PG_URL`, default `postgresql://postgres@127.0.0.1:5432/postgres`, dropped afterwards) the
schema is migrated as `baton migrate` does, then, through the same engine Baton builds
(`bot.store.engine.create_engine`):

- **Baton**: `inbox.record` of a distinct label-added delivery (the recorded 7.4 KB Jira payload), which
  inserts the delivery, its run and an activity row and commits them in one transaction;
- **bare**: one `INSERT` of one row (id, a key, the same JSON payload) in its own transaction.

Both are timed serially (one at a time) and with C concurrent writers, in alternating chunks so that noise
on the machine falls on both alike. On SQLite concurrent writers queue on one in-process lock, as
`baton serve` does (`shell.services.build`); PostgreSQL takes them in parallel from the engine's pool.
Figures go to stdout and to `bench/results/inbox.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store import inbox
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.triggers import TicketLabelled
from config.settings import async_database_url
from handlers.actions import Enqueue
from tests.support.deliveries import fixture

RESULTS = Path(__file__).with_name("results")
PG_ADMIN_URL = os.environ.get("BATON_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CHUNK = 50  # ops per target before switching to the other one

Op = Callable[[int], Awaitable[object]]

bare_metadata = MetaData()
bare_table = Table(
    "bench_bare",
    bare_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(255)),
    Column("payload", JSON),
)


@dataclass
class Figures:
    database: str
    mode: str  # serial | concurrent
    target: str  # baton | bare
    ops: int
    concurrency: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL.replace("postgresql://", "postgres://", 1), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def throwaway_database(kind: str, tmp: Path) -> Iterator[str]:
    """A plain URL to an empty database: a SQLite file under `tmp`, or a new PostgreSQL database."""
    if kind == "sqlite":
        tmp.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    name = f"baton_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def label_payload(n: int) -> dict[str, Any]:
    payload = fixture("jira/issue_updated_labels.json")
    payload["changelog"]["items"][0].update(fromString="", toString="ai-implement")
    payload["changelog"]["id"] = str(50_000_000 + n)
    return payload


def baton_op(engine: AsyncEngine, prefix: str) -> Op:
    sm = sessionmaker(engine)

    async def op(n: int) -> object:
        payload = label_payload(n)
        incoming = inbox.Incoming("jira", f"hook:{prefix}-{n}", "jira:issue_updated", payload, "jira:admin")
        issue = payload["issue"]
        action = Enqueue(
            kind="implement",
            subject=f"jira:{issue['key']}",
            origin=f"jira:changelog:{prefix}-{n}",
            input=TicketLabelled(issue_key=issue["key"], issue_id=str(issue["id"]), summary="bench"),
        )
        recorded = await inbox.record(sm, incoming, action)
        if recorded.outcome != inbox.ENQUEUED:
            raise RuntimeError(f"inbox answered {recorded.outcome} for a new delivery")
        return recorded

    return op


def bare_op(engine: AsyncEngine, prefix: str) -> Op:
    async def op(n: int) -> object:
        async with engine.begin() as conn:
            await conn.execute(insert(bare_table), {"key": f"hook:{prefix}-{n}", "payload": label_payload(n)})
        return None

    return op


async def _timed_chunk(
    op: Op, start: int, count: int, concurrency: int, lock: contextlib.AbstractAsyncContextManager[object]
) -> tuple[float, list[float]]:
    """Run ops start..start+count with `concurrency` writers; returns (elapsed s, latencies s)."""
    latencies: list[float] = []
    numbers = iter(range(start, start + count))

    async def writer() -> None:
        for n in numbers:
            began = time.perf_counter()
            async with lock:
                await op(n)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies


async def measure(
    ops: dict[str, Op], total: int, concurrency: int, lock: contextlib.AbstractAsyncContextManager[object]
) -> dict[str, tuple[float, list[float]]]:
    """`total` ops per target, alternating targets every CHUNK ops; per target (seconds, latencies)."""
    out: dict[str, tuple[float, list[float]]] = {name: (0.0, []) for name in ops}
    base = 0
    while base < total:
        count = min(CHUNK, total - base)
        for name, op in ops.items():
            elapsed, latencies = await _timed_chunk(op, base, count, concurrency, lock)
            spent, seen = out[name]
            out[name] = (spent + elapsed, seen + latencies)
        base += count
    return out


def figures_of(
    database: str, mode: str, concurrency: int, timings: dict[str, tuple[float, list[float]]]
) -> list[Figures]:
    rows = []
    for target, (elapsed, latencies) in timings.items():
        cuts = statistics.quantiles(latencies, n=100)
        rows.append(
            Figures(
                database,
                mode,
                target,
                len(latencies),
                concurrency,
                round(len(latencies) / elapsed, 1),
                round(cuts[49] * 1000, 3),
                round(cuts[98] * 1000, 3),
            )
        )
    return rows


async def run_database(kind: str, url: str, total: int, concurrency: int) -> list[Figures]:
    engine = create_engine(async_database_url(url))
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.run_sync(bare_metadata.create_all)
        lock: contextlib.AbstractAsyncContextManager[object] = (
            asyncio.Lock() if kind == "sqlite" else contextlib.nullcontext()
        )
        warm = {"baton": baton_op(engine, "warm"), "bare": bare_op(engine, "warm")}
        await measure(warm, 20, 1, lock)
        serial = {"baton": baton_op(engine, "serial"), "bare": bare_op(engine, "serial")}
        rows = figures_of(kind, "serial", 1, await measure(serial, total, 1, lock))
        parallel = {"baton": baton_op(engine, "conc"), "bare": bare_op(engine, "conc")}
        rows += figures_of(kind, "concurrent", concurrency, await measure(parallel, total, concurrency, lock))
    finally:
        await engine.dispose()
    return rows


def ratios(rows: Sequence[Figures]) -> list[dict[str, Any]]:
    """Per database and mode: Baton's p50 over bare's and bare's throughput over Baton's."""
    out = []
    for database in dict.fromkeys(r.database for r in rows):
        for mode in ("serial", "concurrent"):
            pick = {r.target: r for r in rows if r.database == database and r.mode == mode}
            if {"baton", "bare"} <= pick.keys():
                baton, bare = pick["baton"], pick["bare"]
                out.append(
                    {
                        "database": database,
                        "mode": mode,
                        "baton_p50_ms": baton.p50_ms,
                        "bare_p50_ms": bare.p50_ms,
                        "latency_ratio": round(baton.p50_ms / bare.p50_ms, 2),
                        "throughput_ratio": round(baton.ops_per_s / bare.ops_per_s, 2),
                    }
                )
    return out


def report(rows: Sequence[Figures], command: str) -> str:
    lines = [
        "durable inbox: inbox.record (delivery + run + activity, one commit) vs one bare INSERT, same engine",
        f"{'database':11} {'mode':11} {'target':7} {'ops':>5} {'conc':>5} {'ops/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8}",
    ]
    for r in rows:
        lines.append(
            f"{r.database:11} {r.mode:11} {r.target:7} {r.ops:5d} {r.concurrency:5d} {r.ops_per_s:8.1f} "
            f"{r.p50_ms:8.2f} {r.p99_ms:8.2f}"
        )
    for ratio in ratios(rows):
        lines.append(
            f"{ratio['database']} {ratio['mode']}: Baton p50 {ratio['latency_ratio']:.2f}x bare, "
            f"throughput {ratio['throughput_ratio']:.2f}x bare"
        )
    lines.append(f"reproduce: {command}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=1000, help="ops per target and mode")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--quick", action="store_true", help="300 ops per target and mode")
    args = parser.parse_args(argv)
    total = 300 if args.quick else args.ops
    kinds = [k.strip() for k in args.db.split(",") if k.strip()]
    if not kinds or any(k not in ("sqlite", "postgresql") for k in kinds):
        parser.error("--db takes sqlite, postgresql or both")
    if not 20 <= total <= 100_000 or not 1 <= args.concurrency <= 64:
        parser.error("--ops must be 20..100000 and --concurrency 1..64")
    rows: list[Figures] = []
    for kind in kinds:
        with (
            tempfile.TemporaryDirectory(prefix="baton-bench-inbox-") as tmp,
            throwaway_database(kind, Path(tmp)) as url,
        ):
            rows += asyncio.run(run_database(kind, url, total, args.concurrency))
    command = f"python -m bench.inbox --ops {total} --concurrency {args.concurrency} --db {','.join(kinds)}"
    print(report(rows, command), flush=True)
    RESULTS.mkdir(exist_ok=True)
    document = {
        "command": command,
        "cpus": os.cpu_count(),
        "figures": [asdict(r) for r in rows],
        "ratios": ratios(rows),
    }
    (RESULTS / "inbox.json").write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
