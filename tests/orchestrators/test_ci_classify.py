"""The CI classifier (orchestrators/ci_classify.py): real-looking traces, and hostile ones — huge, binary,
ANSI escapes, secrets, cut off mid-line or mid-character, lookalike lines."""

from __future__ import annotations

import os
import random

import pytest

from bot.clients.gitlab import Job
from bot.redact import Redactor
from orchestrators.ci_classify import (
    MAX_TESTS,
    TRACE_TAIL_BYTES,
    classify,
    failed_tests,
    latest_attempts,
    trace_text,
)

ESC = "\x1b"
# What a GitLab runner prints for a failing pytest job (section markers, colours, \r redraws).
PYTEST_TRACE = (
    f"{ESC}[0KRunning with gitlab-runner 16.11.0 (91a27b2a)\n"
    f"{ESC}[0Ksection_start:1715000000:prepare_script\r{ESC}[0K{ESC}[0K"
    f"{ESC}[36;1mPreparing environment{ESC}[0;m\n"
    "Running on runner-abc-project-1-concurrent-0 via runner-manager...\n"
    f"section_end:1715000001:prepare_script\r{ESC}[0K\n"
    f"{ESC}[32;1m$ python -m pytest -q{ESC}[0;m\n"
    "..F.                                                                     [100%]\r"
    "..F.                                                                     [100%]\n"
    "=================================== FAILURES ===================================\n"
    "_________________________________ test_divide _________________________________\n"
    "\n"
    "    def test_divide() -> None:\n"
    ">       assert divide(6, 3) == 2\n"
    "E       assert 3.0 == 2\n"
    "E        +  where 3.0 = divide(6, 3)\n"
    "\n"
    "tests/test_calculator.py:12: AssertionError\n"
    "=========================== short test summary info ============================\n"
    f"{ESC}[31mFAILED{ESC}[0m tests/test_calculator.py::test_divide - assert 3.0 == 2\n"
    "ERROR tests/test_db.py::test_connect[sqlite] - fixture 'db' not found\n"
    f"{ESC}[31m========================= 1 failed, 3 passed in 0.05s =========================={ESC}[0m\n"
    f"section_end:1715000009:step_script\r{ESC}[0K{ESC}[31;1mERROR: Job failed: exit code 1\n{ESC}[0;m\n"
)


def job(
    id_: int = 7, *, name: str = "test", status: str = "failed", reason: str | None = "script_failure"
) -> Job:
    return Job(
        id_, name, "test", status, reason if status == "failed" else None, False, f"https://x/-/jobs/{id_}"
    )


def test_a_pytest_trace_names_its_failing_tests_and_the_evidence() -> None:
    finding = classify(job(), PYTEST_TRACE.encode())

    assert finding.category == "tests" and finding.needs_fix
    assert [(t.name, t.kind) for t in finding.tests] == [
        ("tests/test_calculator.py::test_divide", "FAILED"),
        ("tests/test_db.py::test_connect[sqlite]", "ERROR"),
    ]
    assert finding.tests[0].reason == "assert 3.0 == 2"
    assert "FAILED tests/test_calculator.py::test_divide - assert 3.0 == 2" in finding.evidence
    assert "E       assert 3.0 == 2" in finding.evidence
    assert (
        ESC not in finding.excerpt and "\r" not in finding.excerpt and "section_start" not in finding.excerpt
    )
    assert "Preparing environment" in finding.excerpt


@pytest.mark.parametrize(
    ("reason", "trace", "why"),
    [
        ("runner_system_failure", "boom", "the runner failed (system failure)"),
        ("stuck_or_timeout_failure", "", "the job was stuck or timed out"),
        ("job_execution_timeout", "", "the job ran past its timeout"),
        ("script_failure", "ERROR: Job failed (system failure): prepare environment", "the runner failed"),
        (
            "script_failure",
            "ERROR: Job failed: execution took longer than 1h0m0s seconds",
            "the job timed out",
        ),
        ("script_failure", "Killed\nERROR: Job failed: exit code 137", "the job ran out of memory"),
        ("script_failure", "pip: Could not resolve host: pypi.org", "the network failed"),
        (
            "script_failure",
            "fatal: unable to access: Failed to connect to gitlab.com port 443",
            "the network failed",
        ),
        ("script_failure", "write /builds/x: no space left on device", "the runner failed"),
    ],
)
def test_infrastructure_failures_are_rerun_candidates(reason: str, trace: str, why: str) -> None:
    finding = classify(job(reason=reason), trace.encode())

    assert finding.category == "infrastructure" and not finding.needs_fix
    assert finding.reason == f"{why}: re-run it"


def test_a_test_failure_wins_over_network_words_in_the_log() -> None:
    """A test about connections that fails is a test failure, not the network."""
    trace = "FAILED tests/test_http.py::test_retry - ConnectionError: Connection reset by peer\n"
    assert classify(job(), trace.encode()).category == "tests"


def test_a_job_with_a_passing_attempt_in_its_retry_history_is_flaky() -> None:
    first, retry = job(7, status="success"), job(9)
    history = [retry, first, job(8, name="lint", status="success")]

    finding = classify(retry, PYTEST_TRACE.encode(), history)

    assert finding.category == "flaky" and not finding.needs_fix
    assert "re-run" in finding.reason
    assert classify(retry, PYTEST_TRACE.encode(), [retry, job(7)]).category == "tests"  # failed twice: real
    assert (
        classify(retry, PYTEST_TRACE.encode(), [retry, job(6, name="lint", status="success")]).category
        == "tests"
    )


def test_latest_attempts_keep_the_newest_of_each_job() -> None:
    jobs = [job(9), job(7, status="success"), job(8, name="lint")]
    assert [j.id for j in latest_attempts(jobs)] == [8, 9]


def test_other_script_failures_keep_the_error_lines() -> None:
    trace = (
        "$ mypy .\nsrc/app.py:3: error: Name 'x' is not defined\nFound 1 error in 1 file\n"
        "ERROR: Job failed: exit code 1\n"
    )
    finding = classify(job(), trace.encode())

    assert finding.category == "script" and finding.needs_fix and finding.tests == ()
    assert "src/app.py:3: error: Name 'x' is not defined" in finding.evidence


# --- hostile traces --------------------------------------------------------------------------------


def test_a_huge_trace_is_read_from_its_tail_only() -> None:
    filler = ("x" * 199 + "\n") * 60_000  # 12 MB of noise before the summary
    trace = (filler + PYTEST_TRACE).encode()

    text = trace_text(trace)
    finding = classify(job(), trace)

    assert len(text) <= TRACE_TAIL_BYTES + 100 and text.startswith("[… earlier output not read …]")
    assert finding.tests[0].name == "tests/test_calculator.py::test_divide"
    assert len(finding.excerpt) <= 8100


def test_binary_garbage_and_nul_bytes_are_inert() -> None:
    noise = random.Random(7).randbytes(300_000) + b"\x00\x00\xff\xfe" + os.urandom(1000)

    finding = classify(job(), noise)

    assert finding.category in ("script", "infrastructure", "tests")
    assert "\x00" not in finding.excerpt and all(len(line) <= 300 for line in finding.evidence)
    assert all(ord(c) >= 32 or c in "\n\t" for c in finding.excerpt)


def test_ansi_and_control_sequences_cannot_forge_or_hide_lines() -> None:
    trace = (
        f"{ESC}]8;;https://evil.example{ESC}\\link{ESC}]8;;{ESC}\\\n"  # OSC hyperlink
        f"FAILED tests/a.py::test_x - boom{ESC}[2K\r\n"
        f"{ESC}[1A{ESC}[2Kpassed everything\n"  # cursor up + erase: hides nothing here
        "\x07\x08\x0bFAILED tests/b.py::test_y - bell\n"
    )
    finding = classify(job(), trace.encode())

    assert [t.name for t in finding.tests] == ["tests/a.py::test_x", "tests/b.py::test_y"]
    assert all(ESC not in line and "\x07" not in line for line in finding.evidence)
    assert "evil.example" not in finding.excerpt


def test_secrets_in_a_trace_are_masked_before_anything_reads_it() -> None:
    secret = "s3cr3t-configured-value-1234"
    trace = (
        "$ export API_TOKEN=abcd1234efgh5678\n"
        "DATABASE_PASSWORD: hunter2hunter2\n"
        "fetching https://deploy:pa55w0rd-xyz@registry.example.com/v2/\n"
        "using glpat-ABCDEFGHIJKLMNOPQRST1234\n"
        f"the configured one: {secret}\n"
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----\n"
        f"FAILED tests/test_auth.py::test_login - AssertionError: token {secret} rejected\n"
    )
    finding = classify(job(), trace.encode(), redact=Redactor([secret]).redact)
    shown = "\n".join([finding.excerpt, *finding.evidence, *(t.reason for t in finding.tests)])

    for leaked in (
        "abcd1234efgh5678",
        "hunter2hunter2",
        "pa55w0rd-xyz",
        "glpat-ABCDEFGHIJ",
        secret,
        "MIIEow",
    ):
        assert leaked not in shown
    assert "API_TOKEN=[redacted]" in shown and [t.name for t in finding.tests] == [
        "tests/test_auth.py::test_login"
    ]


def test_a_trace_cut_mid_line_and_mid_character_still_classifies() -> None:
    whole = ("é" * 10 + "\n").encode() + PYTEST_TRACE.encode()
    cut = whole[: whole.index(b"::test_divide") + 10]  # ends inside the FAILED line: a half name
    cut_utf8 = "FAILED tests/ü.py::test_ü - x\n".encode() + "FAILED tests/é".encode()[:-1]

    assert classify(job(), cut).tests == () and classify(job(), cut).category == "script"
    assert [t.name for t in classify(job(), cut_utf8).tests] == ["tests/ü.py::test_ü"]
    assert classify(job(), b"").category == "script"


def test_lookalike_and_endless_failure_lines_are_bounded() -> None:
    many = "".join(f"FAILED tests/t.py::test_{n} - x\n" for n in range(10_000))
    long_name = "FAILED tests/" + "a" * 5000 + ".py::t - x\n"
    quoted = "> FAILED tests/q.py::test_q - quoted\n  FAILED tests/indented.py::t - indented\n"

    assert len(failed_tests(many)) == MAX_TESTS
    assert len(failed_tests(long_name)[0].name) <= 300
    assert failed_tests(quoted) == ()
    assert "at least" in classify(job(), many.encode()).reason
