"""Running the repository's format, lint and test commands in a worktree, and trimming what failed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot.agent.process import family, kill_run, process_table, wait_gone
from bot.containment.host import Containment
from bot.repo_config import STAGES, RepoConfig, Stage

Status = Literal["passed", "failed", "timed_out", "error", "skipped"]
Confine = Callable[[list[str]], list[str]]  # a command's argv → the argv that runs it in the sandbox

OUTPUT_CAP = 256 * 1024
HEAD_KEEP = 16 * 1024
DRAIN_S = 2.0
SUMMARY_LINES = 80
SUMMARY_CHARS = 6000
READ_CHUNK = 64 * 1024
GROUP_WAIT_S = 5.0
POLL_S = 0.02

_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# What the sandbox prints when it cannot exec the command (setpriv as root, bwrap otherwise).
_EXEC_FAILED_RE = re.compile(r"\A(?:setpriv: failed to execute|bwrap: execvp) (.{0,300})")
_PYTEST_SECTION_RE = re.compile(r"^=+ (?:FAILURES|ERRORS) =+$", re.MULTILINE)
_PYTEST_SUMMARY_RE = re.compile(r"^=+ short test summary info =+$", re.MULTILINE)


@dataclass(frozen=True)
class CommandSpec:
    stage: Stage
    command: str


@dataclass(frozen=True)
class CommandResult:
    """What one command did, and what it printed (stdout and stderr together, capped).

    `status` is `passed`, `failed` (non-zero exit), `timed_out`, `error` (could not be started) or
    `skipped` (an earlier stage failed).
    """

    stage: Stage
    command: str
    status: Status
    exit_code: int | None = None
    output: str = ""
    duration_s: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "timed_out", "error")


def specs_from(cfg: RepoConfig) -> list[CommandSpec]:
    """The repository's commands in run order."""
    return [CommandSpec(stage, command) for stage, command in cfg.commands.staged()]


class _Capture:
    """Keeps the first `HEAD_KEEP` bytes and the last bytes up to `cap` in total; counts the rest."""

    def __init__(self, cap: int) -> None:
        self.head_cap = min(HEAD_KEEP, cap // 2)
        self.tail_cap = cap - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        if len(self.tail) > 2 * self.tail_cap:
            del self.tail[: len(self.tail) - self.tail_cap]

    @property
    def truncated(self) -> bool:
        return self.total > self.head_cap + self.tail_cap

    def text(self) -> str:
        tail = self.tail[-self.tail_cap :] if self.tail_cap else b""
        omitted = self.total - len(self.head) - len(tail)
        middle = f"\n[… {omitted:,} bytes of output omitted …]\n".encode() if omitted > 0 else b""
        return bytes(self.head + middle + tail).decode("utf-8", "replace")


async def _pump(stream: asyncio.StreamReader, capture: _Capture) -> None:
    while chunk := await stream.read(READ_CHUNK):
        capture.add(chunk)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    return any(p.pgid == pgid for p in process_table())


async def end_group(pgid: int, timeout_s: float = GROUP_WAIT_S) -> bool:
    """SIGKILL a command's process group and wait until none of it runs; False if something survived.

    The group holds the command and everything it started that did not leave the group on purpose.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        _kill_group(pgid)
        if not _group_alive(pgid):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)


async def _exited(proc: asyncio.subprocess.Process, timeout_s: float) -> bool:
    """Poll for the command's own exit; False when `timeout_s` passed first.

    asyncio's `wait()` also waits for the output pipe to close, which a background child can delay.
    """
    deadline = time.monotonic() + timeout_s
    while proc.returncode is None:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(POLL_S, left))
    return True


async def _reap(marker: bytes | None) -> None:
    """End whatever still carries the command's marker: a sandbox child that bubblewrap started but
    had not yet tied to its own life (--die-with-parent) when bubblewrap was killed is orphaned."""
    if marker is not None:
        await kill_run(None, marker, grace_s=1.0)


async def _finish(proc: asyncio.subprocess.Process, reader: asyncio.Task[None], marker: bytes | None) -> None:
    """End the process group and collect the rest of the output.

    A process that escaped the group (setsid) may hold the pipe open: after `DRAIN_S` the pipe is closed.
    The sandbox's own processes (another session, inside its pid namespace) are ended with it and
    waited for too, so nothing of the command outlives this call.
    """
    tree = family({proc.pid}, process_table()) - {os.getpid()}
    for pid in tree:  # at once, before the first await: a cancelled caller does not wait for the rest
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    await end_group(proc.pid)
    await wait_gone(tree, GROUP_WAIT_S)
    await _reap(marker)
    done, _ = await asyncio.wait({reader}, timeout=DRAIN_S)
    if not done:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
    with contextlib.suppress(ProcessLookupError, TimeoutError):
        await asyncio.wait_for(proc.wait(), DRAIN_S)


async def _start(argv: list[str], worktree: Path, environ: Mapping[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=worktree,
        env=dict(environ),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )


async def run_one(
    worktree: Path,
    spec: CommandSpec,
    *,
    environ: Mapping[str, str],
    timeout_s: float,
    confine: Confine,
    cap: int = OUTPUT_CAP,
) -> CommandResult:
    """Run one command (argv from `shlex.split`, never a shell) confined, in its own process group."""
    started = time.monotonic()
    try:
        argv = shlex.split(spec.command)
        if not argv:
            raise ValueError("empty command")
        proc = await _start(confine(argv), worktree, environ)
    except (OSError, ValueError) as exc:
        return CommandResult(spec.stage, spec.command, "error", output=f"cannot run the command: {exc}")
    except asyncio.CancelledError:  # cancelled while starting: asyncio killed bwrap, maybe not its child
        await asyncio.shield(_reap(_marker(environ)))
        raise
    capture = _Capture(cap)
    assert proc.stdout is not None
    reader = asyncio.create_task(_pump(proc.stdout, capture))
    try:
        timed_out = not await _exited(proc, timeout_s)
    finally:
        await asyncio.shield(_finish(proc, reader, _marker(environ)))
    duration = time.monotonic() - started
    status: Status = "timed_out" if timed_out else ("passed" if proc.returncode == 0 else "failed")
    exit_code = None if timed_out else proc.returncode
    output = capture.text()
    unstarted = _EXEC_FAILED_RE.match(output) if status == "failed" and exit_code in (1, 126, 127) else None
    if unstarted:
        return CommandResult(
            spec.stage, spec.command, "error", output=f"cannot run the command: {unstarted[1]}"
        )
    return CommandResult(spec.stage, spec.command, status, exit_code, output, duration, capture.truncated)


def _marker(environ: Mapping[str, str]) -> bytes | None:
    """The environment entry every process of one `run_commands` call carries (its private TMPDIR)."""
    return f"TMPDIR={environ['TMPDIR']}".encode() if environ.get("TMPDIR") else None


def _stage_rank(spec: CommandSpec) -> int:
    return STAGES.index(spec.stage)


async def run_commands(
    worktree: Path,
    commands: Sequence[CommandSpec],
    *,
    environ: Mapping[str, str],
    timeout_s: float,
    containment: Containment,
    output_cap: int = OUTPUT_CAP,
) -> list[CommandResult]:
    """Run the commands format → lint → test, each with `timeout_s`, and report every one.

    After a command fails, the rest of its stage still runs (one round shows all lint errors), and
    every later stage is reported as skipped. `environ` is the whole environment the commands get,
    plus a private HOME/TMPDIR; they run in `containment`, able to write only the worktree and that.
    """
    with tempfile.TemporaryDirectory(prefix="baton-checks-") as scratch, containment.lend(worktree):
        private = Path(scratch)
        containment.give(private)
        env = {**environ, "HOME": scratch, "TMPDIR": scratch}

        def confine(argv: list[str]) -> list[str]:
            return containment.wrap(argv, cwd=worktree, writable=[worktree, private])

        return await _run_stages(worktree, commands, env, timeout_s, confine, output_cap)


async def _run_stages(
    worktree: Path,
    commands: Sequence[CommandSpec],
    environ: Mapping[str, str],
    timeout_s: float,
    confine: Confine,
    output_cap: int,
) -> list[CommandResult]:
    results: list[CommandResult] = []
    failed_stage: Stage | None = None
    for spec in sorted(commands, key=_stage_rank):
        if failed_stage is not None and spec.stage != failed_stage:
            results.append(CommandResult(spec.stage, spec.command, "skipped"))
            continue
        result = await run_one(
            worktree, spec, environ=environ, timeout_s=timeout_s, confine=confine, cap=output_cap
        )
        results.append(result)
        if result.failed and failed_stage is None:
            failed_stage = spec.stage
    return results


def clean_output(text: str) -> str:
    """No ANSI escapes, carriage-return progress redraws collapsed to their last state, no control bytes."""
    text = _ANSI_RE.sub("", text.replace("\r\n", "\n"))
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
    return _CONTROL_RE.sub("", "\n".join(lines)).strip("\n")


def tail(text: str, *, max_lines: int = SUMMARY_LINES, max_chars: int = SUMMARY_CHARS) -> str:
    """The last lines of `text` within both limits, with a note of how much was left out."""
    lines = text.split("\n")
    kept: list[str] = []
    size = 0
    for line in reversed(lines[-max_lines:] if max_lines > 0 else []):
        if size + len(line) + 1 > max_chars:
            break
        kept.append(line)
        size += len(line) + 1
    if not kept and lines and max_chars > 0:
        kept = [lines[-1][-max_chars:]]
    omitted = len(lines) - len(kept)
    note = [f"[… {omitted} earlier lines omitted …]"] if omitted > 0 else []
    return "\n".join(note + kept[::-1])


def head(text: str, *, max_lines: int, max_chars: int) -> str:
    lines = text.split("\n")
    kept: list[str] = []
    size = 0
    for line in lines[:max_lines]:
        if size + len(line) + 1 > max_chars:
            break
        kept.append(line)
        size += len(line) + 1
    omitted = len(lines) - len(kept)
    return "\n".join(kept + ([f"[… {omitted} more lines omitted …]"] if omitted > 0 else []))


def _pytest_part(text: str, max_lines: int, max_chars: int) -> str | None:
    """pytest's FAILURES/ERRORS section: the first failure in full and the short test summary."""
    section = _PYTEST_SECTION_RE.search(text)
    summary = _PYTEST_SUMMARY_RE.search(text)
    if section is None or summary is None or summary.start() < section.start():
        return None
    short = tail(text[summary.start() :], max_lines=max_lines // 2, max_chars=max_chars // 2)
    budget_lines = max_lines - short.count("\n") - 2
    budget_chars = max_chars - len(short) - 60
    first = head(
        text[section.start() : summary.start()].rstrip("\n"), max_lines=budget_lines, max_chars=budget_chars
    )
    return f"{first}\n{short}"


def trim_output(text: str, *, max_lines: int = SUMMARY_LINES, max_chars: int = SUMMARY_CHARS) -> str:
    """Cut command output to what matters: pytest's failures and summary, else the last lines."""
    cleaned = clean_output(text)
    pytest_part = _pytest_part(cleaned, max_lines, max_chars)
    return pytest_part if pytest_part is not None else tail(cleaned, max_lines=max_lines, max_chars=max_chars)


def _outcome(result: CommandResult) -> str:
    if result.status == "timed_out":
        return f"timed out after {result.duration_s:.0f} s and was killed"
    if result.status == "error":
        return "could not be run"
    return f"failed with exit status {result.exit_code}"


def summarize_failure(results: Sequence[CommandResult], *, max_chars: int = SUMMARY_CHARS) -> str:
    """What failed and why, trimmed for the implementer's next round; "" when nothing failed."""
    failing = [r for r in results if r.failed]
    if not failing:
        return ""
    share = max(400, max_chars // len(failing) - 200)
    blocks = [
        f"$ {r.command}\n({r.stage}) {_outcome(r)}:\n{trim_output(r.output, max_chars=share)}"
        for r in failing
    ]
    skipped = [r.command for r in results if r.status == "skipped"]
    if skipped:
        blocks.append("Not run because an earlier stage failed: " + ", ".join(skipped))
    text = "\n\n".join(blocks)
    return (
        text if len(text) <= max_chars else text[: max_chars - 40] + "\n[… summary cut at the size limit …]"
    )
