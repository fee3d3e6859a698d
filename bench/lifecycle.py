"""End-to-end overhead: label webhook to proposal, minus the time in the agent and in the repo's commands.

Run: `python -m bench.lifecycle [--runs N] [--package django==5.1] [--timeout S] [--scratch DIR]`

Each repository gets one sandbox (GitLab and Jira simulators, the scripted model, a private redis-server)
with Baton's real `serve` and `worker` processes on SQLite, as `tests/e2e/test_ticket_lifecycle.py` runs
them. A person labels a ticket; the bench times, in this process, from sending that label to the proposal
comment appearing on the ticket (`total`). `baton show RUN --json` gives each phase's duration, the time
inside the agent (`agent_s`) and in the repository's format/lint/test commands (`commands_s`);
`overhead = total - agent - commands` is what Baton itself costs. The first ticket on each repository is a
warm-up (cold mirror clone, cold caches) and is reported apart; the medians are over the next N tickets.

The demo repository is `tests/fixtures/demo/lifecycle.yaml`'s calculator. The mid-size one is the
package's sdist in a bare repository (`bench.mechanics.build_remote`, cached under `.baton/bench/`) put in
place of the simulator's `demo/calculator`, plus a `.baton.yml` whose only command is `true`; its scripted
agent writes one new file, so it works on any repository. Figures go to stdout and to
`bench/results/lifecycle.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.mechanics import CACHE, RESULTS, build_remote
from bot.effects import find_jira_marker
from bot.sandbox.demo.scenario import TICKET_KEY
from bot.sandbox.gitlab_sim import repo
from tests.support.processes import cli_json
from tests.support.sandbox import Running, running_sandbox

LIFECYCLE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "demo" / "lifecycle.yaml"
REQUESTER = "dan"
AGENT_PHASES = ("triage", "implement", "review")
STOPS = ("questions", "failed", "needs-human")  # bot comments that end a run without a proposal
BENCH_CONFIG = 'commands:\n  test: ["true"]\n'
NOTE = "BATON_NOTE.md"


class BenchError(RuntimeError):
    """A run did not reach its proposal in time, or stopped without one."""


@dataclass(frozen=True)
class Target:
    """One repository to measure: its scenario and, for the mid-size one, the bare repository to serve."""

    name: str
    scenario: dict[str, Any]
    remote: Path | None = None


@dataclass
class Sample:
    """One ticket, label to proposal; every figure in seconds."""

    ticket: str
    total_s: float
    ingest_s: float  # label request sent -> run committed by the webhook
    agent_s: float
    commands_s: float
    overhead_s: float  # total - agent - commands
    assemble_s: float
    validate_s: float  # the validate phase minus the repository's commands
    propose_s: float
    around_agent_s: float  # agent phases outside the agent call: CLI start-up, worktree fingerprint
    other_s: float  # overhead outside the phases: webhook, queue, acknowledgement, status comments
    phases: dict[str, float]
    estimated: list[str] = field(default_factory=list)


@dataclass
class Row:
    """Medians over the measured tickets of one repository, plus its warm-up ticket."""

    repository: str
    files: int
    total_s: float
    agent_s: float
    commands_s: float
    overhead_s: float
    assemble_s: float
    validate_s: float
    propose_s: float
    around_agent_s: float
    other_s: float
    ingest_s: float
    warmup: Sample
    samples: list[Sample]
    estimated: list[str]  # figures of the measured tickets that rest on a fallback (see `_split`)


@dataclass
class Figures:
    runs: int
    timeout_s: float
    database: str
    cpus: int
    git_version: str
    scratch: str
    rows: list[Row]
    notes: list[str]
    command: str


# --- scenarios -------------------------------------------------------------------------------------------


def demo_scenario() -> dict[str, Any]:
    """lifecycle.yaml with DEMO-1's scripts answering every ticket (the bench labels several)."""
    data: dict[str, Any] = yaml.safe_load(LIFECYCLE.read_text())
    for script in data["model"]["scripts"]:
        if script["match"].endswith(f" {TICKET_KEY}"):
            script["match"] = script["match"].removesuffix(TICKET_KEY)
    return data


def note_scenario() -> dict[str, Any]:
    """A ticket whose scripted agent writes one new file: triage ready, review approves; any repository."""
    write = {"name": "Write", "input": {"file_path": f"{{cwd}}/{NOTE}", "content": "Baton was here.\n"}}
    verdict = {"approve": True, "blockers": [], "suggestions": [], "scope_creep": [], "summary": "One note."}
    return {
        "ticket": {
            "summary": "Add a note at the repository root",
            "description": f"Write {{{{{NOTE}}}}} at the root of the repository saying Baton was here.",
        },
        "repository": {"files": {"README.md": "replaced by the mid-size repository\n"}},
        "model": {
            "scripts": [
                {
                    "match": "[baton:triage] ",
                    "turns": [
                        {"structured_output": {"ready": True, "questions": [], "summary": f"Add {NOTE}"}}
                    ],
                },
                {
                    "match": "[baton:implement] ",
                    "turns": [{"tool_use": write}, {"text": f"Added {NOTE}."}],
                },
                {"match": "[baton:review] ", "turns": [{"structured_output": verdict}]},
            ]
        },
    }


# --- the sandbox -----------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    env = {**os.environ, **repo.ISOLATED_ENV}
    done = subprocess.run(["git", *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise BenchError(f"git {args[:3]} failed: {done.stderr.strip()[:300]}")
    return done.stdout.strip()


def replace_repository(bare: Path, source: Path) -> int:
    """Point the simulator's `main` at `source`'s default branch, plus a `.baton.yml`; returns its files."""
    head = _git(f"--git-dir={source}", "symbolic-ref", "HEAD")
    refspec = f"+{head}:refs/heads/main"
    _git(f"--git-dir={bare}", "fetch", "--quiet", "--force", "--no-tags", str(source), refspec)
    repo.commit_files(bare, "main", {".baton.yml": BENCH_CONFIG}, "Baton configuration for the bench")
    return len(_git(f"--git-dir={bare}", "ls-tree", "-r", "--name-only", "main").splitlines())


def add_ticket(sandbox: Running) -> str:
    """Another issue in project DEMO with the scenario's summary and description; returns its key."""
    state, ticket = sandbox.stack.jira_state, sandbox.stack.world.ticket
    reporter = state.user(REQUESTER).account_id
    return state.add_issue("DEMO", ticket.summary, ticket.description, reporter=reporter).key


def bot_comments(sandbox: Running, key: str, *kinds: str) -> list[str]:
    """The bot's comments on `key` whose effect key names one of `kinds` (`run:ID:proposal:SHA`, …)."""
    out = []
    for body in (c.body for c in sandbox.stack.jira_state.issue(key).comments):
        marker = find_jira_marker(body) or ""
        if any(f":{kind}" in marker for kind in kinds):
            out.append(body)
    return out


def finished_run(sandbox: Running, key: str, deadline: float) -> dict[str, Any]:
    """`baton show --json` of the ticket's implement run once it waits with every phase timed."""
    while True:
        runs = [r for r in cli_json(sandbox.env, "runs") if r["subject"] == f"jira:{key}"]
        implement = [r for r in runs if r["kind"] == "implement"]
        if implement:
            detail: dict[str, Any] = cli_json(sandbox.env, "show", implement[0]["id"])
            if detail["status"] == "waiting" and all(p["duration_s"] is not None for p in detail["phases"]):
                return detail
        if time.monotonic() > deadline:
            raise BenchError(f"{key}: the run did not settle after its proposal: {runs}")
        time.sleep(0.3)


def one_ticket(sandbox: Running, key: str, timeout_s: float, declares_commands: bool) -> Sample:
    """Label `key`, wait for its proposal comment (the bot posts it through the simulator's REST API)."""
    state, deadline = sandbox.stack.jira_state, time.monotonic() + timeout_s
    sent_at = datetime.now(UTC)
    start = time.perf_counter()
    sandbox.label(REQUESTER, key)
    arrived = state.wait_for(lambda: bool(bot_comments(sandbox, key, "proposal", *STOPS)), timeout_s)
    total = time.perf_counter() - start
    if not arrived:
        raise BenchError(
            f"{key}: no proposal within {timeout_s:g} s (raise --timeout?); worker log tail:\n"
            + sandbox.worker.logs()[-3000:]
        )
    stopped = bot_comments(sandbox, key, *STOPS)
    if stopped and not bot_comments(sandbox, key, "proposal"):
        raise BenchError(f"{key}: the run stopped without a proposal: {stopped[0][:500]}")
    return sample(key, total, sent_at, finished_run(sandbox, key, deadline), declares_commands)


# --- figures ---------------------------------------------------------------------------------------------


def _split(phase: dict[str, Any], declares_commands: bool) -> tuple[float, float, str | None]:
    """(agent s, commands s, note) of a phase; a figure the run did not record is the whole phase."""
    name, duration = phase["name"], float(phase["duration_s"])
    agent, commands = float(phase["agent_s"]), float(phase["commands_s"])
    if name in AGENT_PHASES and agent == 0 and duration > 0:
        return duration, 0.0, f"{name}: the run records no agent time; the whole phase counts as agent"
    if name == "validate" and declares_commands and commands == 0 and duration > 0:
        return 0.0, duration, "validate: the run records no command time; the whole phase counts as repo cmd"
    return agent, commands, None


def sample(
    key: str, total: float, sent_at: datetime, detail: dict[str, Any], declares_commands: bool
) -> Sample:
    phases = {p["name"]: float(p["duration_s"]) for p in detail["phases"]}
    split = {p["name"]: _split(p, declares_commands) for p in detail["phases"]}
    agent = sum(a for a, _c, _n in split.values())
    commands = sum(c for _a, c, _n in split.values())
    around = sum(phases[name] - split[name][0] for name in AGENT_PHASES if name in phases)
    validate = phases.get("validate", 0.0) - split.get("validate", (0.0, 0.0, None))[1]
    created = datetime.fromisoformat(detail["created"])
    created = created if created.tzinfo else created.replace(tzinfo=UTC)
    overhead = total - agent - commands
    mechanical = phases.get("assemble", 0.0) + validate + phases.get("propose", 0.0)
    return Sample(
        ticket=key,
        total_s=round(total, 3),
        ingest_s=round((created - sent_at).total_seconds(), 3),
        agent_s=round(agent, 3),
        commands_s=round(commands, 3),
        overhead_s=round(overhead, 3),
        assemble_s=round(phases.get("assemble", 0.0), 3),
        validate_s=round(validate, 3),
        propose_s=round(phases.get("propose", 0.0), 3),
        around_agent_s=round(around, 3),
        other_s=round(overhead - mechanical - around, 3),
        phases={name: round(seconds, 3) for name, seconds in phases.items()},
        estimated=sorted({note for _a, _c, note in split.values() if note}),
    )


MEDIANS = (
    "total_s", "agent_s", "commands_s", "overhead_s", "assemble_s", "validate_s", "propose_s",
    "around_agent_s", "other_s", "ingest_s",
)  # fmt: skip


def row_of(name: str, files: int, samples: list[Sample]) -> Row:
    warmup, measured = samples[0], samples[1:]
    medians = {key: round(statistics.median(getattr(s, key) for s in measured), 3) for key in MEDIANS}
    estimated = sorted({note for s in measured for note in s.estimated})
    return Row(repository=name, files=files, warmup=warmup, samples=measured, estimated=estimated, **medians)


def measure(target: Target, runs: int, timeout_s: float, scratch: Path) -> Row:
    """One sandbox for the repository: a warm-up ticket, then `runs` tickets, one after the other."""
    with tempfile.TemporaryDirectory(dir=scratch, prefix="lifecycle-") as tmp:
        root = Path(tmp).resolve()
        scenario = root / "scenario.yaml"
        scenario.write_text(yaml.safe_dump(target.scenario, sort_keys=False))
        with running_sandbox(root, f"sqlite:///{root / 'baton.db'}", scenario) as sandbox:
            files = len(target.scenario["repository"]["files"])
            if target.remote is not None:
                files = replace_repository(sandbox.stack.demo.project.repo_path, target.remote)
            keys = [TICKET_KEY, *(add_ticket(sandbox) for _ in range(runs))]
            declares = target.remote is not None or ".baton.yml" in target.scenario["repository"]["files"]
            samples = [one_ticket(sandbox, key, timeout_s, declares) for key in keys]
    return row_of(target.name, files, samples)


def checkout_note(rows: list[Row]) -> str | None:
    """Say so when the mid-size repository's worktree checkout is most of its `assemble`."""
    demo, mid = rows
    grown = mid.assemble_s - demo.assemble_s
    if grown < 0.5 * mid.assemble_s:
        return None
    text = (
        f"assemble on {mid.repository} takes {mid.assemble_s:.2f} s against {demo.assemble_s:.2f} s on the "
        f"demo: checking out the worktree of its {mid.files} files dominates it"
    )
    mechanics = RESULTS / "mechanics.json"
    add = None
    if mechanics.is_file():
        by_phase = {r["phase"]: r for r in json.loads(mechanics.read_text()).get("rows", [])}
        add = by_phase.get("job: worktree add (checkout)")
    if add is None:
        return text + " (python -m bench.mechanics times the checkout alone)"
    return text + (
        f" (bench.mechanics timed that checkout alone at median {add['median_s']:.2f} s, min "
        f"{add['min_s']:.2f}, max {add['max_s']:.2f} on this disk: bench/results/mechanics.json)"
    )


COLUMNS = (
    ("total", "total_s", 7), ("agent", "agent_s", 7), ("repo cmd", "commands_s", 9),
    ("overhead", "overhead_s", 9), ("assemble", "assemble_s", 9), ("validate", "validate_s", 9),
    ("propose", "propose_s", 8), ("~agent", "around_agent_s", 7), ("other", "other_s", 7),
    ("ingest", "ingest_s", 7),
)  # fmt: skip
# Which columns a fallback touches: the phase it is about → the columns it makes approximate.
FALLBACK_COLUMNS = {
    **{name: {"agent_s", "overhead_s", "around_agent_s"} for name in AGENT_PHASES},
    "validate": {"commands_s", "overhead_s", "validate_s"},
}


def _line(row: Row) -> str:
    marked = set().union(*(FALLBACK_COLUMNS.get(n.split(":")[0], set()) for n in row.estimated))
    cells = [f"{row.repository:24} {row.files:6d}"]
    for _title, key, width in COLUMNS:
        value = f"{getattr(row, key):.2f}" + ("*" if key in marked else "")
        cells.append(f"{value:>{width}}")
    return " ".join(cells)


def report(figures: Figures) -> str:
    head = " ".join([f"{'repository':24} {'files':>6}", *(f"{t:>{w}}" for t, _k, w in COLUMNS)])
    lines = [
        f"lifecycle: label webhook -> proposal comment, median of {figures.runs} ticket(s) per repository "
        f"after one warm-up; seconds; {figures.database}, {figures.cpus} CPUs, {figures.git_version}",
        head,
        *(_line(r) for r in figures.rows),
        *(
            f"warm-up ticket (cold mirror and caches), {r.repository}: total {r.warmup.total_s:.2f}, "
            f"overhead {r.warmup.overhead_s:.2f}, assemble {r.warmup.assemble_s:.2f}"
            for r in figures.rows
        ),
        "overhead = total - agent - repo cmd = assemble + validate (without the commands) + propose "
        "+ ~agent (agent phases outside the agent call: CLI start-up, worktree fingerprints) "
        "+ other (webhook, queue, acknowledgement and status comments); ingest = label sent -> run committed",
        *(f"note: {note}" for note in figures.notes),
        f"reproduce: {figures.command}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="tickets per repository after the warm-up")
    parser.add_argument("--package", default="django==5.1", help="the mid-size repository (an sdist)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds one ticket may take")
    parser.add_argument("--scratch", type=Path, default=CACHE, help="where the sandboxes and worktrees go")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    CACHE.mkdir(parents=True, exist_ok=True)
    args.scratch.mkdir(parents=True, exist_ok=True)
    targets = [
        Target("demo (calculator)", demo_scenario()),
        Target(f"mid-size ({args.package})", note_scenario(), build_remote(args.package)),
    ]
    try:
        rows = [measure(target, args.runs, args.timeout, args.scratch) for target in targets]
    except BenchError as exc:
        print(f"lifecycle bench failed: {exc}", file=sys.stderr, flush=True)
        return 1
    estimated = sorted({note for r in rows for s in [r.warmup, *r.samples] for note in s.estimated})
    notes = [n for n in [checkout_note(rows)] if n]
    notes += [f"* {n}, so overhead is a lower bound" for n in estimated]
    figures = Figures(
        runs=args.runs,
        timeout_s=args.timeout,
        database="SQLite",
        cpus=os.cpu_count() or 0,
        git_version=_git("--version"),
        scratch=str(args.scratch),
        rows=rows,
        notes=notes,
        command=f"python -m bench.lifecycle --runs {args.runs} --package {args.package} "
        f"--timeout {args.timeout:g} --scratch {args.scratch}",
    )
    print(report(figures), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lifecycle.json").write_text(json.dumps(asdict(figures), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
