"""What a failed CI job's trace says, decided without an agent (pure).

A trace is untrusted bytes of any size: it is decoded leniently, its tail kept, ANSI escapes and
GitLab's section markers and carriage-return redraws removed, and values that look like secrets
masked (the configured secrets are masked by the caller's redactor as well). Each failed job is then
classed as one of:

- `flaky`: its retry history in the pipeline holds a passing attempt of the same job (re-run it);
- `infrastructure`: the runner, a timeout, memory or the network failed, not the code (re-run it);
- `tests`: pytest named failing tests (`FAILED tests/x.py::test_y - ...`, `ERROR ...`);
- `script`: anything else the job's script reported (a build, lint or type error).

Only `tests` and `script` failures need a fix, and only they go to the agent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from bot.clients.gitlab import Job
from orchestrators.validate import clean_output, tail

Category = Literal["flaky", "infrastructure", "tests", "script"]

TRACE_TAIL_BYTES = 256 * 1024  # what is read of a trace's end
EVIDENCE_LINES = 20
EVIDENCE_LINE_CHARS = 300
MAX_TESTS = 50
MAX_TEST_NAME = 300
EXCERPT_LINES = 120
EXCERPT_CHARS = 8000
NEEDS_FIX: frozenset[Category] = frozenset({"tests", "script"})

# GitLab's `failure_reason`s that are about the platform, not the code (doc/ci/... `CommitStatus`).
INFRA_REASONS = {
    "runner_system_failure": "the runner failed (system failure)",
    "stuck_or_timeout_failure": "the job was stuck or timed out",
    "job_execution_timeout": "the job ran past its timeout",
    "api_failure": "GitLab's API failed the job",
    "scheduler_failure": "the job could not be scheduled",
    "data_integrity_failure": "GitLab lost the job's data",
    "runner_unsupported": "the runner does not support the job",
    "missing_dependency_failure": "an artifact the job depends on is missing",
    "archived_failure": "the job is archived",
    "unmet_prerequisites": "the job's environment could not be prepared",
    "stale_schedule": "the job's schedule was stale",
    "forward_deployment_failure": "a newer deployment already ran",
}
# Lines of a trace that show the platform failing (checked only when no test failed).
_INFRA_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("the runner failed", re.compile(r"ERROR: Job failed \(system failure\)|Job failed \(system failure\)")),
    (
        "the job timed out",
        re.compile(r"execution took longer than|ERROR: Job failed: execution took|job timed out", re.I),
    ),
    (
        "the job ran out of memory",
        re.compile(
            r"exit code 137\b|OOMKilled|Out of memory: Kill(?:ed)? process|Cannot allocate memory"
            r"|fatal error: runtime: out of memory|JavaScript heap out of memory|^Killed$",
            re.M,
        ),
    ),
    (
        "the network failed",
        re.compile(
            r"Could not resolve host|Temporary failure in name resolution|Name or service not known"
            r"|TLS handshake timeout|[Cc]onnection reset by peer|Failed to connect to \S+ port"
            r"|i/o timeout|ETIMEDOUT|ECONNRESET|EAI_AGAIN|Could not connect to|Max retries exceeded with url"
            r"|503 Service Unavailable|502 Bad Gateway|toomanyrequests|rate limit exceeded",
            re.I,
        ),
    ),
    ("the runner failed", re.compile(r"no space left on device", re.I)),
)
# pytest's short test summary: `FAILED tests/test_x.py::test_y[p] - AssertionError: ...` (ERROR likewise).
_PYTEST_RE = re.compile(
    r"^(?P<kind>FAILED|ERROR)\s+(?P<name>[^\s]+?\.py(?:::[^\s]+)?)(?:\s+-\s+(?P<why>.*))?$", re.M
)
_ERROR_WORDS_RE = re.compile(
    r"\b(?:error|errors|failed|failure|exception|traceback|fatal|assert(?:ion)?)\b|^E\s{2,}", re.I | re.M
)
_SECRET_ASSIGN_RE = re.compile(
    r"(?i)\b(?P<key>[A-Z0-9_.\-]*(?:TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE_KEY|API_KEY|APIKEY|ACCESS_KEY"
    r"|CREDENTIALS?)[A-Z0-9_]*)(?P<sep>\s*[=:]\s*|=\"|=')(?P<value>[^\s'\"]{4,})"
)
_URL_PASSWORD_RE = re.compile(
    r"(?P<head>[a-z][a-z0-9+.\-]*://[^/\s:@]+:)(?P<value>[^@\s/]+)(?P<tail>@)", re.I
)
MASK = "[redacted]"


@dataclass(frozen=True)
class FailedTest:
    name: str  # pytest's node id, e.g. tests/test_calc.py::test_add
    reason: str  # what pytest said after ` - ` (may be empty)
    kind: Literal["FAILED", "ERROR"] = "FAILED"


@dataclass(frozen=True)
class Finding:
    """One failed job, classed, with the lines that show why."""

    job_id: int
    job_name: str
    stage: str
    category: Category
    reason: str  # one line: why this category
    tests: tuple[FailedTest, ...] = ()
    evidence: tuple[str, ...] = ()
    excerpt: str = ""  # the trace's telling part for the agent (cleaned, redacted, cut)
    web_url: str = ""

    @property
    def needs_fix(self) -> bool:
        return self.category in NEEDS_FIX


# --- the trace as text ------------------------------------------------------------------------------


def mask_secrets(text: str) -> str:
    """Values assigned to secret-looking names (`API_TOKEN=...`) and passwords in URLs, masked."""
    text = _SECRET_ASSIGN_RE.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)
    return _URL_PASSWORD_RE.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)


def trace_text(raw: bytes, *, limit: int = TRACE_TAIL_BYTES) -> str:
    """A trace's last `limit` bytes as clean text: lenient UTF-8, no ANSI, no control bytes, no NULs,
    carriage-return redraws collapsed, secret-looking values masked. A cut first line is dropped."""
    cut = len(raw) > limit
    data = raw[-limit:] if cut else raw
    text = clean_output(data.decode("utf-8", errors="replace").replace("\x00", ""))
    if cut and "\n" in text:
        text = "[… earlier output not read …]\n" + text.split("\n", 1)[1]
    return mask_secrets(text)


def _line(text: str) -> str:
    text = text.replace("\t", "    ").strip("\n").rstrip()
    return text if len(text) <= EVIDENCE_LINE_CHARS else text[: EVIDENCE_LINE_CHARS - 1] + "…"


# --- what failed ------------------------------------------------------------------------------------


def failed_tests(text: str) -> tuple[FailedTest, ...]:
    """pytest's FAILED/ERROR summary lines, each test once, at most MAX_TESTS."""
    found: dict[str, FailedTest] = {}
    for match in _PYTEST_RE.finditer(text):
        name = match["name"][:MAX_TEST_NAME]
        if name not in found:
            error = match["kind"] == "ERROR"
            found[name] = FailedTest(name, _line(match["why"] or ""), "ERROR" if error else "FAILED")
        if len(found) >= MAX_TESTS:
            break
    return tuple(found.values())


def infrastructure(job: Job, text: str) -> str | None:
    """Why the platform (not the code) failed the job, or None."""
    if job.failure_reason in INFRA_REASONS:
        return INFRA_REASONS[job.failure_reason]
    for why, pattern in _INFRA_PATTERNS:
        if pattern.search(text):
            return why
    return None


def flaky(job: Job, history: Sequence[Job]) -> bool:
    """The same job (by name and stage) passed in another attempt of this pipeline."""
    return any(
        other.id != job.id
        and other.name == job.name
        and other.stage == job.stage
        and other.status == "success"
        for other in history
    )


def evidence_lines(text: str, tests: Sequence[FailedTest]) -> tuple[str, ...]:
    """The lines that show the failure: pytest's summary lines, else the last error-looking lines."""
    if tests:
        lines = [m.group(0) for m in _PYTEST_RE.finditer(text)]
        asserts = [ln for ln in text.split("\n") if ln.startswith("E   ")]
        picked = [*lines[:EVIDENCE_LINES], *asserts[: max(0, EVIDENCE_LINES - len(lines))]]
    else:
        picked = [ln for ln in text.split("\n") if _ERROR_WORDS_RE.search(ln)][-EVIDENCE_LINES:]
        if not picked:
            picked = [ln for ln in text.split("\n") if ln.strip()][-5:]
    return tuple(_line(ln) for ln in picked if ln.strip())


def classify(
    job: Job, raw_trace: bytes, history: Sequence[Job] = (), *, redact: Callable[[str], str] = str
) -> Finding:
    """One failed job: its category, why, its failing tests and the evidence lines; `redact` masks the
    configured secrets in the log's text before anything is read from it."""
    text = redact(trace_text(raw_trace))
    complete = (
        text if raw_trace.endswith(b"\n") else text.rpartition("\n")[0]
    )  # a cut last line names nothing
    tests = failed_tests(complete)
    base = Finding(
        job_id=job.id, job_name=job.name, stage=job.stage, category="script", reason="",
        evidence=evidence_lines(text, tests), web_url=job.web_url,
        excerpt=tail(text, max_lines=EXCERPT_LINES, max_chars=EXCERPT_CHARS),
    )  # fmt: skip
    if flaky(job, history):
        return replace(
            base, category="flaky", reason="another attempt of this job in the pipeline passed: re-run it"
        )
    infra = infrastructure(job, "" if tests else text)
    if infra is not None:
        return replace(base, category="infrastructure", reason=f"{infra}: re-run it")
    if tests:
        many = f" (at least {MAX_TESTS})" if len(tests) >= MAX_TESTS else ""
        return replace(base, category="tests", reason=f"{len(tests)} test(s) failed{many}", tests=tests)
    return replace(base, reason=f"the job's script failed ({job.failure_reason or 'no reason given'})")


def latest_attempts(jobs: Iterable[Job]) -> list[Job]:
    """The newest attempt of each job (by name and stage): what the pipeline's status reflects."""
    newest: dict[tuple[str, str], Job] = {}
    for job in jobs:
        key = (job.name, job.stage)
        if key not in newest or job.id > newest[key].id:
            newest[key] = job
    return sorted(newest.values(), key=lambda j: j.id)


def to_fix(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.needs_fix]
