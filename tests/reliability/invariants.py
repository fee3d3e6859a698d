"""The invariants checked after every reliability case.

1. Every acknowledged delivery reached a terminal state (its run finished or waits for a person).
2. At most one posted note/comment/MR per effect key (GitLab and Jira simulators).
3. No canary secret anywhere: logs, Redis keys and values (job arguments), the database, what the
   simulators and the model server received (which includes the agent's tool results, hence its
   environment when a command printed it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import select, text

from bot.effects import find_jira_marker, find_marker
from bot.sandbox.gitlab_sim import GitLabState
from bot.sandbox.jira_sim import JiraState
from bot.sandbox.model_server import RequestLog
from bot.store import status
from bot.store.engine import create_engine
from bot.store.tables import Base, Delivery, Run
from config.settings import async_database_url

SETTLED = (*status.TERMINAL, status.WAITING)
TABLES = [table.name for table in Base.metadata.sorted_tables]


@dataclass
class World:
    """Everything a case touched; fields left empty are not checked."""

    db_url: str  # plain URL (sqlite:///… or postgresql://…)
    redis_url: str | None = None
    logs: Sequence[Path] = ()
    gitlab: GitLabState | None = None
    jira: JiraState | None = None
    model_log: RequestLog | None = None
    canaries: Sequence[str] = ()
    extra_texts: list[str] = field(default_factory=list)  # anything else a case captured


async def _unsettled(db_url: str) -> list[tuple[int, str | None, str]]:
    engine = create_engine(async_database_url(db_url))
    try:
        async with engine.connect() as conn:
            query = (
                select(Delivery.id, Delivery.run_id, Run.status)
                .join(Run, Run.id == Delivery.run_id)
                .where(Run.status.not_in(SETTLED))
            )
            return [(row[0], row[1], row[2]) for row in (await conn.execute(query)).all()]
    finally:
        await engine.dispose()


def every_delivery_settles(db_url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        pending = asyncio.run(_unsettled(db_url))
        if not pending:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"acknowledged deliveries whose runs never settled: {pending[:10]}")
        time.sleep(0.25)


def _gitlab_texts(state: GitLabState) -> list[str]:
    return [note.body for note in state.notes.values()] + [
        mr.description for mr in state.merge_requests.values()
    ]


def _jira_texts(state: JiraState) -> list[str]:
    return [comment.body for issue in state.issues.values() for comment in issue.comments]


def at_most_once_per_effect(gitlab: GitLabState | None, jira: JiraState | None) -> None:
    keys: Counter[str] = Counter()
    for body in _gitlab_texts(gitlab) if gitlab else []:
        if key := find_marker(body):
            keys[key] += 1
    for body in _jira_texts(jira) if jira else []:
        if key := find_jira_marker(body):
            keys[key] += 1
    twice = {key: n for key, n in keys.items() if n > 1}
    assert not twice, f"effects posted more than once: {twice}"


async def _database_text(db_url: str) -> str:
    engine = create_engine(async_database_url(db_url))
    chunks: list[str] = []
    try:
        async with engine.connect() as conn:
            for table in TABLES:
                rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()  # noqa: S608 - fixed names
                chunks.extend(json.dumps([str(v) for v in row]) for row in rows)
    finally:
        await engine.dispose()
    return "\n".join(chunks)


def _redis_bytes(url: str) -> bytes:
    client: Any = redis.Redis.from_url(url, socket_connect_timeout=2)  # sync client; its stubs mix in async
    out: list[bytes] = []
    try:
        for key in client.scan_iter(count=500):
            out.append(key)
            kind = client.type(key)
            if kind == b"string":
                out.append(client.get(key) or b"")
            elif kind == b"zset":
                out.extend(member for member, _ in client.zrange(key, 0, -1, withscores=True))
            elif kind == b"list":
                out.extend(client.lrange(key, 0, -1))
            elif kind == b"hash":
                out.extend(b"".join(pair) for pair in client.hgetall(key).items())
    finally:
        client.close()
    return b"\n".join(out)


def _places(world: World) -> Iterable[tuple[str, bytes]]:
    for path in world.logs:
        if path.exists():
            yield f"log {path.name}", path.read_bytes()
    yield "database", asyncio.run(_database_text(world.db_url)).encode()
    if world.redis_url:
        yield "redis", _redis_bytes(world.redis_url)
    if world.gitlab:
        yield "gitlab simulator", "\n".join(_gitlab_texts(world.gitlab)).encode()
    if world.jira:
        yield "jira simulator", "\n".join(_jira_texts(world.jira)).encode()
    if world.model_log:
        yield "model server", json.dumps([r.body for r in world.model_log.all()], default=str).encode()
    yield "captured", "\n".join(world.extra_texts).encode()


def no_canary_anywhere(world: World) -> None:
    for where, blob in _places(world):
        for canary in world.canaries:
            assert canary.encode() not in blob, f"canary {canary[:12]}… found in {where}"


def check(world: World, *, settle_timeout_s: float = 60.0) -> None:
    """All three invariants; call at the end of every reliability case."""
    every_delivery_settles(world.db_url, settle_timeout_s)
    at_most_once_per_effect(world.gitlab, world.jira)
    no_canary_anywhere(world)
