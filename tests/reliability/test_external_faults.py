"""GitLab and Jira misbehave during a ticket's run (5xx bursts, 429s, hangs, lost responses): the run is
deferred, never failed, then finishes with exactly one proposal; the adapters' timeouts bound a hang.

The helpers at the top (canaries planted in the worker, the invariants' World, a per-route Jira fault)
are shared by the other reliability case files.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from sqlalchemy import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.effects import find_jira_marker
from bot.sandbox import jira_sim
from bot.store.engine import create_engine
from bot.store.tables import Activity, Run
from config.settings import async_database_url
from tests.reliability.invariants import World, check
from tests.support.processes import cli_json
from tests.support.sandbox import Running, running_sandbox, wait

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LIFECYCLE = FIXTURES / "demo" / "lifecycle.yaml"
ISSUE_PATH = "/rest/api/2/issue/DEMO-1"
COMMENTS_PATH = f"{ISSUE_PATH}/comment"
PROJECT_PATH = "/api/v4/projects/demo%2Fcalculator"
PROPOSAL_MARKER = b"%3Aproposal%3A"  # the proposal's effect key as Baton's Jira marker encodes it


# --- shared harness ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """Secrets a leak would expose: in the worker's environment, in a fake HOME, in the repository."""

    env: dict[str, str]
    canaries: tuple[str, ...]
    home: Path
    dotenv: str


def plant(tmp_path: Path) -> Planted:
    tag = uuid.uuid4().hex[:10]
    env_canary, aws, ssh, dotenv = (f"canary-{kind}-{tag}" for kind in ("env", "aws", "ssh", "dotenv"))
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "id_rsa"
    key.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{ssh}\n-----END OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o600)
    env = {"BATON_CANARY": env_canary, "AWS_SECRET_ACCESS_KEY": aws, "HOME": str(home)}
    return Planted(env, (env_canary, aws, ssh, dotenv), home, dotenv)


def scenario_file(
    tmp_path: Path, data: dict[str, Any], planted: Planted, name: str = "scenario.yaml"
) -> Path:
    """Write a scenario whose repository also holds a `.env` with a canary."""
    data["repository"]["files"][".env"] = f"API_TOKEN={planted.dotenv}\n"
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def lifecycle() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(LIFECYCLE.read_text())
    return data


@contextmanager
def guarded_sandbox(
    tmp_path: Path, scenario: Path, planted: Planted, db_url: str | None = None, **extra_env: str
) -> Iterator[tuple[Running, str]]:
    """`running_sandbox` whose worker carries the planted canaries (restarted with them before any run)."""
    db_url = db_url or f"sqlite:///{tmp_path / 'baton.db'}"
    with running_sandbox(tmp_path, db_url, scenario, **extra_env) as sandbox:
        sandbox.worker.stop()
        sandbox.env.update(planted.env)
        sandbox.start_worker()
        yield sandbox, db_url


def check_world(sandbox: Running, db_url: str, planted: Planted, extra: list[str] | None = None) -> None:
    """The three invariants, with the planted canaries and the sandbox's own credentials as secrets."""
    tokens = (
        sandbox.config["gitlab"]["tokens"]["bot"],
        sandbox.config["jira"]["tokens"]["bot"],
        sandbox.config["model"]["api_key"],
    )
    world = World(
        db_url=db_url,
        redis_url=sandbox.env["BATON_REDIS_URL"],
        logs=sorted(sandbox.log_dir.glob("*.log")),
        gitlab=sandbox.stack.gitlab_state,
        jira=sandbox.stack.jira_state,
        model_log=sandbox.stack.model.log,
        canaries=(*planted.canaries, *tokens),
        extra_texts=extra or [],
    )
    check(world)


def marked(sandbox: Running, key: str, kind: str) -> list[str]:
    """Bot comments on `key` whose effect key contains `:kind`."""
    return [body for body in sandbox.comments(key) if f":{kind}" in (find_jira_marker(body) or "")]


def the_run(sandbox: Running, kind: str = "implement") -> dict[str, Any]:
    (run,) = [r for r in cli_json(sandbox.env, "runs") if r["kind"] == kind]
    detail: dict[str, Any] = cli_json(sandbox.env, "show", run["id"])
    return detail


async def _rows(db_url: str, query: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(async_database_url(db_url))
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(query)).all()]
    finally:
        await engine.dispose()


def activity(db_url: str, action: str) -> list[str]:
    """Messages of every activity entry named `action` (cheap enough to poll, unlike the CLI)."""
    query = select(Activity.message).where(Activity.action == action).order_by(Activity.id)
    return [str(row[0] or "") for row in asyncio.run(_rows(db_url, query))]


def run_status(db_url: str, kind: str = "implement") -> str | None:
    """The status of the (only) run of `kind`, read from the store."""
    found = asyncio.run(_rows(db_url, select(Run.status).where(Run.kind == kind)))
    return str(found[0][0]) if found else None


def settled(sandbox: Running, db_url: str, expected: str, timeout_s: float = 150) -> None:
    """Wait until the implement run stops (waits for a person or ends), then check how it stopped."""

    def stopped() -> str | None:
        found = run_status(db_url)
        return found if found in ("waiting", "succeeded", "failed", "cancelled") else None

    got = wait(stopped, timeout_s, f"the run to become {expected}", sandbox.worker.logs)
    if got != expected:
        raise AssertionError(f"the run is {got}, not {expected}: {the_run(sandbox).get('error')}")


def model_saw(sandbox: Running, text: str) -> bool:
    return any(text in str(r.body) for r in sandbox.stack.model.log.messages())


# --- Jira faults for one route ----------------------------------------------------------------------------

FaultKind = Literal["status", "throttle", "lose"]


@dataclass
class RouteFault:
    """Fail `times` requests with this method and exact path (and body text), after letting `after` pass.

    The simulator's own knobs match a path prefix only, which cannot tell the issue read in assemble
    from the status-comment edits around it, nor the proposal from the other comments.
    """

    method: str
    path: str
    kind: FaultKind
    times: int
    status: int = 503
    retry_after: str | None = None
    body_contains: bytes | None = None
    after: int = 0
    seen: int = 0
    hits: int = 0


@dataclass
class JiraRouteFaults:
    """ASGI wrapper in front of the Jira simulator's app that applies `RouteFault`s."""

    app: ASGIApp
    faults: list[RouteFault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, fault: RouteFault) -> RouteFault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def _take(self, method: str, path: str, body: bytes) -> RouteFault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method != method or fault.path != path or fault.hits >= fault.times:
                    continue
                if fault.body_contains is not None and fault.body_contains not in body:
                    continue
                fault.seen += 1
                if fault.seen > fault.after:
                    fault.hits += 1
                    return fault
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/rest/"):
            await self.app(scope, receive, send)
            return
        body, replay = await _buffered(receive)
        fault = self._take(scope["method"], scope["path"], body)
        if fault is None:
            await self.app(scope, replay, send)
        elif fault.kind == "lose":  # the write is committed; the answer is lost
            await self.app(scope, replay, _swallow)
            await _answer(send, 502, "Bad gateway (lost response)", None)
        else:
            status = 429 if fault.kind == "throttle" else fault.status
            await _answer(send, status, "simulated outage", fault.retry_after)


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = bool(message.get("more_body"))
    body, replayed = b"".join(chunks), False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


async def _swallow(message: Message) -> None:
    return None


async def _answer(send: Send, status: int, text: str, retry_after: str | None) -> None:
    data = ('{"errorMessages": ["%s"], "errors": {}}' % text).encode()  # noqa: UP031 - literal JSON
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


@pytest.fixture
def jira_routes(monkeypatch: pytest.MonkeyPatch) -> list[JiraRouteFaults]:
    """The Jira simulator of the next sandbox, wrapped in `JiraRouteFaults` (index 0 once started)."""
    made: list[JiraRouteFaults] = []
    original = jira_sim.create_jira_app

    def wrapped(state: jira_sim.JiraState, **kwargs: Any) -> JiraRouteFaults:
        app = JiraRouteFaults(original(state, **kwargs))
        made.append(app)
        return app

    monkeypatch.setattr(jira_sim, "create_jira_app", wrapped)
    return made


# --- the cases --------------------------------------------------------------------------------------------


def _finished_with_one_proposal(sandbox: Running, db_url: str) -> str:
    settled(sandbox, db_url, "waiting")
    proposals = marked(sandbox, "DEMO-1", "proposal")
    assert len(proposals) == 1, proposals
    detail = the_run(sandbox)
    assert all(p["status"] == "done" for p in detail["phases"]), detail["phases"]
    return proposals[0]


def _deferred(detail: dict[str, Any], phase: str) -> list[str]:
    """The run's phase-deferred and requeued entries, after checking it was never failed."""
    actions = [a["action"] for a in detail["activity"]]
    assert "phase-failed" not in actions and "failed" not in actions, detail["activity"]
    deferred = [a["message"] for a in detail["activity"] if a["action"] == "phase-deferred"]
    assert deferred and all(m.startswith(f"{phase} deferred") for m in deferred), detail["activity"]
    requeued = [a["message"] for a in detail["activity"] if a["action"] == "requeued"]
    assert len(requeued) == len(deferred), detail["activity"]
    return requeued


@pytest.mark.timeout(180)
def test_jira_5xx_burst_on_the_issue_read_in_assemble_defers_then_completes(
    tmp_path: Path, jira_routes: list[JiraRouteFaults]
) -> None:
    planted = plant(tmp_path)
    with guarded_sandbox(tmp_path, scenario_file(tmp_path, lifecycle(), planted), planted) as (sandbox, db):
        # the route (one repository or several: orchestrators/plan.py) and triage read the issue first;
        # the next five reads (assemble's, retried) answer 503
        burst = jira_routes[0].arm(RouteFault("GET", ISSUE_PATH, "status", times=5, after=2))
        sandbox.label("dan", "DEMO-1")
        _finished_with_one_proposal(sandbox, db)
        detail = the_run(sandbox)
        requeued = _deferred(detail, "assemble")
        assert "HTTP 503" in requeued[0] and "trying again in 5 s" in requeued[0], requeued
        phases = {p["name"]: p["attempts"] for p in detail["phases"]}
        assert phases["triage"] == 1 and phases["assemble"] == 2 and phases["implement"] == 1
        assert burst.hits == 5
        check_world(sandbox, db, planted)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["throttle", "lose"])
def test_throttled_or_lost_proposal_post_is_deferred_and_posted_once(
    tmp_path: Path, jira_routes: list[JiraRouteFaults], kind: FaultKind
) -> None:
    planted = plant(tmp_path)
    with guarded_sandbox(tmp_path, scenario_file(tmp_path, lifecycle(), planted), planted) as (sandbox, db):
        retry_after = "1" if kind == "throttle" else None
        post = RouteFault(
            "POST", COMMENTS_PATH, kind, times=1, retry_after=retry_after, body_contains=PROPOSAL_MARKER
        )
        jira_routes[0].arm(post)
        sandbox.label("dan", "DEMO-1")
        proposal = _finished_with_one_proposal(sandbox, db)
        detail = the_run(sandbox)
        requeued = _deferred(detail, "propose")
        expected = "HTTP 429" if kind == "throttle" else "HTTP 502"
        assert expected in requeued[0], requeued
        if kind == "throttle":
            assert "trying again in 1 s" in requeued[0], requeued  # the server's Retry-After
        assert post.hits == 1
        assert {p["name"]: p["attempts"] for p in detail["phases"]}["propose"] == 2
        # The proposal that was posted (once) is the one that ships, once.
        sandbox.as_person("alice", "DEMO-1", "/approve")
        wait(lambda: marked(sandbox, "DEMO-1", "mr-link"), 60, "the MR link", sandbox.worker.logs)
        assert len(sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project)) == 1
        assert marked(sandbox, "DEMO-1", "proposal") == [proposal]
        check_world(sandbox, db, planted)


GITLAB_FAULTS = {
    "503-burst": ("fail", None, "HTTP 503", 5),
    "429-retry-after": ("rate", 1, "HTTP 429", 1),
    "429-no-retry-after": ("rate", None, "HTTP 429", 5),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(GITLAB_FAULTS))
def test_gitlab_outage_on_the_project_read_defers_then_completes(tmp_path: Path, name: str) -> None:
    how, retry_after, shown, delay = GITLAB_FAULTS[name]
    planted = plant(tmp_path)
    with guarded_sandbox(tmp_path, scenario_file(tmp_path, lifecycle(), planted), planted) as (sandbox, db):
        faults = sandbox.stack.gitlab_state.faults
        if how == "fail":
            faults.fail_next(5, 503, methods=["GET"])
        else:
            faults.rate_limit_next(5, retry_after, methods=["GET"])
        sandbox.label("dan", "DEMO-1")
        _finished_with_one_proposal(sandbox, db)
        requeued = _deferred(the_run(sandbox), "assemble")
        assert shown in requeued[0] and f"trying again in {delay} s" in requeued[0], requeued
        assert len(faults.hits) == 5 and {h.path for h in faults.hits} == {PROJECT_PATH}, faults.hits
        check_world(sandbox, db, planted)


@pytest.mark.timeout(220)
def test_a_hanging_gitlab_is_cut_off_by_the_adapter_timeout_and_the_run_deferred(tmp_path: Path) -> None:
    planted = plant(tmp_path)
    with guarded_sandbox(tmp_path, scenario_file(tmp_path, lifecycle(), planted), planted) as (sandbox, db):
        faults = sandbox.stack.gitlab_state.faults
        faults.hang()  # every GitLab API call stalls until released
        sandbox.label("dan", "DEMO-1")
        started = time.monotonic()
        deferred = wait(
            lambda: activity(db, "phase-deferred"), 120, "the deferral of assemble", sandbox.worker.logs
        )
        waited = time.monotonic() - started
        faults.release()
        assert deferred[0].startswith("assemble deferred") and "ReadTimeout" in deferred[0], deferred
        # 4 reads x the 10 s client timeout, plus backoff and the time to reach assemble
        assert 40 <= waited < 100, waited
        _finished_with_one_proposal(sandbox, db)
        _deferred(the_run(sandbox), "assemble")
        check_world(sandbox, db, planted)


@pytest.mark.timeout(220)
def test_a_hanging_jira_is_cut_off_by_the_adapter_timeout(tmp_path: Path) -> None:
    planted = plant(tmp_path)
    with guarded_sandbox(tmp_path, scenario_file(tmp_path, lifecycle(), planted), planted) as (sandbox, db):
        jira = sandbox.stack.jira_state.faults
        sandbox.label("dan", "DEMO-1")
        wait(lambda: model_saw(sandbox, "[baton:triage] DEMO-1"), 60, "triage", sandbox.worker.logs)
        # the next Jira call about DEMO-1 stalls for 150 s (then 504): the client gives up after 20 s
        jira.configure(hang_next=1, hang_s=150.0, path_contains=ISSUE_PATH)
        started = time.monotonic()
        _finished_with_one_proposal(sandbox, db)
        took = time.monotonic() - started
        assert jira.hang_next == 0, "the hang never happened"
        assert 20 <= took < 140, took
        check_world(sandbox, db, planted)
