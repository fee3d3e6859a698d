"""Validation runs real commands: exit codes, stage order, exact environment, timeouts that leave no
process behind, capped output, and failure summaries trimmed to what matters."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from bot.agent.process import process_table
from bot.containment.host import host_containment
from bot.repo_config import parse_repo_config
from orchestrators.validate import (
    SUMMARY_CHARS,
    CommandResult,
    CommandSpec,
    clean_output,
    run_commands,
    run_one,
    specs_from,
    summarize_failure,
    trim_output,
)

PY = sys.executable
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
CONTAINMENT = host_containment()  # the real OS sandbox, as the worker builds it


def py(code: str) -> str:
    return f'{PY} -c "{code}"'


def running(token: str) -> set[int]:
    """Live processes whose command line holds `token` (seen from the host, sandboxed or not)."""
    found: set[int] = set()
    for info in process_table():
        try:
            if token.encode() in Path(f"/proc/{info.pid}/cmdline").read_bytes():
                found.add(info.pid)
        except OSError:
            continue
    return found


def unique_sleep() -> str:
    """A `sleep` argument no other process has, so the test can find exactly its own sleepers."""
    return f"30.{uuid.uuid4().int % 10**9:09d}"


async def run(
    tmp_path: Path, *specs: CommandSpec, timeout_s: float = 30, cap: int = 256 * 1024
) -> list[CommandResult]:
    return await run_commands(
        tmp_path, list(specs), environ=ENV, timeout_s=timeout_s, containment=CONTAINMENT, output_cap=cap
    )


@pytest.mark.parametrize(
    ("code", "status", "exit_code"),
    [
        ("print('ok')", "passed", 0),
        ("import sys; sys.exit(3)", "failed", 3),
        ("raise SystemExit('boom')", "failed", 1),
        (
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
            "failed",
            128 + 9,
        ),  # as the sandbox reports it
    ],
)
async def test_exit_status_decides_pass_or_fail(
    tmp_path: Path, code: str, status: str, exit_code: int
) -> None:
    [result] = await run(tmp_path, CommandSpec("test", py(code)))
    assert (result.status, result.exit_code) == (status, exit_code)
    assert result.ok is (status == "passed")


async def test_stdout_and_stderr_are_captured_together(tmp_path: Path) -> None:
    code = "import sys; print('out', flush=True); print('err', file=sys.stderr, flush=True); print('out2')"
    [result] = await run(tmp_path, CommandSpec("lint", py(code)))
    assert result.output.split() == ["out", "err", "out2"]


async def test_the_command_gets_exactly_the_given_environment(tmp_path: Path) -> None:
    env_program = shutil.which("env")
    assert env_program is not None
    results = await run_commands(
        tmp_path,
        [CommandSpec("test", env_program)],
        environ={"PATH": "/usr/bin:/bin", "ONLY": "1"},
        timeout_s=10,
        containment=CONTAINMENT,
    )
    lines = sorted(results[0].output.split())
    home = lines[0].removeprefix("HOME=")
    assert lines == [f"HOME={home}", "ONLY=1", "PATH=/usr/bin:/bin", f"PWD={tmp_path}", f"TMPDIR={home}"]
    assert home.startswith(f"{tempfile.gettempdir()}/baton-checks-")  # private, made for this run


async def test_commands_run_in_the_worktree_without_a_shell(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print(sys.argv[1:])"
    [result] = await run(tmp_path, CommandSpec("test", f'{py(code)} "a b" \'$HOME\' ";" "&&" "|"'))
    cwd, argv = result.output.strip().split("\n")
    assert Path(cwd) == tmp_path
    assert argv == "['a b', '$HOME', ';', '&&', '|']"


async def test_a_failing_stage_skips_later_stages_but_finishes_its_own(tmp_path: Path) -> None:
    results = await run(
        tmp_path,
        CommandSpec("test", py("print('never')")),
        CommandSpec("lint", py("import sys; sys.exit(1)")),
        CommandSpec("format", py("print('formatted')")),
        CommandSpec("lint", py("print('second lint runs')")),
    )
    assert [(r.stage, r.status) for r in results] == [
        ("format", "passed"),
        ("lint", "failed"),
        ("lint", "passed"),
        ("test", "skipped"),
    ]
    assert results[2].output.strip() == "second lint runs"
    assert results[3].output == ""


async def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    nap = unique_sleep()
    spec = CommandSpec("lint", f"sh -c 'sleep {nap} & sleep {nap} & wait'")
    started = time.monotonic()
    results = await run(tmp_path, spec, CommandSpec("test", py("print('next')")), timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert results[0].status == "timed_out" and results[0].exit_code is None
    assert results[1].status == "skipped"
    assert not running(nap)


async def test_a_background_child_cannot_hold_the_run_open(tmp_path: Path) -> None:
    nap = unique_sleep()
    spec = CommandSpec("test", f"sh -c 'sleep {nap} & echo done'")
    started = time.monotonic()
    [result] = await run(tmp_path, spec)
    assert time.monotonic() - started < 3
    assert (result.status, result.output) == ("passed", "done\n")
    assert not running(nap)


async def test_cancelling_a_run_kills_its_process_group(tmp_path: Path) -> None:
    nap = unique_sleep()
    spec = CommandSpec("test", f"sh -c 'exec sleep {nap}'")
    confine = lambda argv: CONTAINMENT.wrap(argv, cwd=tmp_path, writable=[tmp_path])  # noqa: E731
    env = {**ENV, "TMPDIR": str(tmp_path)}  # as run_commands gives: the mark of the command's processes
    task = asyncio.create_task(run_one(tmp_path, spec, environ=env, timeout_s=30, confine=confine))
    for _ in range(200):
        if running(nap):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the cancelled caller returns at once; the command's processes are already killed and end shortly
    for _ in range(250):
        if not running(nap):
            break
        await asyncio.sleep(0.02)
    assert not running(nap)


async def test_output_is_capped_keeping_the_start_and_the_end(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.write('START' + 'x' * 3_000_000 + 'END')"
    [result] = await run(tmp_path, CommandSpec("test", py(code)), cap=10_000)
    assert result.truncated
    assert result.output.startswith("START") and result.output.endswith("END")
    assert "bytes of output omitted" in result.output
    assert len(result.output) < 10_200


async def test_binary_output_is_decoded_safely(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.buffer.write(bytes([0, 255, 254]) + 'é✓'.encode())"
    [result] = await run(tmp_path, CommandSpec("test", py(code)))
    assert result.output == "\x00\ufffd\ufffdé✓"


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ('pytest "unclosed', "No closing quotation"),
        ("", "empty command"),
        ("   ", "empty command"),
        ("/nonexistent/program --flag", "No such file"),
        ("./not-executable", "Permission denied"),
    ],
)
async def test_commands_that_cannot_run_are_errors(tmp_path: Path, command: str, reason: str) -> None:
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    results = await run(tmp_path, CommandSpec("lint", command), CommandSpec("test", py("print(1)")))
    assert results[0].status == "error"
    assert reason in results[0].output
    assert results[1].status == "skipped"


def test_specs_come_from_the_repo_config_in_stage_order() -> None:
    cfg = parse_repo_config("commands: {test: pytest, format: [ruff format .], lint: ruff check}\n")
    assert specs_from(cfg) == [
        CommandSpec("format", "ruff format ."),
        CommandSpec("lint", "ruff check"),
        CommandSpec("test", "pytest"),
    ]


PYTEST_PROJECT = """
import pytest

def test_passes():
    assert 1 + 1 == 2

def test_divide_by_zero():
    assert 1 / 0 == 0

@pytest.mark.parametrize("n", range(40))
def test_many(n):
    assert n < 39, f"n was {n}"
"""


async def test_a_failing_pytest_run_is_summarised_to_its_failures(tmp_path: Path) -> None:
    (tmp_path / "test_calc.py").write_text(PYTEST_PROJECT)
    spec = CommandSpec("test", f"{PY} -m pytest -p no:cacheprovider --color=yes test_calc.py")
    [result] = await run(tmp_path, spec)
    assert result.status == "failed" and result.exit_code == 1
    summary = summarize_failure([result])
    assert summary.startswith(f"$ {spec.command}\n(test) failed with exit status 1:\n")
    assert "= FAILURES =" in summary
    assert "ZeroDivisionError" in summary
    assert "short test summary info" in summary
    assert "FAILED test_calc.py::test_many[39] - AssertionError: n was 39" in summary
    assert "2 failed, 40 passed" in summary
    assert "test session starts" not in summary  # the noise before the failures is gone
    assert "\x1b" not in summary
    assert len(summary) <= SUMMARY_CHARS


def test_generic_output_keeps_the_last_lines_without_escapes() -> None:
    output = "\n".join(f"\x1b[1;31mline {i}\x1b[0m" for i in range(500))
    trimmed = trim_output(output)
    lines = trimmed.split("\n")
    assert lines[0] == "[… 420 earlier lines omitted …]"
    assert lines[1] == "line 420" and lines[-1] == "line 499"
    assert "\x1b" not in trimmed


def test_generic_output_is_capped_in_size() -> None:
    trimmed = trim_output("\n".join("y" * 1000 for _ in range(100)))
    assert len(trimmed) <= SUMMARY_CHARS + 60


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("progress 10%\rprogress 50%\rprogress 100%\ndone", "progress 100%\ndone"),
        ("a\r\nb\r\n", "a\nb"),
        ("\x1b]0;title\x07text \x1b[2Kmore", "text more"),
        ("nul\x00bell\x07tab\tok", "nulbelltab\tok"),
    ],
)
def test_output_is_cleaned_of_terminal_noise(raw: str, cleaned: str) -> None:
    assert clean_output(raw) == cleaned


def test_summary_is_empty_when_everything_passed() -> None:
    assert summarize_failure([CommandResult("test", "pytest", "passed", 0, "ok")]) == ""
    assert summarize_failure([]) == ""


def test_summary_names_timeouts_errors_and_skipped_commands() -> None:
    results = [
        CommandResult("lint", "ruff check .", "timed_out", None, "partial", 600.2),
        CommandResult("lint", "mypy", "error", None, "cannot run the command: [Errno 2] No such file"),
        CommandResult("test", "pytest -q", "skipped"),
    ]
    summary = summarize_failure(results)
    assert "$ ruff check .\n(lint) timed out after 600 s and was killed:\npartial" in summary
    assert "$ mypy\n(lint) could not be run:\ncannot run the command" in summary
    assert summary.endswith("Not run because an earlier stage failed: pytest -q")


def test_summary_of_many_huge_failures_stays_within_the_cap() -> None:
    huge = "\n".join("z" * 200 for _ in range(5000))
    results = [CommandResult("test", f"cmd{i}", "failed", 1, huge) for i in range(10)]
    assert len(summarize_failure(results)) <= SUMMARY_CHARS
