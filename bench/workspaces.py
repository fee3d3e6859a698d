"""Warm workspaces: a run's worktree leased warm from the pool versus a fresh `git worktree add`, and the
mechanical overhead per ticket (label to proposal minus the agent's and the repo commands' time) with a
cold and with a warm workspace, in one run on the same repository.

Run: `python -m bench.workspaces [--runs N] [--tickets N] [--package django==5.1] [--scratch DIR]`

Part 1, the workspace alone (in this process, the package's sdist served over smart HTTP as in
`bench.mechanics`): `runs` times a fresh worktree (`Workspace(pool_size=0)`: `git worktree add` of every
file) and `runs` times a warm lease (`pool_size=2`): the previous run's worktree — left with edited,
deleted, untracked and ignored files, and every other round on a base one upstream commit further — is
reset (`checkout --force`, `clean -ffdx`, permission bits) and verified clean (`status --ignored`).

Part 2, end to end (`bench.lifecycle`'s sandbox: real `serve` and `worker`, the real Claude Code CLI on the
scripted model): `tickets` tickets after a warm-up with `BATON_WORKSPACE_POOL=0` (every run checks out a
fresh worktree: COLD) and with the default pool, each proposal rejected before the next ticket so its
worktree returns to the pool (WARM), and the same with a `.baton.yml` that checks out one directory
(`checkout: [django/utils]`: WARM, sparse). Per ticket: overhead = total - agent - repo commands, and the
mechanical steps the runs recorded (`baton show`: fetch, workspace, brief, commit, post).
Figures go to stdout and `bench/results/workspaces.json`.
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from bench.lifecycle import (
    AGENT_PHASES,
    BENCH_CONFIG,
    REQUESTER,
    BenchError,
    add_ticket,
    finished_run,
    note_scenario,
    one_ticket,
    replace_repository,
)
from bench.mechanics import AUTHOR, CACHE, RESULTS, TOKEN, _git, build_remote, timed
from bot.agent.cli_wrapper import bundled_cli
from bot.agent.result import AgentRequest
from bot.agent.runner import run_agent
from bot.containment.host import host_containment
from bot.git.workspace import Workspace
from bot.sandbox.demo.scenario import TICKET_KEY
from bot.sandbox.git_http import GitHttpBackend
from bot.sandbox.gitlab_sim import repo
from bot.sandbox.model_server import ModelServer
from bot.sandbox.scenario import load_scenario
from tests.git.repos import serve
from tests.support.sandbox import Running, running_sandbox

REPO = "bench/repo"
# Where a ticket's overhead goes: the steps its phases recorded (assemble: fetch, workspace, brief; each of
# the three agent calls: agent start, fingerprint, agent end; propose: commit, post), and `other`.
STEPS = ("fetch", "workspace", "brief", "agent start", "fingerprint", "agent end", "commit", "post")
PLAN_SCENARIO = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "scenarios" / "plan.yaml"
AGENT_KEY = "sk-bench-agent-key-0042"
SPARSE_CONFIG = BENCH_CONFIG + "checkout: [django/utils]\n"
MODES = ("cold", "warm", "sparse")
COLUMNS = (*STEPS, "other")
W = 58  # the report's label column


@dataclass
class Spread:
    median_s: float
    min_s: float
    max_s: float
    samples: list[float]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        rounded = [round(s, 4) for s in samples]
        return cls(round(statistics.median(samples), 4), min(rounded), max(rounded), rounded)


@dataclass
class Ticket:
    ticket: str
    total_s: float
    overhead_s: float
    agent_s: float
    commands_s: float
    steps: dict[str, float]  # the runs' own mechanical steps (baton show)
    around_agent: dict[str, float]  # per agent phase: its duration minus the agent's own (CLI start, …)
    validate_s: float = 0.0  # the validate phase minus the repository's commands
    outside_phases_s: float = 0.0  # webhook, queue, pickup, acknowledgement, between and after the phases


@dataclass
class EndToEnd:
    mode: str  # cold | warm
    pool: int
    warmup: Ticket
    tickets: list[Ticket]
    overhead_s: float  # median over `tickets`
    steps: dict[str, float]  # medians over `tickets`
    around_agent_s: float  # median per agent call: phase duration - the agent's reported duration


@dataclass
class Figures:
    package: str
    files: int
    runs: int
    tickets: int
    scratch: str
    git_version: str
    cpus: int
    load_before: list[float]
    load_after: list[float]
    fresh_add: Spread  # git worktree add, a fresh checkout of every file
    fresh_remove: Spread
    warm_lease: Spread  # lease + reset + verify from the pool
    warm_return: Spread  # back into the pool
    lease_speedup: float  # fresh add / warm lease (medians)
    cli_spawn: Spread  # the bundled Claude Code CLI's `--version`: process spawn and load, no sandbox
    agent_start: dict[str, Spread]  # one confined planner call: wall - the agent's own duration, per tree
    end_to_end: list[EndToEnd] = field(default_factory=list)
    overhead_speedup: float | None = None  # fresh add / warm overhead (medians)
    command: str = ""


# --- part 1: the workspace alone -------------------------------------------------------------------------


def dirty(tree: Path, n: int) -> None:
    """What a run leaves behind: edits, a deletion, untracked and ignored files."""
    edited = sorted((tree / "django" / "utils").glob("*.py"))[:3]
    for path in edited:
        path.write_text(path.read_text() + f"\n# run {n}\n")
    (tree / "README.rst").unlink(missing_ok=True)
    (tree / f"NOTE-{n}.md").write_text("untracked\n")
    build = tree / "build" / "lib"
    build.mkdir(parents=True, exist_ok=True)
    for k in range(50):
        (build / f"m{k}.pyc").write_bytes(b"\x00" * 64)


def move_upstream(bare: Path, n: int, scratch: Path) -> None:
    """One upstream commit on `main` touching a handful of files (the base a next run starts from)."""
    work = scratch / f"upstream-{n}"
    _git("clone", "--quiet", str(bare), str(work))
    for path in sorted((work / "django" / "core").glob("*.py"))[:5]:
        path.write_text(path.read_text() + f"\n# upstream {n}\n")
    _git("commit", "--quiet", "--all", "-m", f"upstream {n}", cwd=work)
    _git("push", "--quiet", "origin", "HEAD:main", cwd=work)


async def workspace_alone(bare: Path, url: str, runs: int, scratch: Path) -> dict[str, Spread]:
    fresh = Workspace(scratch / "fresh", AUTHOR, pool_size=0)
    warm = Workspace(scratch / "warm", AUTHOR, pool_size=2)
    for ws in (fresh, warm):
        await ws.ensure_mirror(REPO, url, SecretStr(TOKEN))
    first = await warm.create_worktree(REPO, "warm-0", "main", "baton/BENCH-0")  # cold: fills the pool
    dirty(first, 0)
    await warm.remove_worktree("warm-0")
    adds, removes, leases, returns = [], [], [], []
    for n in range(1, runs + 1):
        if n % 2 == 0:
            move_upstream(bare, n, scratch)
            for ws in (fresh, warm):
                await ws.ensure_mirror(REPO, url, SecretStr(TOKEN))
        adds.append(await timed(fresh.create_worktree(REPO, f"fresh-{n}", "main", f"baton/BENCH-F{n}")))
        removes.append(await timed(fresh.remove_worktree(f"fresh-{n}")))
        leases.append(await timed(warm.create_worktree(REPO, f"warm-{n}", "main", f"baton/BENCH-W{n}")))
        dirty(warm.worktrees / f"warm-{n}", n)
        returns.append(await timed(warm.remove_worktree(f"warm-{n}")))
    return {
        "fresh_add": Spread.of(adds),
        "fresh_remove": Spread.of(removes),
        "warm_lease": Spread.of(leases),
        "warm_return": Spread.of(returns),
    }


# --- part 2: end to end ----------------------------------------------------------------------------------


def _steps(detail: dict[str, Any]) -> dict[str, float]:
    found: dict[str, float] = {}
    for phase in detail["phases"]:
        for name, seconds in (phase.get("mechanics_s") or {}).items():
            found[name] = round(found.get(name, 0.0) + float(seconds), 3)
    return found


def _around_agent(detail: dict[str, Any]) -> dict[str, float]:
    return {
        p["name"]: round(float(p["duration_s"]) - float(p["agent_s"]), 3)
        for p in detail["phases"]
        if p["name"] in AGENT_PHASES and p["duration_s"] is not None and p["agent_s"]
    }


def cli_spawn(runs: int) -> Spread:
    """How long the CLI takes to start and answer `--version` (the floor of every agent call)."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(bundled_cli()), "--version"], capture_output=True, timeout=60, check=True)
        samples.append(time.perf_counter() - start)
    return Spread.of(samples)


class BenchPlan(BaseModel):
    summary: str
    steps: list[dict[str, Any]]


async def agent_calls(runs: int, trees: dict[str, Path]) -> dict[str, Spread]:
    """One planner call (Glob, then a typed answer) through `run_agent`, confined as the worker does,
    against the scripted model: wall time minus the agent's own reported duration, per worktree. On a
    one-file repository that is the start of a call (launcher, bubblewrap, the CLI, the SDK handshake,
    the teardown); on the large one the worktree fingerprints around a read-only call add to it."""
    server = ModelServer(load_scenario(PLAN_SCENARIO), api_key=AGENT_KEY).start()
    found: dict[str, Spread] = {}
    try:
        for label, tree in trees.items():
            samples = []
            for _ in range(runs):
                request = AgentRequest(
                    profile="planner", prompt="BATON-PLAN the ticket", worktree=tree, base_url=server.url,
                    api_key=SecretStr(AGENT_KEY), timeout_s=120, output_model=BenchPlan,
                    environ={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
                    containment=host_containment(),
                )  # fmt: skip
                start = time.perf_counter()
                result = await run_agent(request)
                if result.is_error:
                    raise BenchError(f"the planner call failed: {result.error}")
                samples.append(time.perf_counter() - start - result.duration_ms / 1000)
            found[label] = Spread.of(samples)
    finally:
        server.stop()
    return found


def parked(state: Path) -> int:
    return sum(1 for _ in (state / "workspace" / "pool").glob("*/[0-9]*") if _.is_dir())


def reject_and_wait(sandbox: Running, key: str, state: Path, timeout_s: float) -> None:
    """/reject the proposal and wait until its worktree is back in the pool."""
    before = parked(state)
    sandbox.as_person(REQUESTER, key, "/reject benchmark: return the worktree")
    deadline = time.monotonic() + timeout_s
    while parked(state) <= before:
        if time.monotonic() > deadline:
            raise BenchError(f"{key}: the rejected run's worktree did not return to the pool")
        time.sleep(0.2)


def end_to_end(remote: Path, mode: str, tickets: int, timeout_s: float, scratch: Path) -> EndToEnd:
    """`cold`: no pool; `warm`: the default pool, proposals rejected; `sparse`: warm, and `.baton.yml`
    names one directory to check out (SPARSE_CONFIG)."""
    pool = 0 if mode == "cold" else 2
    with tempfile.TemporaryDirectory(dir=scratch, prefix=f"workspaces-{mode}-") as tmp:
        root = Path(tmp).resolve()
        scenario = root / "scenario.yaml"
        scenario.write_text(yaml.safe_dump(note_scenario(), sort_keys=False))
        db = f"sqlite:///{root / 'baton.db'}"
        with running_sandbox(root, db, scenario, workspace_pool=str(pool)) as sandbox:
            bare = sandbox.stack.demo.project.repo_path
            replace_repository(bare, remote)
            if mode == "sparse":
                repo.commit_files(bare, "main", {".baton.yml": SPARSE_CONFIG}, "the bench: a sparse checkout")
            keys = [TICKET_KEY, *(add_ticket(sandbox) for _ in range(tickets))]
            measured: list[Ticket] = []
            for key in keys:
                sample = one_ticket(sandbox, key, timeout_s, True)
                detail = finished_run(sandbox, key, time.monotonic() + timeout_s)
                measured.append(
                    Ticket(key, sample.total_s, sample.overhead_s, sample.agent_s, sample.commands_s,
                           _steps(detail), _around_agent(detail), sample.validate_s, sample.other_s)
                )  # fmt: skip
                if mode != "cold":
                    reject_and_wait(sandbox, key, root / "state", timeout_s)
    warmup, rest = measured[0], measured[1:]
    steps = {
        name: round(statistics.median(t.steps.get(name, 0.0) for t in rest), 3)
        for name in STEPS
        if any(name in t.steps for t in rest)
    }
    overhead = round(statistics.median(t.overhead_s for t in rest), 3)
    steps["other"] = round(
        statistics.median(t.overhead_s - sum(t.steps.get(n, 0.0) for n in STEPS) for t in rest), 3
    )
    around = round(statistics.median(s for t in rest for s in t.around_agent.values()), 3)
    return EndToEnd(mode, pool, warmup, rest, overhead, steps, around)


# --- report ----------------------------------------------------------------------------------------------


def _spread(label: str, s: Spread) -> str:
    return f"{label:{W}} {s.median_s:9.3f} {s.min_s:9.3f} {s.max_s:9.3f}"


def report(f: Figures) -> str:
    lines = [
        f"workspaces: {f.package} ({f.files} files), {f.cpus} CPUs, {f.git_version}, scratch {f.scratch}, "
        f"load average {f.load_before} -> {f.load_after}",
        f"{'the workspace alone (' + str(f.runs) + ' runs)':{W}} {'median s':>9} {'min s':>9} {'max s':>9}",
        _spread("fresh: git worktree add (every file)", f.fresh_add),
        _spread("fresh: worktree remove", f.fresh_remove),
        _spread("warm: lease (checkout --force, clean, verify)", f.warm_lease),
        _spread("warm: return to the pool", f.warm_return),
        f"fresh worktree add / warm lease (medians) = {f.lease_speedup:.1f}x",
    ]
    if f.end_to_end:
        head = f"{'label -> proposal, ' + str(f.tickets) + ' ticket(s) after a warm-up':{W}} {'overhead':>9} "
        lines.append(head + " ".join(f"{s[-11:]:>11}" for s in COLUMNS) + " ~agent/call  warm-up overhead")
        for e in f.end_to_end:
            cells = " ".join(f"{e.steps.get(s, 0.0):11.2f}" for s in COLUMNS)
            label = f"{e.mode.upper()} workspace (BATON_WORKSPACE_POOL={e.pool})"
            label = "WARM, sparse (checkout: [django/utils])" if e.mode == "sparse" else label
            lines.append(
                f"{label:{W}} {e.overhead_s:9.2f} {cells} {e.around_agent_s:11.2f}  {e.warmup.overhead_s:.2f}"
            )
        for e in f.end_to_end:
            validate = statistics.median(t.validate_s for t in e.tickets)
            outside = statistics.median(t.outside_phases_s for t in e.tickets)
            lines.append(
                f"  {e.mode} 'other' holds: validate around its commands {validate:.2f}, outside the phases "
                f"(webhook, queue, pickup, acknowledgement, between phases) {outside:.2f}, the rest in the "
                "agent phases around the calls (store, cost caps, prompt, the review's diff)"
            )
        if f.overhead_speedup is not None:
            lines.append(
                f"fresh worktree add / WARM overhead per ticket (medians) = {f.overhead_speedup:.1f}x "
                f"(goal: WARM overhead < 1 s and >= 5x under the fresh worktree add)"
            )
        lines.append(
            "overhead = label -> proposal - agent - repo commands (bench.lifecycle), medians in seconds; "
            "steps: what the runs recorded themselves (baton show): fetch/workspace/brief in assemble, "
            "commit/post in propose, and summed over the three agent calls (triage, implement, review): "
            "agent start (launcher, bubblewrap, the CLI's start, the SDK's initialize; the worktree is lent "
            "and fingerprinted meanwhile), fingerprint (what of the read-only runs' fingerprints was not "
            "hidden in the start), agent end (the CLI's exit, reaping); other = overhead - the steps "
            "(webhook, queue, phase records, status comments, validate and review around their work); "
            "~agent/call: an agent phase minus the agent's own duration, median over the three calls"
        )
    lines.append(_spread("Claude Code CLI start (--version, unconfined)", f.cli_spawn))
    for label, spread in f.agent_start.items():
        lines.append(_spread(f"agent call minus the agent's time, {label}", spread))
    lines.append(f"reproduce: {f.command}")
    return "\n".join(lines)


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="fresh adds and warm leases in part 1")
    parser.add_argument("--tickets", type=int, default=2, help="tickets per mode after a warm-up; 0 skips")
    parser.add_argument("--package", default="django==5.1")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--scratch", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 50 or not 0 <= args.tickets <= 20:
        parser.error("--runs must be 1..50 and --tickets 0..20")
    CACHE.mkdir(parents=True, exist_ok=True)
    args.scratch.mkdir(parents=True, exist_ok=True)
    remote = build_remote(args.package)
    load_before = load_average()
    with tempfile.TemporaryDirectory(dir=args.scratch, prefix="workspaces-") as tmp:
        scratch = Path(tmp).resolve()
        bare = scratch / "remote" / "repo.git"
        _git("clone", "--quiet", "--bare", str(remote), str(bare))  # a copy: part 1 moves its main
        with serve(GitHttpBackend(bare.parent, TOKEN)) as base:
            alone = asyncio.run(workspace_alone(bare, f"{base}/{bare.name}", args.runs, scratch))
        tiny = scratch / "tiny"
        _git("init", "--quiet", str(tiny))
        (tiny / "README.md").write_text("# tiny\n")
        _git("add", "README.md", cwd=tiny)
        _git("commit", "--quiet", "-m", "tiny", cwd=tiny)
        large = scratch / "large"
        _git("clone", "--quiet", str(remote), str(large))
        trees = {"1-file repository": tiny, f"{args.package} worktree": large}
        try:
            agent_start = asyncio.run(agent_calls(3, trees))
        except BenchError as exc:
            print(f"workspaces bench failed on the agent calls: {exc}", file=sys.stderr, flush=True)
            return 1
    modes = MODES if args.tickets else ()
    try:
        e2e = [end_to_end(remote, mode, args.tickets, args.timeout, args.scratch) for mode in modes]
    except BenchError as exc:
        print(f"workspaces bench failed end to end: {exc}", file=sys.stderr, flush=True)
        return 1
    warm = next((e for e in e2e if e.mode == "warm"), None)
    add = alone["fresh_add"].median_s
    figures = Figures(
        package=args.package,
        files=len(_git("ls-tree", "-r", "--name-only", "main", cwd=remote).splitlines()),
        runs=args.runs,
        tickets=args.tickets,
        scratch=str(args.scratch),
        git_version=_git("--version"),
        cpus=os.cpu_count() or 0,
        load_before=load_before,
        load_after=load_average(),
        lease_speedup=round(add / alone["warm_lease"].median_s, 1),
        cli_spawn=cli_spawn(3),
        agent_start=agent_start,
        end_to_end=e2e,
        overhead_speedup=round(add / warm.overhead_s, 1) if warm and warm.overhead_s > 0 else None,
        command=f"python -m bench.workspaces --runs {args.runs} --tickets {args.tickets} "
        f"--package {args.package} --scratch {args.scratch}",
        **alone,
    )
    print(report(figures), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "workspaces.json").write_text(json.dumps(asdict(figures), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
