"""Shared helpers for the worker-fault and infrastructure-fault cases of the reliability suite.

- canaries planted in the processes' environment (checked by `invariants.check`);
- scenario variants of `tests/fixtures/demo/lifecycle.yaml` (slow or hanging agent phases);
- read-only views of the store (runs, phases, effects, activity, deliveries) for event-driven waits;
- simulator hooks that commit a write and then hold its answer (a post GitLab/Jira accepted but
  whose answer the worker never got).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from sqlalchemy import select

from bot.agent.process import kill_stragglers, process_table
from bot.agent.process import marked as marked_processes
from bot.effects import find_jira_marker, find_marker
from bot.sandbox.gitlab_sim import GitLabState
from bot.sandbox.jira_sim import JiraState
from bot.sandbox.scenario import Script
from bot.store.engine import create_engine
from bot.store.tables import Activity, Delivery, Effect, Phase, Proposal, Run
from config.settings import async_database_url
from orchestrators.agents import agent_root
from tests.reliability.invariants import World
from tests.support.deliveries import label_added, signed
from tests.support.processes import CANARY
from tests.support.sandbox import Running

T = TypeVar("T")
SCENARIO = Path(__file__).resolve().parent.parent / "fixtures" / "demo" / "lifecycle.yaml"
# Planted in every Baton process of these cases; none may surface in logs, store, queue or simulators.
CANARY_ENV = {
    "BATON_CANARY": "canary-baton-reliability-3f9e1a7c",
    "AWS_SECRET_ACCESS_KEY": "canary-aws-reliability-8d2b6e04",
}


# --- canaries --------------------------------------------------------------------------------------


def plant_canaries(env: dict[str, str]) -> list[str]:
    """Put the canaries into a process environment; returns every secret the case must never leak."""
    env.update(CANARY_ENV)
    return [*CANARY_ENV.values(), *(v for k, v in env.items() if k.endswith("_TOKEN") and v)]


def sandbox_with_canaries(running: Running) -> list[str]:
    """Replace the sandbox's idle first worker by one whose environment carries the canaries."""
    canaries = plant_canaries(running.env)
    worker_ready(running)
    assert running.worker.stop(30) == 0
    running.start_worker()
    worker_ready(running)
    return canaries


def worker_ready(running: Running, timeout_s: float = 60.0) -> None:
    """The worker finished its start-up (signal handlers installed, clients built)."""
    wait_until(
        lambda: '"worker started"' in running.worker.logs(), timeout_s, "the worker", running.worker.logs
    )


def infra_canaries() -> list[str]:
    """baton_env's GitLab/Jira tokens are CANARY-based; plus the planted ones."""
    return [CANARY, *CANARY_ENV.values()]


def sandbox_world(running: Running, db_url: str, canaries: Sequence[str]) -> World:
    return World(
        db_url=db_url,
        redis_url=running.env["BATON_REDIS_URL"],
        logs=sorted(running.log_dir.glob("*.log")),
        gitlab=running.stack.gitlab_state,
        jira=running.stack.jira_state,
        model_log=running.stack.model.log,
        canaries=canaries,
    )


# --- scenarios -------------------------------------------------------------------------------------


def scenario_variant(tmp_path: Path, name: str, **per_phase: dict[str, Any]) -> Path:
    """lifecycle.yaml with script knobs changed per phase, e.g. `review={"delay_s": 2}`."""
    data = yaml.safe_load(SCENARIO.read_text())
    for phase, knobs in per_phase.items():
        script = next(s for s in data["model"]["scripts"] if s["match"] == f"[baton:{phase}] DEMO-1")
        script.update(knobs)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def set_script(running: Running, phase: str, **knobs: Any) -> None:
    """Change a phase's script in the running model server (its scenario object is shared)."""
    scripts = running.stack.world.model.scripts
    index = next(i for i, s in enumerate(scripts) if s.match == f"[baton:{phase}] DEMO-1")
    scripts[index] = Script.model_validate(scripts[index].model_dump() | knobs)


def model_requests(running: Running, phase: str) -> int:
    return sum(1 for r in running.stack.model.log.all() if f"[baton:{phase}] DEMO-1" in str(r.body))


# --- waiting and looking -------------------------------------------------------------------------


def wait_until(predicate: Callable[[], T | None], timeout_s: float, what: str, logs: Callable[[], str]) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}\n{logs()[-6000:]}")


def jira_marked(jira: JiraState, key: str, kind: str) -> list[str]:
    """Comments on `key` whose effect key contains `:kind` (proposal, status, ack, mr-link, …)."""
    return [c.body for c in jira.issue(key).comments if f":{kind}" in (find_jira_marker(c.body) or "")]


def merge_requests(gitlab: GitLabState) -> list[Any]:
    return [mr for mr in gitlab.merge_requests.values() if find_marker(mr.description)]


def agent_pids(run_id: str) -> set[int]:
    """Live processes carrying the run's agent TMPDIR marker (the CLI and its children)."""
    return marked_processes(f"TMPDIR={agent_root(run_id)}/".encode(), process_table(), prefix=True)


@contextmanager
def ending_agents(db_url: str) -> Iterator[None]:
    """On the way out (also when a case fails), end agent processes a case's runs may have left."""
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            for run in runs(db_url):
                asyncio.run(kill_stragglers(agent_root(run.id)))


# --- the store, read directly (a CLI round trip costs a Python start-up) ---------------------------


async def _query(db_url: str, statement: Any) -> list[Any]:
    engine = create_engine(async_database_url(db_url))
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(statement)).all())
    finally:
        await engine.dispose()


def query(db_url: str, statement: Any) -> list[Any]:
    return asyncio.run(_query(db_url, statement))


@dataclass(frozen=True)
class RunView:
    id: str
    kind: str
    status: str
    attempts: int
    error: str | None


def runs(db_url: str) -> list[RunView]:
    rows = query(db_url, select(Run.id, Run.kind, Run.status, Run.attempts, Run.error))
    return [RunView(*row) for row in rows]


def phases(db_url: str, run_id: str) -> dict[str, tuple[str, int]]:
    """phase name → (status, attempts)"""
    rows = query(db_url, select(Phase.name, Phase.status, Phase.attempts).where(Phase.run_id == run_id))
    return {name: (state, attempts) for name, state, attempts in rows}


def effects(db_url: str) -> dict[str, str]:
    """effect key → pending | done"""
    return dict(query(db_url, select(Effect.key, Effect.status)))


def proposal_ids(db_url: str) -> list[str]:
    return [row[0] for row in query(db_url, select(Proposal.id))]


def actions(db_url: str, run_id: str) -> list[str]:
    rows = query(db_url, select(Activity.action).where(Activity.run_id == run_id).order_by(Activity.id))
    return [row[0] for row in rows]


def claimed(db_url: str) -> set[str]:
    rows = query(db_url, select(Activity.run_id).where(Activity.action == "claimed"))
    return {row[0] for row in rows}


def delivery_keys(db_url: str) -> Counter[str]:
    return Counter(row[0] for row in query(db_url, select(Delivery.dedup_key)))


# --- simulator hooks -----------------------------------------------------------------------------


class JiraProposalLoss:
    """The Jira simulator commits the proposal comment and then holds its answer (lose-response, hang).

    Jira's fault knobs apply to the next write, so they are armed exactly when the status comment is
    edited to show `propose` running: the worker's next write is the proposal comment itself.
    """

    def __init__(self, jira: JiraState, hold_s: float = 20.0) -> None:
        self.jira = jira
        self.armed = threading.Event()
        self._original = jira.edit_comment
        self._hold_s = hold_s
        jira.edit_comment = self._edit  # type: ignore[method-assign]

    def _edit(self, key: str, comment_id: str, actor: Any, body: str) -> Any:
        result = self._original(key, comment_id, actor, body)
        proposing = any("🔄" in line and "propose" in line for line in body.splitlines())
        if proposing and not self.armed.is_set():
            self.jira.faults.configure(lose_next=1, lose_mode="hang", hang_s=self._hold_s)
            self.armed.set()
        return result

    def release(self) -> None:
        self.jira.faults.configure(lose_next=0)
        self.jira.edit_comment = self._original  # type: ignore[method-assign]

    def __enter__(self) -> JiraProposalLoss:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class GitLabMergeRequestLoss:
    """The GitLab simulator opens the MR, then holds the answer until `release()`, then loses it (502).

    GitLab's lose-response knob answers at once; holding the committed request open is what gives the
    test time to kill the worker between GitLab's commit and the store's record.
    """

    def __init__(self, gitlab: GitLabState, hold_s: float = 60.0) -> None:
        self.gitlab = gitlab
        self.committed = threading.Event()
        self._released = threading.Event()
        self._original = gitlab.create_merge_request
        self._hold_s = hold_s
        gitlab.faults.lose_next(1, "502", methods=["POST"])
        gitlab.create_merge_request = self._create  # type: ignore[method-assign]

    def _create(self, *args: Any, **kwargs: Any) -> Any:
        mr = self._original(*args, **kwargs)
        self.committed.set()
        self._released.wait(self._hold_s)  # the simulator's answer is held, as a hung proxy would
        return mr

    def release(self) -> None:
        self.gitlab.faults.clear()
        self.gitlab.create_merge_request = self._original  # type: ignore[method-assign]
        self._released.set()

    def __enter__(self) -> GitLabMergeRequestLoss:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- webhook senders (infrastructure cases) --------------------------------------------------------


@dataclass
class Sent:
    """One signed label delivery and every answer it got."""

    body: bytes
    headers: dict[str, str]
    identifier: str
    answers: list[int]
    retry_after: list[str | None]
    run_id: str | None = None


class Sender:
    """Posts distinct, valid label deliveries from a thread until stopped; keeps every answer."""

    def __init__(self, port: int, pause_s: float = 0.05) -> None:
        self.url = f"http://127.0.0.1:{port}/webhooks/jira"
        self.pause_s = pause_s
        self.sent: list[Sent] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="webhook-sender", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def post(self, client: httpx.Client, item: Sent) -> int | None:
        try:
            answer = client.post(self.url, content=item.body, headers=item.headers)
        except httpx.HTTPError as exc:
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            return None
        with self._lock:
            item.answers.append(answer.status_code)
            item.retry_after.append(answer.headers.get("retry-after"))
            if answer.status_code < 300:
                item.run_id = answer.json().get("run")
        return answer.status_code

    def _loop(self) -> None:
        with httpx.Client(timeout=15) as client:
            while not self._stop.is_set():
                identifier = uuid.uuid4().hex
                body, headers = signed(
                    "jira", label_added(changelog_id=str(uuid.uuid4().int % 10**12)), key=identifier
                )
                item = Sent(body, headers, identifier, [], [])
                with self._lock:
                    self.sent.append(item)
                self.post(client, item)
                self._stop.wait(self.pause_s)

    def snapshot(self) -> list[Sent]:
        with self._lock:
            return list(self.sent)

    def codes(self) -> Counter[int]:
        return Counter(code for item in self.snapshot() for code in item.answers)

    def answered(self, n: int, timeout_s: float = 30.0) -> None:
        """Wait until `n` more deliveries than now were answered (whatever the answer)."""
        target = sum(1 for item in self.snapshot() if item.answers) + n
        deadline = time.monotonic() + timeout_s
        while sum(1 for item in self.snapshot() if item.answers) < target:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise TimeoutError(
                    f"the sender got fewer than {n} answers in {timeout_s} s: {self.errors[-3:]}"
                )
            time.sleep(0.05)


def tail(log_dir: Path, n: int = 3000) -> Callable[[], str]:
    """The end of every process log under `log_dir` (for timeout messages)."""

    def read() -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-n:]}" for p in sorted(log_dir.glob("*.log"))
        )

    return read
