"""`make bench`: every benchmark in turn, then ONE summary table; also `bench/results/summary.json`.

Run: `python -m bench [--full] [--only ingest,inbox,mechanics,workspaces,scaleout,load,dashboard,search]`

Each benchmark runs as its own process (its output streams through as it goes) and writes its JSON under
`bench/results/`; the summary reads those files back, so every figure in the table is one a benchmark
wrote during this run (a benchmark that failed shows as failed, never with an older figure). Each row
carries the command that reproduces it.

By default (the summary) two benchmarks run in a shorter form than their own defaults, to keep the whole
under about six minutes on a 2-CPU machine: `bench.inbox --quick` (300 ops per target and mode instead
of 1,000) and `bench.mechanics --runs 3 --lifecycle-runs 1` (3 git jobs instead of 5; 1 ticket per
repository after the warm-up instead of 3 for the end-to-end overhead). `--full` runs those at their
defaults. Ingest (2,000 requests), worker scale-out (1,000 runs with 1, 2 and 4 workers), the sustained
load (200 deliveries/s for 30 s), the dashboard (8 pages × 200 requests over 10,000 runs, SQLite and
PostgreSQL) and knowledge search (10k and 100k pages, 300 tickets, the 40-ticket labelled set) always run
in full. Warm workspaces (`bench.workspaces`: 5 fresh adds and warm leases on the Django tree, then 2
tickets after a warm-up with a cold, a warm and a sparse warm workspace; 10 and 3 with `--full`) adds
about six minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results")


@dataclass
class Row:
    bench: str
    figure: str
    value: float | None  # None: no figure, `note` says why
    unit: str
    command: str
    note: str = ""


@dataclass(frozen=True)
class Bench:
    name: str
    argv: tuple[str, ...]  # after `python -m`
    full_argv: tuple[str, ...]
    outputs: tuple[str, ...]  # JSON files under bench/results/ it writes
    timeout_s: float


BENCHES = (
    Bench(
        "ingest",
        ("bench.ingest", "--requests", "2000", "--concurrency", "32", "--db", "sqlite"),
        ("bench.ingest", "--requests", "2000", "--concurrency", "32", "--db", "sqlite"),
        ("ingest-sqlite.json",),
        300,
    ),
    Bench(
        "inbox",
        ("bench.inbox", "--quick"),
        ("bench.inbox",),
        ("inbox.json",),
        300,
    ),
    Bench(
        "mechanics",
        ("bench.mechanics", "--runs", "3", "--lifecycle-runs", "1"),
        ("bench.mechanics", "--runs", "5", "--lifecycle-runs", "3"),
        ("mechanics.json", "lifecycle.json"),
        1200,
    ),
    Bench(
        "workspaces",
        ("bench.workspaces", "--runs", "5", "--tickets", "2"),
        ("bench.workspaces", "--runs", "10", "--tickets", "3"),
        ("workspaces.json",),
        1200,
    ),
    Bench(
        "scaleout",
        ("bench.scaleout", "--runs", "1000", "--workers", "1,2,4"),
        ("bench.scaleout", "--runs", "1000", "--workers", "1,2,4"),
        ("scaleout.json",),
        900,
    ),
    Bench(
        "load",
        ("bench.load", "--rate", "200", "--seconds", "30", "--db", "all"),
        ("bench.load", "--rate", "200", "--seconds", "30", "--db", "all"),
        ("load.json",),
        900,
    ),
    Bench(
        "dashboard",
        ("bench.dashboard", "--runs", "10000", "--requests", "200", "--db", "sqlite,postgresql"),
        ("bench.dashboard", "--runs", "10000", "--requests", "200", "--db", "sqlite,postgresql"),
        ("dashboard.json",),
        900,
    ),
    Bench(
        "search",
        ("bench.search", "--sizes", "10000,100000", "--queries", "300"),
        ("bench.search", "--sizes", "10000,100000", "--queries", "300"),
        ("search.json",),
        600,
    ),
)


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def run_bench(bench: Bench, full: bool) -> dict[str, Any]:
    """Run one benchmark as a child process; which of its JSON files it (re)wrote, its exit code, time."""
    argv = [sys.executable, "-m", *(bench.full_argv if full else bench.argv)]
    print(f"\n== {bench.name}: {' '.join(argv[1:])}", flush=True)
    began, began_wall = time.monotonic(), time.time()
    try:
        code: int | str = subprocess.run(argv, cwd=ROOT, timeout=bench.timeout_s, check=False).returncode
    except subprocess.TimeoutExpired:
        code = f"timed out after {bench.timeout_s:g} s"
    fresh = [
        name
        for name in bench.outputs
        if (RESULTS / name).is_file() and (RESULTS / name).stat().st_mtime >= began_wall
    ]
    return {"exit": code, "seconds": round(time.monotonic() - began, 1), "fresh": fresh}


def _read(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / name).read_text())
    return data


def ingest_rows() -> list[Row]:
    data = _read("ingest-sqlite.json")
    bare, baton = data["figures"][0], data["figures"][-1]
    cmd = data["command"]
    return [
        Row("ingest", "ingest throughput, Baton /webhooks/jira (SQLite)", baton["rps"], "req/s", cmd),
        Row("ingest", "ingest throughput, bare Starlette 202 (same run)", bare["rps"], "req/s", cmd),
        Row("ingest", "ingest throughput ratio Baton / bare", round(baton["rps"] / bare["rps"], 2), "x", cmd),
        Row("ingest", "ingest latency p50, Baton", baton["p50_ms"], "ms", cmd),
        Row("ingest", "ingest latency p99, Baton", baton["p99_ms"], "ms", cmd),
        Row("ingest", "ingest latency p50, bare", bare["p50_ms"], "ms", cmd),
        Row("ingest", "ingest errors, Baton", baton["errors"], "requests", cmd),
    ]


def inbox_rows() -> list[Row]:
    data = _read("inbox.json")
    cmd = data["command"]
    rows = []
    for ratio in data["ratios"]:
        db, mode = ratio["database"], ratio["mode"]
        figures = {f["target"]: f for f in data["figures"] if f["database"] == db and f["mode"] == mode}
        baton, bare = figures["baton"], figures["bare"]
        if mode == "serial":
            rows += [
                Row("inbox", f"inbox commit p50, serial ({db})", baton["p50_ms"], "ms", cmd),
                Row("inbox", f"bare INSERT p50, serial ({db})", bare["p50_ms"], "ms", cmd),
                Row("inbox", f"inbox / bare latency, serial ({db})", ratio["latency_ratio"], "x", cmd),
            ]
        else:
            conc = baton["concurrency"]
            rows += [
                Row("inbox", f"inbox commits, {conc} writers ({db})", baton["ops_per_s"], "ops/s", cmd),
                Row("inbox", f"bare INSERTs, {conc} writers ({db})", bare["ops_per_s"], "ops/s", cmd),
                Row("inbox", f"inbox p99, {conc} writers ({db})", baton["p99_ms"], "ms", cmd),
            ]
    return rows


def mechanics_rows() -> list[Row]:
    data = _read("mechanics.json")
    phases = {r["phase"]: r for r in data["rows"]}
    cmd, pkg = data["command"], data["package"]
    return [
        Row("mechanics", f"git per job: fetch + worktree + cleanup, median ({pkg})",
            phases["job: total"]["median_s"], "s", cmd),
        Row("mechanics", f"plain git clone + delete, median ({pkg})",
            phases["plain git clone + delete"]["median_s"], "s", cmd),
        Row("mechanics", "plain clone / Baton job (medians)", data["ratio"], "x", cmd),
        Row("mechanics", f"first mirror clone, once per worker ({pkg})",
            phases["first mirror clone (once per worker)"]["median_s"], "s", cmd),
    ]  # fmt: skip


def lifecycle_rows() -> list[Row]:
    data = _read("lifecycle.json")
    cmd = data["command"]
    rows = []
    for r in data["rows"]:
        rows += [
            Row("lifecycle", f"mechanical overhead per ticket, {r['repository']}", r["overhead_s"], "s", cmd),
            Row("lifecycle", f"label -> proposal total, {r['repository']}", r["total_s"], "s", cmd),
        ]
    return rows


def workspaces_rows() -> list[Row]:
    data = _read("workspaces.json")
    cmd, pkg = data["command"], data["package"]
    rows = [
        Row("workspaces", f"fresh git worktree add, median ({pkg})", data["fresh_add"]["median_s"], "s", cmd),
        Row("workspaces", f"warm workspace lease (reset + verify), median ({pkg})",
            data["warm_lease"]["median_s"], "s", cmd),
        Row("workspaces", "fresh worktree add / warm lease", data["lease_speedup"], "x", cmd),
    ]  # fmt: skip
    for e in data["end_to_end"]:
        label = f"mechanical overhead per ticket, {e['mode'].upper()} workspace ({pkg})"
        rows.append(Row("workspaces", label, e["overhead_s"], "s", cmd))
    for label, spread in data.get("agent_start", {}).items():
        rows.append(
            Row("workspaces", f"agent call minus the agent's time, {label}", spread["median_s"], "s", cmd)
        )
    if data.get("overhead_speedup") is not None:
        ratio = data["overhead_speedup"]
        rows.append(Row("workspaces", "fresh worktree add / WARM overhead", ratio, "x", cmd))
    return rows


def scaleout_rows() -> list[Row]:
    data = _read("scaleout.json")
    cmd = data["command"]
    rows = []
    for r in data["rounds"]:
        label = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}"
        rows += [
            Row("scaleout", f"drain {r['runs']} queued reply runs, {label} ({data['database']})",
                r["drain_s"], "s", cmd),
            Row("scaleout", f"throughput, {label}", r["runs_per_s"], "runs/s", cmd),
            *([Row("scaleout", f"speedup, {label} / 1 worker (goal >= 1.8 for 2)", r["speedup"], "x", cmd)]
              if r["workers"] > 1 else []),
        ]  # fmt: skip
    return rows


def load_rows() -> list[Row]:
    data = _read("load.json")
    cmd, rows = data["command"], []
    for r in data["stores"]:
        what = f"{r['rate']:g}/s for {r['seconds']:g} s, {r['database']}"
        drained = r["drain_s"] if r["drained"] else None
        rows += [
            Row("load", f"sustained load: deliveries sent ({what})", r["sent"], "deliveries", cmd),
            Row("load", f"sustained load: lost (2xx not in the store, {r['database']})", r["lost"],
                "deliveries", cmd),
            Row("load", f"sustained load: 5xx / no answer ({r['database']})",
                r["server_errors"] + r["transport_errors"], "deliveries", cmd),
            Row("load", f"sustained load: answer latency p50 ({r['database']})", r["p50_ms"], "ms", cmd),
            Row("load", f"sustained load: answer latency p99 ({r['database']})", r["p99_ms"], "ms", cmd),
            Row("load", f"sustained load: queue drained after the last answer ({r['database']}, "
                f"{r['runs']} runs)", drained, "s", cmd, "" if r["drained"] else "NOT drained in time"),
        ]  # fmt: skip
    if data.get("bare"):
        bare = data["bare"]
        rows += [
            Row("load", "sustained load: bare 202 endpoint p50 (same run)", bare["p50_ms"], "ms", cmd),
            Row("load", "sustained load: bare 202 endpoint p99 (same run)", bare["p99_ms"], "ms", cmd),
        ]
    return rows


def dashboard_rows() -> list[Row]:
    data = _read("dashboard.json")
    cmd, rows = data["command"], []
    for database in dict.fromkeys(f["database"] for f in data["figures"]):
        pages = [f for f in data["figures"] if f["database"] == database]
        worst = max(pages, key=lambda f: f["p99_ms"])
        slowest = f"dashboard p99 over {data['runs']:,} runs, slowest page: {worst['page']} ({database})"
        read = data["cost_figures_read_ms"][database]["90 days"]
        background = f"dashboard cost figures over 90 days, read in the background ({database})"
        rows += [
            Row("dashboard", slowest, worst["p99_ms"], "ms", cmd),
            Row("dashboard", f"dashboard p50, runs list ({database})", pages[0]["p50_ms"], "ms", cmd),
            Row("dashboard", background, read, "ms", cmd),
        ]
    return rows


def search_rows() -> list[Row]:
    data = _read("search.json")
    cmd = data["command"]
    rows = []
    for r in data["latency"]:
        if r["method"].startswith("shaped") and "synthetic" in r["over"]:
            rows += [
                Row("search", f"knowledge search p50, {r['size']:,} pages ({r['over']} tickets)",
                    r["p50_ms"], "ms", cmd),
                Row("search", f"knowledge search p99, {r['size']:,} pages", r["p99_ms"], "ms", cmd),
            ]  # fmt: skip
        elif r["method"].startswith("naive") and r["size"] == max(x["size"] for x in data["latency"]):
            rows.append(Row("search", f"naive FTS5 OR p99, {r['size']:,} pages ({r['over']})", r["p99_ms"],
                            "ms", cmd))  # fmt: skip
    for h in data["hit_rate"]:
        if h["method"] != "shaped, no module paths" and h["size"] == max(x["size"] for x in data["hit_rate"]):
            label = "Baton" if h["method"].startswith("shaped") else "naive OR"
            rows.append(Row("search", f"top-3 hit rate, labelled tickets, {h['size']:,} pages ({label})",
                            round(h["rate"] * 100, 1), "%", cmd))  # fmt: skip
    return rows


READERS: dict[str, tuple[Callable[[], list[Row]], ...]] = {
    "ingest": (ingest_rows,),
    "inbox": (inbox_rows,),
    "mechanics": (mechanics_rows, lifecycle_rows),
    "workspaces": (workspaces_rows,),
    "scaleout": (scaleout_rows,),
    "load": (load_rows,),
    "dashboard": (dashboard_rows,),
    "search": (search_rows,),
}


def rows_for(bench: Bench, outcome: dict[str, Any]) -> list[Row]:
    """The bench's rows from the JSON it wrote in this run; a failure row for each missing file."""
    rows: list[Row] = []
    for name, reader in zip(bench.outputs, READERS[bench.name], strict=True):
        figure = f"{bench.name}: {name.removesuffix('.json')}"
        if name not in outcome["fresh"]:
            note = f"FAILED (exit {outcome['exit']}; {name} not written)"
            rows.append(Row(bench.name, figure, None, "", outcome["command"], note))
            continue
        try:
            rows += reader()
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as exc:
            note = f"FAILED: unreadable {name} ({type(exc).__name__}: {exc})"
            rows.append(Row(bench.name, figure, None, "", outcome["command"], note))
    return rows


def _value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,d}" if isinstance(value, int) else f"{value:,.2f}"


def table(rows: Sequence[Row]) -> str:
    width = max(len(r.figure) for r in rows)
    vwidth = max([len(_value(r.value)) for r in rows] + [8])
    lines = [f"{'figure':{width}}  {'value':>{vwidth}}  {'unit':12}  reproduce"]
    for r in rows:
        if r.value is None:  # no figure: say why, across the value and unit columns
            lines.append(f"{r.figure:{width}}  {r.note:{vwidth + 14}}  {r.command}")
        else:
            lines.append(f"{r.figure:{width}}  {_value(r.value):>{vwidth}}  {r.unit:12}  {r.command}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", help="every benchmark at its own defaults")
    parser.add_argument(
        "--only", default="", help="comma-separated subset: " + ",".join(b.name for b in BENCHES)
    )
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHES if not args.only or b.name in args.only.split(",")]
    if args.only and len(chosen) != len(set(args.only.split(","))):
        parser.error(f"--only takes {', '.join(b.name for b in BENCHES)}")
    RESULTS.mkdir(exist_ok=True)
    began, load_before = time.monotonic(), load_average()
    rows: list[Row] = []
    outcomes: dict[str, dict[str, Any]] = {}
    for bench in chosen:
        outcome = run_bench(bench, args.full)
        used = bench.full_argv if args.full else bench.argv
        outcomes[bench.name] = {**outcome, "command": "python -m " + " ".join(used)}
        rows += rows_for(bench, outcomes[bench.name])
    total_s = round(time.monotonic() - began, 1)
    load_after = load_average()
    print(f"\n== summary ({'full' if args.full else 'summary'} mode, {total_s:.0f} s, "
          f"{os.cpu_count()} CPUs, load average {load_before} -> {load_after})", flush=True)  # fmt: skip
    print(table(rows), flush=True)
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "mode": "full" if args.full else "summary",
        "cpus": os.cpu_count(),
        "load_average": {"before": load_before, "after": load_after},
        "total_s": total_s,
        "benches": outcomes,
        "rows": [asdict(r) for r in rows],
    }
    (RESULTS / "summary.json").write_text(json.dumps(document, indent=2) + "\n")
    failed = [name for name, o in outcomes.items() if o["exit"] != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
