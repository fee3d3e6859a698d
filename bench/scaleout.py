"""Worker scale-out: 1, 2 and 4 real `baton worker` processes draining 1,000 queued `reply` runs.

Run: `python -m bench.scaleout [--runs N] [--workers 1,2,4] [--db postgresql|sqlite]`

Each round starts from nothing: a throwaway database (PostgreSQL by default: several workers share it, as
in production; `bench.inbox.throwaway_database`), a private redis-server (shared by the rounds, flushed),
and a fresh Jira simulator (`bot/sandbox/jira_sim`, seeded with `seed_demo` plus a few more tickets,
served by `ServerThread` in this process). N runs of kind `reply` are committed through
`bot.store.inbox.record` (a `Reply` whose target is a comment on one of the tickets), then the round's
workers are started and waited for (their "worker started" log line), and only then are the N jobs
enqueued. Drain time is from the first enqueue to the last run's final `updated_at`; every run must have
succeeded and the simulator must hold exactly N bot comments, one per run's effect key. Figures go to
stdout and to `bench/results/scaleout.json`.

Everything shares the machine's CPUs, so each round also says where the CPU went per run: the workers,
the PostgreSQL backends serving the round's database, redis-server, this process (the Jira simulator
and the poller), their total, and the whole machine's (well above the total: other processes were busy,
and the round's figures are not the code's alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy import func, select

from bench.inbox import throwaway_database
from bot.effects import find_jira_marker
from bot.queue import Queue, connect
from bot.sandbox import jira_sim
from bot.sandbox.serve import ServerThread
from bot.store import inbox, status
from bot.store.engine import as_utc, create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.store.tables import Run
from bot.triggers import JiraReplyTarget
from config.settings import async_database_url
from handlers.actions import Reply
from tests.support.processes import BatonProcess
from tests.support.servers import RedisServer, free_port

RESULTS = Path(__file__).with_name("results")
JIRA_BOT_TOKEN = "bench-jira-bot-token"
JIRA_BOT_EMAIL = "baton-bot@example.com"
JIRA_WEBHOOK_SECRET = "bench-jira-webhook-secret"
GITLAB_WEBHOOK_SECRET = "bench-gitlab-webhook-secret"
GITLAB_TOKEN = "glpat-bench-unused-token"
TICKETS = 10  # DEMO-1 .. DEMO-10: comments are spread over them
START_TIMEOUT_S = 60.0


class BenchError(RuntimeError):
    """A round did not drain in time, a run did not succeed, or the comments do not match the runs."""


def nodelay(server: ServerThread) -> None:
    """Turn Nagle off on the simulator's listening socket (accepted connections inherit it).

    `ServerThread` binds `socket.socket(AF_INET, SOCK_STREAM)`, whose `proto` is 0, so asyncio's transports
    skip their own TCP_NODELAY (they set it only when `proto == IPPROTO_TCP`); every response after the
    first on a keep-alive connection then waits ~40 ms for the client's delayed ACK. Without this, the
    figures would measure that wait rather than Baton. Harmless once `ServerThread` sets it itself.
    """
    listener = getattr(server, "_socket", None)
    if isinstance(listener, socket.socket):
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class JiraWorld:
    """A seeded Jira simulator on a loopback port (no webhooks registered: nothing calls Baton back)."""

    def __init__(self, tickets: int = TICKETS) -> None:
        self.state = jira_sim.JiraState()
        demo = jira_sim.seed_demo(self.state, bot_token=JIRA_BOT_TOKEN)
        for n in range(max(tickets - 2, 0)):
            self.state.add_issue(
                "DEMO", f"Load ticket {n + 3}", "Benchmark ticket.", reporter=demo.developer.account_id
            )
        self.keys = sorted(self.state.issues, key=lambda k: int(k.split("-")[1]))[:tickets]
        self.server = ServerThread(jira_sim.create_jira_app(self.state))
        nodelay(self.server)

    def __enter__(self) -> JiraWorld:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.base_url

    def bot_comment_keys(self) -> Counter[str]:
        """How many comments carry each effect marker (bot comments only carry one)."""
        with self.state.lock:
            bodies = [c.body for issue in self.state.issues.values() for c in issue.comments]
        return Counter(key for key in map(find_jira_marker, bodies) if key)


def worker_env(state_dir: Path, db_url: str, redis_url: str, jira_url: str, **extra: str) -> dict[str, str]:
    """What `baton serve`/`baton worker` need: store, Redis, the Jira simulator, GitLab settings, a key.

    GitLab points at a closed port: no run of the benchmarks talks to GitLab.
    """
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update(
        BATON_SANDBOX="1",  # the packaged project mapping; nothing else of the sandbox is started
        BATON_STATE_DIR=str(state_dir),
        BATON_DATABASE_URL=db_url,
        BATON_REDIS_URL=redis_url,
        BATON_GITLAB_URL="http://127.0.0.1:9",
        BATON_GITLAB_TOKEN=GITLAB_TOKEN,
        BATON_GITLAB_WEBHOOK_SECRET=GITLAB_WEBHOOK_SECRET,
        BATON_GITLAB_BOT_USERNAME="baton-bot",
        BATON_JIRA_URL=jira_url,
        BATON_JIRA_USER=JIRA_BOT_EMAIL,
        BATON_JIRA_TOKEN=JIRA_BOT_TOKEN,
        BATON_JIRA_WEBHOOK_SECRET=JIRA_WEBHOOK_SECRET,
        BATON_JIRA_BOT_ACCOUNT_ID=jira_sim.demo.BOT_ACCOUNT_ID,
        BATON_ANTHROPIC_API_KEY="bench-unused-model-key",
        BATON_LOG_LEVEL="INFO",
    )
    env.update({f"BATON_{k.upper()}": v for k, v in extra.items()})
    return env


def wait_started(workers: Sequence[BatonProcess], timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    for proc in workers:
        while "worker started" not in proc.logs():
            if proc.process.poll() is not None:
                raise BenchError(f"worker exited with {proc.process.returncode}:\n{proc.logs()[-3000:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"worker not started after {timeout_s} s:\n{proc.logs()[-3000:]}")
            time.sleep(0.05)


@contextlib.contextmanager
def started(n: int, env: dict[str, str], log_dir: Path) -> Iterator[list[BatonProcess]]:
    procs: list[BatonProcess] = []
    try:
        for _ in range(n):
            procs.append(BatonProcess("worker", env, log_dir))
        wait_started(procs)
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux `/proc`; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every process on the machine has used so far (all CPUs, Linux `/proc/stat`; 0 elsewhere):
    set beside the processes a round accounts for, it shows how much of the CPU others took meanwhile."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = sum(fields[3:5])  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def backend_pids(db_url: str) -> list[int]:
    """The PostgreSQL server processes serving the round's database (none on SQLite): on this machine
    their CPU time is what the database spends on the runs."""
    if not db_url.startswith("postgresql"):
        return []
    conn = await asyncpg.connect(db_url.replace("postgresql://", "postgres://", 1), timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [int(row["pid"]) for row in rows]


@dataclass
class CpuMeter:
    """CPU seconds of a round's processes: the workers, the database's backends, redis-server, this
    process (the Jira simulator and the poller), and the whole machine."""

    workers: Sequence[int]
    redis: int | None
    db_url: str
    start: dict[str, float] = field(default_factory=dict)
    backends: dict[int, float] = field(default_factory=dict)

    def _sample(self) -> dict[str, float]:
        return {
            "workers": sum(cpu_seconds(pid) for pid in self.workers),
            "redis": cpu_seconds(self.redis) if self.redis else 0.0,
            "bench": time.process_time(),
            "machine": machine_busy_seconds(),
        }

    def begin(self) -> None:
        self.backends = {pid: cpu_seconds(pid) for pid in asyncio.run(backend_pids(self.db_url))}
        self.start = self._sample()

    def spent(self) -> dict[str, float]:
        """CPU seconds since `begin`, by process group (backends started meanwhile count from zero)."""
        now = self._sample()
        spent = {k: now[k] - self.start[k] for k in now}
        pids = asyncio.run(backend_pids(self.db_url))
        spent["database"] = sum(max(cpu_seconds(pid) - self.backends.get(pid, 0.0), 0.0) for pid in pids)
        return spent


@dataclass
class Round:
    workers: int
    runs: int
    enqueue_s: float
    drain_s: float
    runs_per_s: float
    speedup: float  # runs/s over the 1-worker round's (1.0 when there is none)
    succeeded: int
    comments: int
    worker_cpu_ms_per_run: float  # the workers' CPU time while draining, per run
    bench_cpu_s: float  # this process's CPU time meanwhile (the Jira simulator, the poller)
    database_cpu_ms_per_run: float  # the PostgreSQL backends serving the round's database (0 on SQLite)
    redis_cpu_ms_per_run: float  # the round's redis-server
    total_cpu_ms_per_run: float  # workers + database + redis + this process, per run
    machine_cpu_ms_per_run: float  # every process on the machine, per run: above the total = others' load


async def commit_replies(db_url: str, keys: Sequence[str], runs: int) -> list[str]:
    """N reply runs committed through the durable inbox, as ingest would; returns their ids."""
    engine = create_engine(async_database_url(db_url))
    try:
        await upgrade(engine)
        sm = sessionmaker(engine)
        ids = []
        for n in range(runs):
            key = keys[n % len(keys)]
            incoming = inbox.Incoming("jira", f"hook:scaleout-{n}", "comment_created", {"n": n}, "jira:bench")
            target = JiraReplyTarget(issue_key=key)
            reply = Reply(f"jira:{key}", f"jira:comment:scaleout-{n}", target, f"Scale-out reply {n}.")
            recorded = await inbox.record(sm, incoming, reply)
            if recorded.outcome != inbox.REPLIED or recorded.run_id is None:
                raise BenchError(f"inbox answered {recorded.outcome} for reply {n}")
            ids.append(recorded.run_id)
        return ids
    finally:
        await engine.dispose()


async def enqueue_all(redis_url: str, run_ids: Sequence[str]) -> None:
    queue = Queue(connect(redis_url))
    try:
        for start in range(0, len(run_ids), 50):
            created = await asyncio.gather(*(queue.enqueue_run(r) for r in run_ids[start : start + 50]))
            if not all(created):
                raise BenchError("a job for a fresh run already existed")
    finally:
        await queue.close()


async def wait_drained(db_url: str, timeout_s: float) -> tuple[dict[str, int], datetime]:
    """Poll until no run is queued or running; returns the count by status and the last `updated_at`."""
    engine = create_engine(async_database_url(db_url))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            async with engine.connect() as conn:
                rows = (await conn.execute(select(Run.status, func.count()).group_by(Run.status))).all()
            counts = {str(s): int(n) for s, n in rows}
            if not any(counts.get(s, 0) for s in status.ACTIVE):
                async with engine.connect() as conn:
                    last = (await conn.execute(select(func.max(Run.updated_at)))).scalar_one()
                return counts, as_utc(last)
            if time.monotonic() > deadline:
                raise BenchError(f"runs not drained after {timeout_s} s: {counts}")
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


@dataclass
class Drained:
    enqueue_s: float
    drain_s: float
    succeeded: int
    comments: int
    cpu: dict[str, float]  # CPU seconds while draining, by process group (CpuMeter.spent)


def one_round(workers: int, runs: int, db: str, redis: RedisServer, tmp: Path, timeout_s: float) -> Drained:
    """One worker count, from an empty world."""
    redis.flush()
    with JiraWorld() as world, throwaway_database(db, tmp / f"round-{workers}") as db_url:
        run_ids = asyncio.run(commit_replies(db_url, world.keys, runs))
        env = worker_env(tmp / f"state-{workers}", db_url, redis.url, world.url, sweep_grace_s="3600")
        with started(workers, env, tmp / "logs") as procs:
            redis_pid = redis.process.pid if redis.process else None
            meter = CpuMeter([p.process.pid for p in procs], redis_pid, db_url)
            meter.begin()
            began_wall, began = datetime.now(UTC), time.perf_counter()
            asyncio.run(enqueue_all(redis.url, run_ids))
            enqueue_s = time.perf_counter() - began
            counts, last = asyncio.run(wait_drained(db_url, timeout_s))
            cpu = meter.spent()
        drain_s = (last - began_wall).total_seconds()
        keys = world.bot_comment_keys()
    expected = {f"run:{run_id}:reply" for run_id in run_ids}
    twice = {k: n for k, n in keys.items() if n > 1}
    if counts.get(status.SUCCEEDED, 0) != runs:
        raise BenchError(f"{workers} worker(s): runs by status {counts}, expected {runs} succeeded")
    if twice or set(keys) != expected or sum(keys.values()) != runs:
        raise BenchError(
            f"{workers} worker(s): {sum(keys.values())} comments for {runs} runs; twice: {twice}"
        )
    return Drained(enqueue_s, drain_s, counts[status.SUCCEEDED], sum(keys.values()), cpu)


def run(counts: Sequence[int], runs: int, db: str, timeout_s: float) -> list[Round]:
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="baton-bench-scaleout-") as name:
        tmp = Path(name)
        redis = RedisServer(tmp / "redis", free_port()).start()
        try:
            for workers in counts:
                done = one_round(workers, runs, db, redis, tmp, timeout_s)
                rate = runs / done.drain_s
                per_run = {k: round(v * 1000 / runs, 1) for k, v in done.cpu.items()}
                total = sum(done.cpu[k] for k in ("workers", "database", "redis", "bench"))
                base = next((r.runs_per_s for r in rounds if r.workers == 1), rate if workers == 1 else None)
                rounds.append(
                    Round(
                        workers,
                        runs,
                        round(done.enqueue_s, 3),
                        round(done.drain_s, 3),
                        round(rate, 1),
                        round(rate / base, 2) if base else 1.0,
                        done.succeeded,
                        done.comments,
                        per_run["workers"],
                        round(done.cpu["bench"], 2),
                        per_run["database"],
                        per_run["redis"],
                        round(total * 1000 / runs, 1),
                        per_run["machine"],
                    )
                )
                print(f"  {workers} worker(s): {runs} runs drained in {done.drain_s:.2f} s", flush=True)
        finally:
            redis.stop()
    return rounds


def worker_limits() -> tuple[int, float]:
    """(max_jobs, poll delay s) of the arq worker `baton worker` builds."""
    from config.settings import load_settings
    from shell.worker import create_worker

    env = worker_env(
        Path(tempfile.gettempdir()), "sqlite:///unused.db", "redis://127.0.0.1:9/0", "http://127.0.0.1:9"
    )
    worker = create_worker(load_settings(env), handle_signals=False)
    return int(worker.max_jobs), float(worker.poll_delay_s)


def report(rounds: Sequence[Round], db: str, command: str) -> str:
    max_jobs, poll_s = worker_limits()
    lines = [
        f"worker scale-out: real `baton worker` processes (arq, 4 jobs each) draining queued reply runs "
        f"(one Jira comment each); {db}, {os.cpu_count()} CPUs",
        f"{'workers':>7} {'runs':>6} {'drain s':>8} {'runs/s':>8} {'speedup':>8} "
        f"{'succeeded':>9} {'comments':>9} {'cpu ms/run':>10} {'sim cpu s':>9} "
        f"{'db ms/run':>9} {'redis':>6} {'total':>6} {'machine':>7}",
        *(
            f"{r.workers:7d} {r.runs:6d} {r.drain_s:8.2f} {r.runs_per_s:8.1f} {r.speedup:7.2f}x "
            f"{r.succeeded:9d} {r.comments:9d} {r.worker_cpu_ms_per_run:10.1f} {r.bench_cpu_s:9.2f} "
            f"{r.database_cpu_ms_per_run:9.1f} {r.redis_cpu_ms_per_run:6.1f} {r.total_cpu_ms_per_run:6.1f} "
            f"{r.machine_cpu_ms_per_run:7.1f}"
            for r in rounds
        ),
        "drain = first enqueue -> last run finished (workers already started); "
        "comments = bot comments on the Jira simulator, exactly one per run; cpu ms/run = the workers' CPU "
        "time while draining / runs; sim cpu s = this process's (Jira simulator + poller); db ms/run = the "
        "CPU of the PostgreSQL backends serving the round's database (the workers' and the poller's) per "
        "run; redis = redis-server's; total = workers + db + redis + this process, per run; machine = every "
        "process on the machine per run (well above total: other processes took CPU during the round)",
        f"note: an arq worker with all {max_jobs} slots busy starts new jobs only at its next poll "
        f"({poll_s:g} s), so with runs this short one worker tops out near {max_jobs} / {poll_s:g} = "
        f"{max_jobs / poll_s:g} runs/s however idle its CPU is; n workers can start n times that, but "
        "reach it only while total cpu ms/run x their rate fits in the machine's CPUs",
        f"reproduce: {command}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one round may take to drain")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.workers.split(",") if c.strip()]
    if not 1 <= args.runs <= 20_000 or not counts or any(not 1 <= c <= 16 for c in counts):
        parser.error("--runs must be 1..20000 and each worker count 1..16")
    before = [round(x, 2) for x in os.getloadavg()]
    try:
        rounds = run(counts, args.runs, args.db, args.timeout)
    except BenchError as exc:
        print(f"scale-out bench failed: {exc}", file=sys.stderr, flush=True)
        return 1
    command = f"python -m bench.scaleout --runs {args.runs} --workers {args.workers} --db {args.db}"
    after = [round(x, 2) for x in os.getloadavg()]
    print(report(rounds, args.db, command), flush=True)
    print(
        f"load average (1, 5, 15 min) before {before}, after {after}: other processes share the CPUs",
        flush=True,
    )
    RESULTS.mkdir(exist_ok=True)
    document = {
        "command": command,
        "database": args.db,
        "cpus": os.cpu_count(),
        "load_average": {"before": before, "after": after},
        "worker_max_jobs": worker_limits()[0],
        "worker_poll_delay_s": worker_limits()[1],
        "rounds": [asdict(r) for r in rounds],
    }
    (RESULTS / "scaleout.json").write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
