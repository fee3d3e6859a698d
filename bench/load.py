"""Sustained load: N mixed deliveries/s for T seconds against one `baton serve` process with one worker.

Run: `python -m bench.load [--rate 200] [--seconds 30] [--db sqlite|postgresql|all]`; `--db all` (what
`make bench` runs) loads SQLite, then PostgreSQL, then `bench/bare.py` (a Starlette endpoint that answers
202 and stores nothing) with the same deliveries and sender, and prints their p99 side by side.
(`run_load()` is what `tests/reliability/test_sustained_load.py` calls.)

One `baton serve` and one `baton worker` (real processes) share a throwaway database, a private
redis-server and a Jira simulator (`bench.scaleout.JiraWorld`, DEMO-1..DEMO-10); GitLab settings point at
a closed port, since nothing in the mix makes a run talk to GitLab. Every ticket first gets an implement
run waiting for a person (as if a proposal were open), so a trigger label joins it instead of starting the
agent. A second process (`python -m bench.load --generate`, a lean keep-alive HTTP/1.1 client so that
the sender takes little of the CPU it shares with Baton) sends the deliveries open-loop, on a fixed
schedule of `rate` per second whatever the answers take (at most 256 in flight), signed like GitLab and
Jira do, in a seeded random mix (weights out of 100):

- Jira: trigger label added (202, an implement run that joins the waiting one and says so on the ticket)
  5, another label 8, a comment without a command 22, a comment with a command (`/approve`, `/reject`,
  `/revise` refused for want of a proposal; `/aprove` answered "did you mean") 5, the same command comment
  again as `issue_updated/issue_commented` under a new delivery id (200, joins its run) 3;
- GitLab: pushes 18, merge request events (open, update without new commits, approved, close, ...) 12,
  notes without a command 17;
- redeliveries: an earlier delivery (at least one second earlier) sent again byte for byte with its
  delivery id 10 (200 duplicate).

Counted: sent, answers by status, 5xx, transport errors (no answer within 30 s), **lost** (a 2xx delivery
whose row is not in the store, or a 202 whose run is not), answers other than the expected status, the
latency of the answers, the time from the last answer until no run is queued or running and the arq queue
is empty (**drain**), the runs by status, and the bot's comments: exactly one per run, none twice.
Figures go to stdout and to `bench/results/load.json` (`stores`: one object per store; `bare`: the bare
endpoint's latency, or null; the load average before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import func, select

from bench.inbox import throwaway_database
from bench.scaleout import (
    GITLAB_WEBHOOK_SECRET,
    JIRA_WEBHOOK_SECRET,
    JiraWorld,
    cpu_seconds,
    started,
    worker_env,
)
from bot.dedup import delivery_key
from bot.queue import Queue, connect
from bot.store import inbox, runs, status
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.store.tables import Delivery, Run
from bot.triggers import TicketLabelled
from config.settings import async_database_url
from handlers.actions import Enqueue
from tests.support.deliveries import fixture, gitlab_headers, jira_headers
from tests.support.processes import BatonProcess
from tests.support.servers import RedisServer, free_port, terminate, wait_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results")
MIX: tuple[tuple[str, int], ...] = (
    ("label-trigger", 5),
    ("label-other", 8),
    ("comment", 22),
    ("command", 5),
    ("command-twin", 3),
    ("push", 18),
    ("merge-request", 12),
    ("note", 17),
    ("redelivery", 10),
)
ACCEPTED = frozenset({"label-trigger", "command"})  # the kinds that start a run (202)
COMMANDS = ("/approve", "/reject not now, thanks", "/revise keep the old function name", "/aprove")
PLAIN = ("Looks good to me.", "Can we talk about this tomorrow?", "See the attached log.", "+1")
MR_ACTIONS = ("open", "update", "approved", "close", "reopen", "merge", "unapproved")
MAX_IN_FLIGHT = 256
REQUEST_TIMEOUT_S = 30.0
IDLE_REUSE_S = 2.0  # below uvicorn's 5 s keep-alive timeout
SEED = 20240807
Source = Literal["gitlab", "jira"]


@dataclass
class Planned:
    """One delivery to send: where, what, and the status a correct Baton answers."""

    kind: str
    source: str
    body: bytes
    headers: dict[str, str]
    expect: int
    key: str  # the delivery key Baton stores it under (bot.dedup.delivery_key)


class Planner:
    """Builds the seeded mix; templates are the recorded fixtures, re-read for every delivery."""

    def __init__(self, rate: float, tickets: Sequence[tuple[str, str]], seed: int) -> None:
        self.rate = rate
        self.tickets = list(tickets)
        self.rng = random.Random(seed)
        self.texts = {
            name: json.dumps(fixture(name))
            for name in (
                "jira/issue_updated_labels.json",
                "jira/comment_created_cloud.json",
                "jira/issue_updated_commented_dc.json",
                "gitlab/push.json",
                "gitlab/merge_request_open.json",
                "gitlab/note_mr_comment.json",
            )
        }
        self.out: list[Planned] = []
        self.commands: list[int] = []  # positions of command comments (for their twins)

    def _template(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.texts[name])
        return data

    def _ticket(self, payload: dict[str, Any]) -> None:
        key, issue_id = self.rng.choice(self.tickets)
        payload["issue"]["key"], payload["issue"]["id"] = key, issue_id
        project = payload["issue"].get("fields", {}).get("project")
        if isinstance(project, dict):
            project["key"] = "DEMO"

    def _add(self, kind: str, source: Source, payload: dict[str, Any], expect: int) -> Planned:
        body = json.dumps(payload).encode()
        if source == "jira":
            headers = jira_headers(body, secret=JIRA_WEBHOOK_SECRET, key=f"load-{self.rng.getrandbits(64):x}")
        else:
            headers = gitlab_headers(
                payload, token=GITLAB_WEBHOOK_SECRET, key=f"load-{self.rng.getrandbits(64):x}"
            )
        planned = Planned(kind, source, body, headers, expect, delivery_key(source, headers, payload, body))
        self.out.append(planned)
        return planned

    def label(self, n: int, label: str, kind: str) -> None:
        payload = self._template("jira/issue_updated_labels.json")
        payload["changelog"]["id"] = str(800_000_000 + n)
        payload["changelog"]["items"][0].update(fromString="", toString=label)
        self._ticket(payload)
        self._add(kind, "jira", payload, 202 if kind == "label-trigger" else 200)

    def comment(self, n: int, text: str, kind: str) -> None:
        payload = self._template("jira/comment_created_cloud.json")
        payload["comment"].update(id=str(700_000_000 + n), body=text)
        self._ticket(payload)
        if kind == "command":
            self.commands.append(len(self.out))
        self._add(kind, "jira", payload, 202 if kind == "command" else 200)

    def twin(self, n: int, earlier: int) -> None:
        """The same comment as an earlier command, as Jira's second delivery (`issue_commented`)."""
        original = json.loads(self.out[earlier].body)
        payload = self._template("jira/issue_updated_commented_dc.json")
        payload["issue"]["key"], payload["issue"]["id"] = original["issue"]["key"], original["issue"]["id"]
        payload["comment"].update(id=original["comment"]["id"], body=original["comment"]["body"])
        self._add("command-twin", "jira", payload, 200)

    def gitlab(self, n: int, kind: str) -> None:
        if kind == "push":
            payload = self._template("gitlab/push.json")
            payload["before"], payload["after"] = payload["after"], f"{self.rng.getrandbits(160):040x}"
        elif kind == "merge-request":
            payload = self._template("gitlab/merge_request_open.json")
            payload["object_attributes"].update(action=self.rng.choice(MR_ACTIONS), iid=1 + n % 50)
            payload["object_attributes"].pop("oldrev", None)
        else:
            payload = self._template("gitlab/note_mr_comment.json")
            payload["object_attributes"].update(id=5_000_000_000 + n, note=self.rng.choice(PLAIN))
        self._add(kind, "gitlab", payload, 200)

    def redeliver(self, earlier: int) -> None:
        first = self.out[earlier]
        self.out.append(Planned("redelivery", first.source, first.body, dict(first.headers), 200, first.key))

    def _earlier(self, n: int, among: Sequence[int] | None = None) -> int | None:
        """A position at least one second of schedule before `n`, or None."""
        limit = n - int(self.rate)
        choices = [i for i in among if i <= limit] if among is not None else None
        if choices is not None:
            return self.rng.choice(choices) if choices else None
        return self.rng.randrange(limit + 1) if limit >= 0 else None

    def build(self, count: int) -> list[Planned]:
        names, weights = zip(*MIX, strict=True)
        for n in range(count):
            kind = self.rng.choices(names, weights)[0]
            if kind == "redelivery" and (earlier := self._earlier(n)) is not None:
                self.redeliver(earlier)
            elif kind == "command-twin" and (earlier := self._earlier(n, self.commands)) is not None:
                self.twin(n, earlier)
            elif kind in ("label-trigger", "label-other"):
                self.label(n, "ai-implement" if kind == "label-trigger" else "frontend", kind)
            elif kind == "command":
                self.comment(n, self.rng.choice(COMMANDS), "command")
            elif kind in ("push", "merge-request", "note"):
                self.gitlab(n, kind)
            else:  # a plain comment, and the fallback for a redelivery or twin with nothing earlier yet
                self.comment(n, self.rng.choice(PLAIN), "comment")
        return self.out


def plan(rate: float, seconds: float, tickets: Sequence[tuple[str, str]], seed: int = SEED) -> list[Planned]:
    return Planner(rate, tickets, seed).build(int(rate * seconds))


# --- the generator (the second process) ---------------------------------------------------------------


class Client:
    """A lean HTTP/1.1 client: keep-alive connections to one host, one request at a time on each.

    The generator shares two CPUs with the processes it measures; httpx spends ~2.5 ms of CPU per
    request, this ~10x less, so the load stays on Baton rather than on its sender.
    """

    def __init__(self, base: str) -> None:
        parsed = urlsplit(base)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.authority = parsed.netloc
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._all: set[asyncio.StreamWriter] = set()

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes, bool]:
        writer.write(request)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, *lines = head.split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        else:
            body = await reader.readexactly(int(fields.get("content-length", "0")))
        return int(status_line.split()[1]), body, fields.get("connection", "").lower() != "close"

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An idle connection the server has not closed and will not close now, else a new one.

        uvicorn closes a keep-alive connection after 5 idle seconds; a request written just then is
        never read. Like httpcore, do not reuse a connection that may be about to go.
        """
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if not reader.at_eof() and now - since < IDLE_REUSE_S:
                return reader, writer
            self._drop(writer)
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._all.add(writer)
        return reader, writer

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        reader, writer = await self._connection()
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.authority}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            status_code, answer, keep = await asyncio.wait_for(
                self._exchange(reader, writer, request), REQUEST_TIMEOUT_S
            )
        except BaseException:
            self._drop(writer)
            raise
        if keep:
            self._idle.append((reader, writer, time.monotonic()))
        else:
            self._drop(writer)
        return status_code, answer

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._all.discard(writer)
        writer.close()

    async def close(self) -> None:
        for writer in list(self._all):
            self._drop(writer)
        self._idle.clear()


async def _send(client: Client, item: Planned, gate: asyncio.Semaphore, record: dict[str, Any]) -> None:
    began = time.perf_counter()
    try:
        code, answer = await client.post(f"/webhooks/{item.source}", item.body, item.headers)
        record["status"] = code
        if code == 202:
            record["run"] = json.loads(answer).get("run")
    except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
        record.setdefault("error", type(exc).__name__)  # no answer, or a 202 whose body is not JSON
    finally:
        record["latency_ms"] = round((time.perf_counter() - began) * 1000, 2)
        gate.release()


async def generate(base: str, items: Sequence[Planned], rate: float) -> dict[str, Any]:
    """Send `items` on a fixed schedule (`rate` per second); one record per delivery."""
    records: list[dict[str, Any]] = [{"kind": i.kind, "source": i.source, "key": i.key} for i in items]
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    loop = asyncio.get_running_loop()
    cpu = time.process_time()
    tasks: list[asyncio.Task[None]] = []
    client = Client(base)
    try:
        start = loop.time() + 0.2
        for n, item in enumerate(items):
            due = start + n / rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            await gate.acquire()
            records[n]["behind_ms"] = round(max(loop.time() - due, 0.0) * 1000, 1)
            tasks.append(asyncio.create_task(_send(client, item, gate, records[n])))
        sent_s = loop.time() - start
        await asyncio.gather(*tasks)
        answered_s = loop.time() - start
    finally:
        await client.close()
    return {
        "sent_s": round(sent_s, 3),
        "answered_s": round(answered_s, 3),
        "cpu_s": round(time.process_time() - cpu, 2),
        "records": records,
    }


def generator_main(args: argparse.Namespace) -> int:
    tickets = [tuple(pair.split("=", 1)) for pair in args.tickets.split(",")]
    items = plan(args.rate, args.seconds, [(k, v) for k, v in tickets], args.seed)
    out = asyncio.run(generate(args.baton, items, args.rate))
    Path(args.out).write_text(json.dumps(out))
    return 0


# --- the orchestration -------------------------------------------------------------------------------


@dataclass
class LoadResult:
    rate: float
    seconds: float
    database: str
    sent: int
    achieved_rate: float  # deliveries sent / time the schedule actually took
    answered_2xx: int
    by_status: dict[str, int]
    server_errors: int  # 5xx
    transport_errors: int  # no answer (timeout, connection error)
    lost: int
    unexpected: int  # answers other than the status a correct Baton gives (duplicates racing, ...)
    late: int  # deliveries sent more than 100 ms behind schedule
    p50_ms: float
    p99_ms: float
    max_ms: float
    runs: int  # runs the load started (the seeded waiting runs not counted)
    runs_by_status: dict[str, int]
    drained: bool
    drain_s: float | None  # last answer -> nothing queued or running, arq queue empty
    comments: int  # the bot's comments on the Jira simulator
    runs_without_comment: int
    effects_twice: int
    serve_cpu_s: float
    worker_cpu_s: float
    generator_cpu_s: float
    by_kind: dict[str, int] = field(default_factory=dict)
    lost_examples: list[str] = field(default_factory=list)
    command: str = ""


async def seed_waiting(db_url: str, tickets: Sequence[tuple[str, str]]) -> set[str]:
    """Migrate, then give every ticket an implement run waiting for a person; returns their ids."""
    engine = create_engine(async_database_url(db_url))
    try:
        await upgrade(engine)
        sm = sessionmaker(engine)
        ids = set()
        for key, issue_id in tickets:
            incoming = inbox.Incoming(
                "jira", f"seed:{key}", "jira:issue_updated", {"seed": key}, "jira:bench"
            )
            action = Enqueue(
                "implement",
                f"jira:{key}",
                f"bench:seed:{key}",
                TicketLabelled(issue_key=key, issue_id=str(issue_id)),
            )
            recorded = await inbox.record(sm, incoming, action)
            assert recorded.run_id is not None
            await runs.settle(sm, recorded.run_id, status.WAITING, "bench", "a proposal waits (seeded)")
            ids.add(recorded.run_id)
        return ids
    finally:
        await engine.dispose()


async def wait_drained(db_url: str, redis_url: str, timeout_s: float) -> float | None:
    """Seconds until nothing is queued or running and arq's queue is empty; None on timeout."""
    engine = create_engine(async_database_url(db_url))
    queue = Queue(connect(redis_url))
    began = time.monotonic()
    try:
        while time.monotonic() - began < timeout_s:
            async with engine.connect() as conn:
                active = (
                    await conn.execute(select(func.count()).where(Run.status.in_(status.ACTIVE)))
                ).scalar_one()
            if not active and not await queue.depth():
                return time.monotonic() - began
            await asyncio.sleep(0.2)
        return None
    finally:
        await queue.close()
        await engine.dispose()


async def stored(db_url: str) -> tuple[set[tuple[str, str]], dict[str, tuple[str, str]]]:
    """The stored delivery keys, and each run's (kind, status)."""
    engine = create_engine(async_database_url(db_url))
    try:
        async with engine.connect() as conn:
            keys = {
                (s, k) for s, k in (await conn.execute(select(Delivery.source, Delivery.dedup_key))).all()
            }
            rows = (await conn.execute(select(Run.id, Run.kind, Run.status))).all()
        return keys, {str(i): (str(k), str(s)) for i, k, s in rows}
    finally:
        await engine.dispose()


def _quantile(values: Sequence[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return round(statistics.quantiles(values, n=100)[q - 1], 2)


def _count_lost(
    records: Sequence[dict[str, Any]], keys: set[tuple[str, str]], run_ids: set[str]
) -> list[str]:
    lost = []
    for r in records:
        code = r.get("status")
        if code is None or not 200 <= code < 300:
            continue
        if (r["source"], r["key"]) not in keys:
            lost.append(f"{r['kind']} {r['source']} {r['key']}: answered {code}, not in the store")
        elif code == 202 and r.get("run") not in run_ids:
            lost.append(f"{r['kind']} {r['source']} {r['key']}: run {r.get('run')} not in the store")
    return lost


def _send_load(
    base: str, rate: float, seconds: float, tickets: Sequence[tuple[str, str]], tmp: Path
) -> dict[str, Any]:
    out = tmp / "generator.json"
    argv = [sys.executable, "-m", "bench.load", "--generate", "--baton", base, "--rate", str(rate)]
    argv += [
        "--seconds",
        str(seconds),
        "--out",
        str(out),
        "--tickets",
        ",".join(f"{k}={i}" for k, i in tickets),
    ]
    subprocess.run(argv, cwd=ROOT, check=True, timeout=seconds * 3 + 120)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def run_bare(rate: float, seconds: float, workdir: Path | None = None) -> dict[str, Any]:
    """The same deliveries, schedule and sender against `bench/bare.py` (answers 202, stores nothing)."""
    tickets = [(f"DEMO-{n}", str(10_000 + n)) for n in range(1, 11)]
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="baton-load-bare-", dir=workdir) as name:
        bare = subprocess.Popen([sys.executable, "-m", "bench.bare", str(port)], cwd=ROOT)
        try:
            wait_port(port)
            cpu = cpu_seconds(bare.pid)
            sent = _send_load(f"http://127.0.0.1:{port}", rate, seconds, tickets, Path(name))
            cpu = cpu_seconds(bare.pid) - cpu
        finally:
            terminate(bare)
    records = sent["records"]
    latencies = sorted(r["latency_ms"] for r in records if r.get("status") is not None)
    return {
        "sent": len(records),
        "answered_2xx": sum(1 for r in records if 200 <= r.get("status", 0) < 300),
        "transport_errors": sum(1 for r in records if r.get("status") is None),
        "p50_ms": _quantile(latencies, 50),
        "p99_ms": _quantile(latencies, 99),
        "max_ms": latencies[-1] if latencies else 0.0,
        "cpu_s": round(cpu, 2),
    }


def run_load(
    rate: float = 200.0,
    seconds: float = 30.0,
    db: str = "sqlite",
    drain_timeout_s: float = 120.0,
    workdir: Path | None = None,
) -> LoadResult:
    """Start the world, send the load from a second process, wait for the drain, count."""
    with tempfile.TemporaryDirectory(prefix="baton-load-", dir=workdir) as name:
        tmp = Path(name)
        redis = RedisServer(tmp / "redis", free_port()).start()
        try:
            with JiraWorld() as world, throwaway_database(db, tmp / "db") as db_url:
                tickets = [(key, world.state.issue(key).id) for key in world.keys]
                seeded = asyncio.run(seed_waiting(db_url, tickets))
                port = free_port()
                env = worker_env(tmp / "state", db_url, redis.url, world.url, port=str(port))
                serve = BatonProcess("serve", env, tmp / "logs")
                try:
                    serve.wait_http(f"http://127.0.0.1:{port}/healthz")
                    with started(1, env, tmp / "logs") as (worker,):
                        cpu = cpu_seconds(serve.process.pid), cpu_seconds(worker.process.pid)
                        sent = _send_load(f"http://127.0.0.1:{port}", rate, seconds, tickets, tmp)
                        drain_s = asyncio.run(wait_drained(db_url, redis.url, drain_timeout_s))
                        serve_cpu = cpu_seconds(serve.process.pid) - cpu[0]
                        worker_cpu = cpu_seconds(worker.process.pid) - cpu[1]
                finally:
                    serve.stop()
                keys, all_runs = asyncio.run(stored(db_url))
                markers = world.bot_comment_keys()
        finally:
            redis.stop()
    return summarize(
        rate, seconds, db, sent, keys, all_runs, seeded, markers, drain_s, (serve_cpu, worker_cpu)
    )


def summarize(
    rate: float,
    seconds: float,
    db: str,
    sent: dict[str, Any],
    keys: set[tuple[str, str]],
    all_runs: dict[str, tuple[str, str]],
    seeded: set[str],
    markers: Counter[str],
    drain_s: float | None,
    cpu: tuple[float, float],
) -> LoadResult:
    records: list[dict[str, Any]] = sent["records"]
    codes = Counter(str(r.get("status", r.get("error"))) for r in records)
    latencies = sorted(r["latency_ms"] for r in records if r.get("status") is not None)
    lost = _count_lost(records, keys, set(all_runs))
    load_runs = {i: ks for i, ks in all_runs.items() if i not in seeded}
    commented = {key.split(":")[1] for key in markers if key.startswith("run:")}
    expected = {"label-trigger": 202, "command": 202}
    unexpected = sum(
        1 for r in records if r.get("status") is not None and r["status"] != expected.get(r["kind"], 200)
    )
    return LoadResult(
        rate=rate,
        seconds=seconds,
        database=db,
        sent=len(records),
        achieved_rate=round(len(records) / max(sent["sent_s"], 1e-9), 1),
        answered_2xx=sum(n for c, n in codes.items() if c.isdigit() and 200 <= int(c) < 300),
        by_status=dict(sorted(codes.items())),
        server_errors=sum(n for c, n in codes.items() if c.isdigit() and int(c) >= 500),
        transport_errors=sum(1 for r in records if r.get("status") is None),
        lost=len(lost),
        unexpected=unexpected,
        late=sum(1 for r in records if r.get("behind_ms", 0) > 100),
        p50_ms=_quantile(latencies, 50),
        p99_ms=_quantile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
        runs=len(load_runs),
        runs_by_status=dict(Counter(s for _k, s in load_runs.values())),
        drained=drain_s is not None,
        drain_s=None if drain_s is None else round(drain_s, 2),
        comments=sum(markers.values()),
        runs_without_comment=sum(1 for i in load_runs if i not in commented),
        effects_twice=sum(1 for n in markers.values() if n > 1),
        serve_cpu_s=round(cpu[0], 2),
        worker_cpu_s=round(cpu[1], 2),
        generator_cpu_s=float(sent.get("cpu_s", 0.0)),
        by_kind=dict(Counter(r["kind"] for r in records)),
        lost_examples=lost[:10],
        command=f"python -m bench.load --rate {rate:g} --seconds {seconds:g} --db {db}",
    )


def report(r: LoadResult) -> str:
    drain = f"{r.drain_s:.2f} s" if r.drain_s is not None else "NOT DRAINED"
    return "\n".join(
        [
            f"sustained load: {r.rate:g} deliveries/s for {r.seconds:g} s, mixed events, from a second "
            f"process against one `baton serve` + one `baton worker`; {r.database}, {os.cpu_count()} CPUs",
            f"{'sent':>6} {'sent/s':>7} {'2xx':>6} {'5xx':>4} {'no answer':>9} {'lost':>5} {'late':>5} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>8} {'runs':>5} {'drain':>8}",
            f"{r.sent:6d} {r.achieved_rate:7.1f} {r.answered_2xx:6d} {r.server_errors:4d} "
            f"{r.transport_errors:9d} {r.lost:5d} {r.late:5d} {r.p50_ms:7.1f} {r.p99_ms:7.1f} "
            f"{r.max_ms:8.1f} {r.runs:5d} {drain:>8}",
            f"answers: {r.by_status}; unexpected {r.unexpected}",
            f"mix: {r.by_kind}",
            f"runs: {r.runs_by_status}; bot comments {r.comments}, runs without one "
            f"{r.runs_without_comment}, posted twice {r.effects_twice}",
            f"CPU during the load and drain: serve {r.serve_cpu_s:.1f} s, worker {r.worker_cpu_s:.1f} s, "
            f"generator {r.generator_cpu_s:.1f} s",
            "late = sent > 100 ms behind schedule (256 in flight); "
            "drain = last answer -> no run queued or running, arq queue empty",
            *(f"lost: {line}" for line in r.lost_examples),
            f"reproduce: {r.command}",
        ]
    )


def comparison(results: Sequence[LoadResult], bare: dict[str, Any] | None) -> str:
    """p99 per store next to the bare endpoint, one line each."""
    lines = [f"{'target':<16} {'sent':>6} {'2xx':>6} {'lost':>5} {'5xx':>4} {'no answer':>9} "
             f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>8} {'CPU s':>6}"]  # fmt: skip
    for r in results:
        lines.append(f"{'baton ' + r.database:<16} {r.sent:6d} {r.answered_2xx:6d} {r.lost:5d} "
                     f"{r.server_errors:4d} {r.transport_errors:9d} {r.p50_ms:7.1f} {r.p99_ms:7.1f} "
                     f"{r.max_ms:8.1f} {r.serve_cpu_s:6.1f}")  # fmt: skip
    if bare is not None:
        lines.append(f"{'bare 202':<16} {bare['sent']:6d} {bare['answered_2xx']:6d} {'-':>5} {'-':>4} "
                     f"{bare['transport_errors']:9d} {bare['p50_ms']:7.1f} {bare['p99_ms']:7.1f} "
                     f"{bare['max_ms']:8.1f} {bare['cpu_s']:6.1f}")  # fmt: skip
    return "\n".join(lines)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=200.0, help="deliveries per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgresql", "all"],
        default="sqlite",
        help="all: SQLite, PostgreSQL and the bare endpoint, one after another in this run",
    )
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="10 s instead of --seconds")
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baton", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--tickets", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.rate <= 2000 or not 1 <= args.seconds <= 600:
        parser.error("--rate must be 1..2000 and --seconds 1..600")
    if args.generate:
        return generator_main(args)
    seconds = 10.0 if args.quick else args.seconds
    stores = ["sqlite", "postgresql"] if args.db == "all" else [args.db]
    before, results = load_average(), []
    for db in stores:
        results.append(run_load(args.rate, seconds, db, args.drain_timeout))
        print(report(results[-1]), flush=True)
    bare = run_bare(args.rate, seconds) if args.db == "all" else None
    after = load_average()
    command = f"python -m bench.load --rate {args.rate:g} --seconds {seconds:g} --db {args.db}"
    print(f"\n{args.rate:g} deliveries/s for {seconds:g} s, same deliveries and sender for each target; "
          f"{os.cpu_count()} CPUs, load average {before} -> {after}", flush=True)  # fmt: skip
    print(comparison(results, bare), flush=True)
    print(f"reproduce: {command}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    document = {
        "command": command,
        "rate": args.rate,
        "seconds": seconds,
        "cpus": os.cpu_count(),
        "load_average": {"before": before, "after": after},
        "stores": [asdict(r) for r in results],
        "bare": bare,
    }
    (RESULTS / "load.json").write_text(json.dumps(document, indent=2) + "\n")
    ok = all(not (r.lost or r.server_errors or r.transport_errors or not r.drained) for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
