"""Runs written straight into a store, shaped like the ones Baton's workflows leave (phases with timings,
tokens, cost and outputs; the activity trail with the outcome's flags; proposals and the effects that
posted them), for the dashboard's tests and `bench/dashboard.py`.

`ticket_run` and `command_run` add one run of a chosen outcome to a `Batch`; `seed_many` writes
thousands of them with a realistic mix. `text` goes into every free-text field (summary, questions,
brief, agent summaries, errors, messages, command words), e.g. a hostile probe.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.tables import Activity, Effect, Phase, Proposal, Run

PHASES = ("triage", "assemble", "implement", "validate", "review", "propose")
OUTCOMES = {  # outcome → (weight in seed_many, run status)
    "shipped": (40, "succeeded"),
    "proposed": (12, "waiting"),
    "needs_info": (7, "waiting"),
    "needs_human": (5, "waiting"),
    "failed": (8, "failed"),
    "rejected": (6, "cancelled"),
    "superseded": (4, "cancelled"),
    "cancelled": (5, "cancelled"),
    "running": (2, "running"),
    "queued": (1, "queued"),
}
DONE_PHASES = {"needs_info": 1, "needs_human": 4, "failed": 2, "running": 2, "cancelled": 2, "queued": 0}
PROPOSAL_STATUS = {
    "shipped": "shipped",
    "proposed": "proposed",
    "rejected": "rejected",
    "superseded": "stale",
}
BRIEF_BODY = "\n".join(
    f"- context line {i}: what the module does and the conventions to keep" for i in range(60)
)
PROJECTS = ("ALPHA", "BETA", "GAMMA", "DELTA")
HOSTILE = (
    "<img src=x onerror=\"window.__baton_xss=1;document.title='pwned'\">"
    "<script>window.__baton_xss=2;document.title='pwned'</script>\"'&"
)


@dataclass
class Batch:
    """Rows to insert, table by table, in an order the foreign keys accept."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    activity: list[dict[str, Any]] = field(default_factory=list)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)

    async def write(self, sm: async_sessionmaker[AsyncSession], chunk: int = 2000) -> None:
        for table, rows in (
            (Run, self.runs),
            (Phase, self.phases),
            (Activity, self.activity),
            (Proposal, self.proposals),
            (Effect, self.effects),
        ):
            for start in range(0, len(rows), chunk):
                async with sm.begin() as session:
                    await session.execute(insert(table), rows[start : start + chunk])
        self.runs, self.phases, self.activity, self.proposals, self.effects = [], [], [], [], []


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _output(name: str, key: str, summary: str, text: str, attempts: int) -> dict[str, Any]:
    if name == "triage":
        return {"ready": True, "summary": f"Plan for {key} {text}", "questions": [], "agent_ms": 2100}
    if name == "assemble":
        brief = f"# Brief for {key}\n\n> {summary}\n\nQuoted ticket text, as data: {text}\n" + BRIEF_BODY
        return {"brief": brief, "brief_tokens": 812, "branch": f"baton/{key}-change", "summary": summary}
    if name == "implement":
        return {"summary": f"Implemented {key}. {text}", "turns": 6, "agent_ms": 41000, "denials": []}
    if name == "validate":
        check = {"stage": "test", "command": "python -m pytest -q", "status": "passed", "duration_s": 3.2}
        return {"passed": True, "checks": [check], "ci_changes": [], "changed": ["app.py"]}
    if name == "review":
        verdict = {"approve": True, "summary": f"Looks right {text}", "blockers": [], "suggestions": []}
        return {"verdict": verdict, "agent_ms": 9000, "feedback": "" if attempts else "x"}
    return {}


def _costs(name: str, rng: random.Random, attempts: int) -> tuple[int, int, float]:
    if name == "implement":
        return 1500 * attempts, 400 * attempts, round(rng.uniform(0.03, 0.4) * attempts, 4)
    if name in ("triage", "review"):
        return 600, 120, round(rng.uniform(0.002, 0.05), 4)
    return 0, 0, 0.0


def _phases(
    batch: Batch,
    run_id: str,
    key: str,
    summary: str,
    outcome: str,
    at: datetime,
    rng: random.Random,
    text: str,
) -> tuple[datetime, int]:
    """The run's six phases as `outcome` leaves them; returns when the last one ended, and the rounds."""
    done = DONE_PHASES.get(outcome, len(PHASES))
    rounds = 3 if outcome == "needs_human" else rng.choice((1, 1, 1, 1, 2, 3))
    earlier: dict[str, Any] = {}  # as the engine stores it: a phase's input is the earlier outputs
    for position, name in enumerate(PHASES):
        state = "done" if position < done else "pending"
        if position == done and outcome in ("failed", "running"):
            state = outcome if outcome == "failed" else "running"
        attempts = rounds if name == "implement" and state != "pending" else int(state != "pending")
        started = at if state != "pending" else None
        at = at + timedelta(seconds=rng.uniform(0.5, 90.0) * max(attempts, 1))
        finished = at if state in ("done", "failed") else None
        tokens_in, tokens_out, cost = _costs(name, rng, attempts) if state == "done" else (0, 0, 0.0)
        output = _output(name, key, summary, text, attempts) if state == "done" else None
        batch.phases.append(
            {
                "run_id": run_id,
                "name": name,
                "position": position,
                "status": state,
                "attempts": attempts,
                "input": dict(earlier) if state != "pending" else None,
                "output": output,
                "error": f"RuntimeError: the agent gave up {text}" if state == "failed" else None,
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "cost_usd": cost,
                "started_at": started,
                "finished_at": finished,
            }
        )
        if output is not None:
            earlier[name] = output
    return at, rounds


def _activity(
    batch: Batch, run_id: str, at: datetime, actor: str, action: str, message: str, **data: Any
) -> None:
    batch.activity.append(
        {
            "run_id": run_id,
            "delivery_id": None,
            "at": at,
            "actor": actor,
            "action": action,
            "message": message,
            "data": data or None,
        }
    )


def _ending(outcome: str, key: str, text: str) -> tuple[str, str, dict[str, bool]]:
    """(action, message, flags) of the run's last activity."""
    if outcome == "needs_info":
        return "waiting", f"needs-info: asked 2 questions on {key} {text}", {"needs_info": True}
    if outcome == "needs_human":
        return "waiting", f"needs-human: validate still failing after 3 rounds {text}", {"needs_human": True}
    if outcome == "proposed":
        return "waiting", f"proposal posted on {key}; waiting for /approve {text}", {}
    status = OUTCOMES[outcome][1]
    return status, f"{status}: {outcome} {text}", {}


def ticket_run(
    batch: Batch,
    rng: random.Random,
    *,
    key: str,
    outcome: str,
    created: datetime,
    summary: str = "Add a feature",
    text: str = "",
    run_id: str | None = None,
) -> str:
    """One `implement` run on Jira ticket `key` that ended as `outcome` (see OUTCOMES); its id."""
    run_id = run_id or _hex(rng, 32)
    status = OUTCOMES[outcome][1]
    trigger = {
        "trigger": "ticket_labelled",
        "issue_key": key,
        "issue_id": "1",
        "summary": f"{summary} {text}".strip(),
        "actor": {"display_name": f"Dan {text}".strip()},
    }
    _activity(batch, run_id, created, "dan", "received", f"jira label on jira:{key} {text}")
    end, _rounds = (
        (created, 0)
        if outcome == "queued"
        else _phases(batch, run_id, key, summary, outcome, created, rng, text)
    )
    if outcome != "queued":
        _activity(batch, run_id, created + timedelta(seconds=0.2), "worker-1", "claimed", "picked up")
    if outcome in PROPOSAL_STATUS:
        _proposal(batch, rng, run_id, key, outcome, end)
    if outcome not in ("running", "queued"):
        action, message, flags = _ending(outcome, key, text)
        _activity(batch, run_id, end, "baton", action, message, **flags)
    batch.runs.append(
        {
            "id": run_id,
            "kind": "implement",
            "subject": f"jira:{key}",
            "origin": f"seed:{run_id}",
            "status": status,
            "input": trigger,
            "attempts": 1,
            "error": f"phase implement failed {text}" if status == "failed" else None,
            "delivery_id": None,
            "created_at": created,
            "updated_at": end,
        }
    )
    return run_id


def _proposal(batch: Batch, rng: random.Random, run_id: str, key: str, outcome: str, at: datetime) -> None:
    proposal_id, sha = _hex(rng, 12), _hex(rng, 40)
    state = PROPOSAL_STATUS[outcome]
    target = {
        "kind": "jira",
        "issue_key": key,
        "worktree": "/nonexistent",
        "branch": f"baton/{key}-change",
        "project_path": "demo/app",
        "target_branch": "main",
        "remote_url": "http://git.invalid/demo/app.git",
        "project_id": 1,
    }
    decided = at + timedelta(hours=rng.uniform(0.2, 30)) if state != "proposed" else at
    batch.proposals.append(
        {
            "id": proposal_id,
            "run_id": run_id,
            "subject": f"jira:{key}",
            "status": state,
            "sha": sha,
            "diff_hash": _hex(rng, 64),
            "target": target,
            "created_at": at,
            "updated_at": decided,
        }
    )
    _effect(
        batch,
        f"run:{run_id}:proposal:{sha[:12]}",
        "jira_comment",
        run_id,
        str(rng.randint(10_000, 99_999)),
        at,
    )
    if state == "shipped":
        _effect(
            batch,
            f"proposal:{proposal_id}:mr",
            "gitlab.merge_request",
            run_id,
            str(rng.randint(1, 999)),
            decided,
        )


def _effect(batch: Batch, key: str, kind: str, run_id: str, external: str, at: datetime) -> None:
    batch.effects.append(
        {
            "key": key,
            "kind": kind,
            "status": "done",
            "run_id": run_id,
            "external_id": external,
            "created_at": at,
            "updated_at": at,
        }
    )


def command_run(
    batch: Batch,
    rng: random.Random,
    *,
    key: str,
    kind: str,
    args: str,
    created: datetime,
    status: str = "succeeded",
) -> str:
    """A run of a command given in a Jira comment (`/approve`, `/status`, …), without phases."""
    run_id = _hex(rng, 32)
    trigger = {
        "trigger": "ticket_command",
        "issue_key": key,
        "issue_id": "1",
        "comment_id": str(rng.randint(1, 9999)),
        "args": args,
        "author": {"display_name": "Alice"},
    }
    _activity(batch, run_id, created, "alice", "received", f"jira comment on jira:{key}")
    _activity(batch, run_id, created + timedelta(seconds=2), "baton", status, f"/{kind} handled")
    batch.runs.append(
        {
            "id": run_id,
            "kind": kind,
            "subject": f"jira:{key}",
            "origin": f"seed:{run_id}",
            "status": status,
            "input": trigger,
            "attempts": 1,
            "error": None,
            "delivery_id": None,
            "created_at": created,
            "updated_at": created + timedelta(seconds=2),
        }
    )
    return run_id


async def seed_many(
    sm: async_sessionmaker[AsyncSession], runs: int, now: datetime, rng: random.Random, days: int = 60
) -> dict[str, int]:
    """`runs` runs over the last `days` days: three in four implement runs of a weighted outcome, the rest
    commands; returns how many of each outcome (and `commands`) were written."""
    names = list(OUTCOMES)
    weights = [OUTCOMES[n][0] for n in names]
    made: dict[str, int] = {}
    batch = Batch()
    for i in range(runs):
        created = now - timedelta(seconds=rng.uniform(60, days * 86400))
        key = f"{rng.choice(PROJECTS)}-{rng.randint(1, max(runs // 3, 10))}"
        if rng.random() < 0.75:
            outcome = rng.choices(names, weights)[0]
            ticket_run(batch, rng, key=key, outcome=outcome, created=created, summary=f"Change number {i}")
        else:
            outcome = "commands"
            kind = rng.choice(("approve", "status", "help", "retry"))
            command_run(batch, rng, key=key, kind=kind, args="", created=created)
        made[outcome] = made.get(outcome, 0) + 1
        if len(batch.runs) >= 2000:
            await batch.write(sm)
    await batch.write(sm)
    return made
