"""The worker's writes hold SQLite's write lock as briefly as they can (the inbox's writer in `baton serve`
waits for that lock): a single-statement write (the effect ledger, the heartbeat) commits inside its
statement, and a claim runs one statement after it took the lock, not two. Observed from outside, by a
second connection that tries to take the lock before and after every statement the worker's engine runs."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store import inbox, runs, status
from bot.store.effects import StoreEffectLedger
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.triggers import TicketLabelled
from handlers.actions import Enqueue


def _lock_free(path: Path) -> bool:
    """True if another connection could take the write lock right now."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        return False
    finally:
        probe.close()


@dataclass
class Watch:
    """Each statement the engine ran: its first word and table, whether the lock was held before it ran,
    and whether it was free once it had run."""

    path: Path
    seen: list[tuple[str, bool, bool]] = field(default_factory=list)
    _before: bool = True

    def before(self, *_: Any) -> None:
        self._before = _lock_free(self.path)

    def after(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        self.seen.append((" ".join(words[:3]), not self._before, _lock_free(self.path)))

    def under_lock(self) -> list[str]:
        return [what for what, held_before, _ in self.seen if held_before]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, Watch]]:
    path = tmp_path / "baton.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    watch = Watch(path)
    event.listen(engine.sync_engine, "before_cursor_execute", watch.before)
    event.listen(engine.sync_engine, "after_cursor_execute", watch.after)
    yield engine, watch
    await engine.dispose()


async def _queued_run(engine: AsyncEngine) -> str:
    action = Enqueue("implement", "jira:DEMO-1", "o:1", TicketLabelled(issue_key="DEMO-1", issue_id="1"))
    incoming = inbox.Incoming("jira", "k1", "jira:issue_updated", {"k": 1}, "jira:dan")
    recorded = await inbox.record(sessionmaker(engine), incoming, action)
    assert recorded.run_id is not None
    return recorded.run_id


async def test_an_effect_record_commits_inside_its_statement(store: tuple[AsyncEngine, Watch]) -> None:
    engine, watch = store
    ledger = StoreEffectLedger(sessionmaker(engine))
    watch.seen.clear()
    first = await ledger.begin("run:1:reply", "jira_comment", None)
    await ledger.complete("run:1:reply", "10001")
    again = await ledger.begin("run:1:reply", "jira_comment", None)  # the key exists: read back, not written
    writes = [s for s in watch.seen if s[0].startswith(("INSERT", "UPDATE"))]  # (the refused INSERT: none)
    assert [w for w, _, _ in writes] == ["INSERT INTO effects", "UPDATE effects SET"]
    assert _lock_free(watch.path)
    assert all(free_after for _, _, free_after in writes), watch.seen  # the lock went with the statement
    assert watch.under_lock() == []
    assert (first.status, again.status, again.external_id) == ("pending", "done", "10001")
    assert await ledger.get("run:1:reply") == again


async def test_a_heartbeat_commits_inside_its_statement(store: tuple[AsyncEngine, Watch]) -> None:
    engine, watch = store
    sm = sessionmaker(engine)
    run_id = await _queued_run(engine)
    assert await runs.claim(sm, run_id, "w1") is not None
    before = (await runs.get(sm, run_id)).updated
    watch.seen.clear()
    await runs.touch(sm, run_id)
    assert [(w, free) for w, _, free in watch.seen] == [("UPDATE runs SET", True)]
    assert (await runs.get(sm, run_id)).updated > before


async def test_a_claim_runs_one_statement_under_the_lock_and_returns_the_claimed_run(
    store: tuple[AsyncEngine, Watch],
) -> None:
    engine, watch = store
    sm = sessionmaker(engine)
    run_id = await _queued_run(engine)
    watch.seen.clear()
    claimed = await runs.claim(sm, run_id, "w1")
    assert watch.under_lock() == ["INSERT INTO activity"], watch.seen  # not a SELECT of the run as well
    assert claimed is not None
    assert (claimed.id, claimed.status, claimed.attempts) == (run_id, status.RUNNING, 1)
    assert claimed.kind == "implement"
    assert isinstance(claimed.trigger, TicketLabelled)
    assert claimed.updated >= claimed.created
    await runs.finish(sm, run_id, status.WAITING, "w1", "a proposal waits")
    assert await runs.claim(sm, run_id, "w2") is None  # waiting for a person: not claimed
    assert (await runs.get(sm, run_id)).attempts == 1
    actions = [a["action"] for a in (await runs.detail(sm, run_id))["activity"]]
    assert actions.count("claimed") == 1
