"""What reaches the database is redacted: run input, reasons, activity and phase outputs (SQLite and
PostgreSQL); the webhook delivery itself is kept as GitLab or Jira sent it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from bot.redact import Redactor
from bot.store import inbox, runs, status
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.store.tables import Phase
from config.settings import async_database_url
from handlers.actions import Enqueue

CANARY = "canary-store-secret-0b1c2d3e"


async def dump(url: str) -> str:
    """Every row of every table, as text, read without any redaction."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            tables = ["deliveries", "runs", "phases", "activity", "effects", "proposals"]
            rows = [str((await conn.execute(text(f"SELECT * FROM {t}"))).fetchall()) for t in tables]  # noqa: S608
    finally:
        await engine.dispose()
    return "\n".join(rows)


@pytest.mark.parametrize("redacting", [True, False])
async def test_stored_text_is_redacted_but_the_delivery_is_kept(
    db_url: str, tmp_path: Path, redacting: bool
) -> None:
    url = async_database_url(db_url)
    engine = create_engine(url, Redactor([CANARY]) if redacting else None)
    await upgrade(engine)
    sm = sessionmaker(engine)
    action = Enqueue(kind="probe", subject="jira:DEMO-1", origin="test:1", input={"brief": f"use {CANARY}"})
    incoming = inbox.Incoming("jira", "key-1", "jira:issue_updated", {"note": f"sent {CANARY}"}, "jira:dan")
    recorded = await inbox.record(sm, incoming, action)
    assert recorded.run_id is not None
    async with sm.begin() as session:
        await runs.add_activity(session, recorded.run_id, "worker", "failed", f"pytest said TOKEN={CANARY}")
        phase = Phase(run_id=recorded.run_id, name="validate", position=0, status="running", attempts=1)
        session.add(phase)
    async with sm.begin() as session:  # a phase's output is written by an UPDATE, as the engine does
        stored_phase = await session.get(Phase, phase.id)
        assert stored_phase is not None
        stored_phase.output = {"feedback": f"$ pytest\nE   assert '{CANARY}' == ''", "checks": [CANARY]}
    await runs.finish(sm, recorded.run_id, status.FAILED, "worker", f"AssertionError: {CANARY}\n> {CANARY}")
    await engine.dispose()

    stored = await dump(url)
    outside_deliveries = stored.split("\n", 1)[1]
    assert (CANARY in outside_deliveries) is not redacting  # without the redactor, the test sees it
    assert CANARY in stored.split("\n", 1)[0]  # the delivery row is what was sent
    if redacting:
        assert outside_deliveries.count("[redacted]") >= 6
