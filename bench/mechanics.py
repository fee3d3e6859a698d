"""Git mechanics benchmark: per-job mirror fetch + worktree + cleanup versus a plain clone of Django.

Run: `python -m bench.mechanics [--runs N] [--package django==5.1] [--lifecycle-runs N]`

The remote is a bare repository made once from the package's sdist (cached under `.baton/bench/`) and served
over smart HTTP by the sandbox's git server on 127.0.0.1, with the token going through askpass as in
production. Figures go to stdout and to `bench/results/mechanics.json`. Then, unless `--lifecycle-runs 0`,
the end-to-end overhead figure (label webhook to proposal, on the demo and on this repository) from
`bench.lifecycle`, into `bench/results/lifecycle.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import SecretStr

from bot.git.askpass import askpass_env, install_script
from bot.git.runner import GitRunner
from bot.git.workspace import GitAuthor, Workspace
from bot.sandbox.git_http import GitHttpBackend
from tests.git.repos import serve

CACHE = Path(".baton/bench")
RESULTS = Path(__file__).with_name("results")
TOKEN = "bench-sandbox-token"
AUTHOR = GitAuthor("Baton Bench", "bench@example.test")
FIXED_DATE = "2024-08-07T00:00:00+00:00"


@dataclass
class Row:
    """One timed phase: its samples' median, min and max in seconds."""

    phase: str
    median_s: float
    min_s: float
    max_s: float

    @classmethod
    def of(cls, phase: str, samples: Sequence[float]) -> Row:
        return cls(
            phase, round(statistics.median(samples), 4), round(min(samples), 4), round(max(samples), 4)
        )


@dataclass
class Figures:
    package: str
    files: int
    runs: int
    scratch: str
    git_version: str
    rows: list[Row]
    ratio: float  # plain clone median / job median
    command: str


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    fields = (("NAME", AUTHOR.name), ("EMAIL", AUTHOR.email), ("DATE", FIXED_DATE))
    env |= {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER") for what, value in fields}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=600
    )
    return done.stdout.strip()


def build_remote(package: str) -> Path:
    """`.baton/bench/remote/<name>.git`: the sdist's files committed once on `main` (cached)."""
    name = package.replace("==", "-")
    bare = (CACHE / "remote" / f"{name}.git").resolve()
    if (bare / "HEAD").is_file():
        return bare
    download = CACHE / "downloads"
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*pip, "--dest", str(download), package], check=True, timeout=900)
    stem = package.replace("==", "-").lower()
    (sdist,) = [p for p in download.glob("*.tar.gz") if p.name.lower() == f"{stem}.tar.gz"]
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        with tarfile.open(sdist) as archive:
            archive.extractall(scratch, filter="data")
        (source,) = Path(scratch).iterdir()
        _git("init", "--quiet", "--initial-branch=main", cwd=source)
        _git("add", "--all", cwd=source)
        _git("commit", "--quiet", "-m", f"{package} from its sdist", cwd=source)
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "--quiet", "--bare", str(source), str(bare))
    return bare


async def timed(work: Awaitable[object]) -> float:
    """Seconds `work` takes (a coroutine does nothing until awaited)."""
    start = time.perf_counter()
    await work
    return time.perf_counter() - start


async def job(ws: Workspace, url: str, n: int) -> tuple[float, float, float]:
    """What each Baton job pays: refresh the mirror, add its worktree and branch, clean up."""
    fetch = await timed(ws.ensure_mirror("bench/repo", url, SecretStr(TOKEN)))
    add = await timed(ws.create_worktree("bench/repo", f"bench-{n}", "main", f"baton/BENCH-{n}-job"))
    cleanup = await timed(ws.remove_worktree(f"bench-{n}"))
    return fetch, add, cleanup


async def plain_clone(runner: GitRunner, askpass: dict[str, str], url: str, target: Path) -> None:
    """The naive alternative: a fresh full clone per job, then deleting it."""
    await runner.run(["clone", "--quiet", "--end-of-options", url, str(target)], env=askpass)
    await asyncio.to_thread(shutil.rmtree, target)


async def run(url: str, runs: int, scratch: Path) -> list[Row]:
    """Time the first mirror clone, then `runs` jobs and `runs` plain clones, interleaved."""
    runner = GitRunner()
    ws = Workspace(scratch / "ws", AUTHOR, runner=runner)
    askpass = askpass_env(install_script(scratch / "bin"), url, TOKEN)
    first = await timed(ws.ensure_mirror("bench/repo", url, SecretStr(TOKEN)))
    steps: list[tuple[float, float, float]] = []
    clones: list[float] = []
    for n in range(runs):
        steps.append(await job(ws, url, n))
        clones.append(await timed(plain_clone(runner, askpass, url, scratch / f"clone-{n}")))
    fetch, add, cleanup = zip(*steps, strict=True)
    return [
        Row.of("first mirror clone (once per worker)", [first]),
        Row.of("job: mirror fetch", fetch),
        Row.of("job: worktree add (checkout)", add),
        Row.of("job: worktree remove", cleanup),
        Row.of("job: total", [sum(step) for step in steps]),
        Row.of("plain git clone + delete", clones),
    ]


def report(figures: Figures) -> str:
    return "\n".join(
        [
            f"git mechanics: {figures.package} ({figures.files} files), {figures.runs} runs, "
            f"{figures.git_version}, smart HTTP on 127.0.0.1, workspace in {figures.scratch}",
            f"{'phase':40} {'median s':>9} {'min s':>9} {'max s':>9}",
            *(f"{r.phase:40} {r.median_s:9.3f} {r.min_s:9.3f} {r.max_s:9.3f}" for r in figures.rows),
            f"plain clone / job (medians) = {figures.ratio:.2f}x",
            f"reproduce: {figures.command}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--package", default="django==5.1")
    parser.add_argument("--scratch", type=Path, default=CACHE, help="where the workspace and clones go")
    parser.add_argument(
        "--lifecycle-runs", type=int, default=3, help="tickets per repository for bench.lifecycle; 0 skips it"
    )
    args = parser.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    bare = build_remote(args.package)
    args.scratch.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=args.scratch) as scratch,
        serve(GitHttpBackend(bare.parent, TOKEN)) as base,
    ):
        rows = asyncio.run(run(f"{base}/{bare.name}", args.runs, Path(scratch)))
    by_phase = {row.phase: row for row in rows}
    figures = Figures(
        package=args.package,
        files=len(_git("ls-tree", "-r", "--name-only", "main", cwd=bare).splitlines()),
        runs=args.runs,
        scratch=str(args.scratch),
        git_version=_git("--version"),
        rows=rows,
        ratio=round(by_phase["plain git clone + delete"].median_s / by_phase["job: total"].median_s, 2),
        command=f"python -m bench.mechanics --runs {args.runs} --package {args.package} "
        f"--scratch {args.scratch}",
    )
    print(report(figures), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mechanics.json").write_text(json.dumps(asdict(figures), indent=2) + "\n")
    if not args.lifecycle_runs:
        return 0
    from bench import lifecycle  # here, not at the top: bench.lifecycle imports this module

    lifecycle_args = ["--runs", str(args.lifecycle_runs), "--package", args.package]
    return lifecycle.main([*lifecycle_args, "--scratch", str(args.scratch)])


if __name__ == "__main__":
    sys.exit(main())
