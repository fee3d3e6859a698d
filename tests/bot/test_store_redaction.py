"""What reaches the database is redacted: run input, reasons, activity and phase outputs (SQLite and
PostgreSQL); the webhook delivery itself is kept as GitLab or Jira sent it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import JSON, Text, text

from bot.redact import Redactor
from bot.store import inbox, proposals, runs, status
from bot.store.effects import StoreEffectLedger
from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from bot.store.redacted import RedactedJSON, RedactedText
from bot.store.tables import UNREDACTED_COLUMNS, Base, Phase
from bot.triggers import TicketLabelled
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
    action = Enqueue(
        kind="probe",
        subject="jira:DEMO-1",
        origin="test:1",
        input=TicketLabelled(issue_id="1", summary=f"use {CANARY}"),
    )
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


async def _columns(url: str, query: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(query))).fetchall()]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("redacting", [True, False])
async def test_a_phase_output_is_redacted_value_by_value_and_stays_valid_json(
    db_url: str, redacting: bool
) -> None:
    """A secret wrapped across lines inside a JSON string, or base64-encoded, is still caught, and a
    cut-off private key cannot swallow the rest of the document."""
    url = async_database_url(db_url)
    engine = create_engine(url, Redactor([CANARY]) if redacting else None)
    await upgrade(engine)
    sm = sessionmaker(engine)
    action = Enqueue(kind="probe", subject="jira:DEMO-2", origin="test:2", input=TicketLabelled(issue_id="2"))
    recorded = await inbox.record(sm, inbox.Incoming("jira", "key-2", "jira:x", {}, "jira:dan"), action)
    assert recorded.run_id is not None
    wrapped = f"E   token = '{CANARY[:9]}\n>   {CANARY[9:]}'"
    encoded = base64.b64encode(f"ci:{CANARY}:x".encode()).decode()
    output = {
        "feedback": wrapped,
        "key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7 (output cut off here",
        "checks": [{"command": "make test", "log": f"auth {encoded}"}],
        "after": "kept",
    }
    async with sm.begin() as session:
        session.add(Phase(run_id=recorded.run_id, name="validate", position=0, status="done", output=output))
    await engine.dispose()

    [(stored,)] = await _columns(url, "SELECT output FROM phases")
    stored_text = stored if isinstance(stored, str) else json.dumps(stored)
    document = json.loads(stored_text)
    flat = stored_text.replace("\\n", "").replace(">   ", "")
    leaked = CANARY in flat or encoded in stored_text
    assert leaked is not redacting
    assert document["after"] == "kept"  # the document is whole
    if redacting:
        assert document["key"] == "[redacted]"
        assert document["feedback"].startswith("E   token = '[redacted]")


async def test_identifiers_routing_and_deliveries_are_not_rewritten(db_url: str) -> None:
    """A (short) secret that happens to occur in an id, an effect key or a proposal's worktree path must
    not change them: lookups and pushes depend on them."""
    url = async_database_url(db_url)
    engine = create_engine(url, Redactor(["baton", CANARY]))
    await upgrade(engine)
    sm = sessionmaker(engine)
    action = Enqueue(
        kind="probe",
        subject="jira:DEMO-3",
        origin="baton:origin:3",
        input=TicketLabelled(issue_id="3", summary="baton"),
    )
    recorded = await inbox.record(sm, inbox.Incoming("jira", "key-3", "jira:x", {}, "jira:dan"), action)
    assert recorded.run_id is not None
    ledger = StoreEffectLedger(sm)
    await ledger.begin(f"run:{recorded.run_id}:baton:{CANARY[:6]}", "gitlab.note", recorded.run_id)
    await ledger.complete(f"run:{recorded.run_id}:baton:{CANARY[:6]}", "42")
    target = {"worktree": "/srv/.baton/worktrees/DEMO-3", "branch": "baton/DEMO-3-fix"}
    proposal = await proposals.create(sm, recorded.run_id, "jira:DEMO-3", "a" * 40, "h", target)
    assert await runs.claim(sm, recorded.run_id, "worker") is not None  # an UPDATE … WHERE id = ?
    await runs.finish(sm, recorded.run_id, status.FAILED, "worker", "the password is baton, see baton/DEMO-3")
    record = await ledger.get(f"run:{recorded.run_id}:baton:{CANARY[:6]}")
    again = await proposals.get(sm, proposal.id)
    await engine.dispose()

    assert record is not None and (record.status, record.external_id) == ("done", "42")
    assert again is not None and again.target == target
    [(origin, run_input, error)] = await _columns(url, "SELECT origin, input, error FROM runs")
    assert origin == "baton:origin:3"
    assert "[redacted]" in str(run_input) and error == "the password is [redacted], see baton/DEMO-3"


def test_every_free_text_column_is_redacted_or_listed_as_exempt() -> None:
    """A TEXT or JSON column added later must choose: a Redacted type, or a reason in UNREDACTED_COLUMNS."""
    unlisted = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            name = f"{table.name}.{column.name}"
            if isinstance(column.type, RedactedText | RedactedJSON):
                assert name not in UNREDACTED_COLUMNS
            elif isinstance(column.type, Text | JSON) and name not in UNREDACTED_COLUMNS:
                unlisted.append(name)
    assert unlisted == []
    assert {"phases.output", "phases.error", "runs.error", "activity.message"} <= {
        f"{t.name}.{c.name}"
        for t in Base.metadata.sorted_tables
        for c in t.columns
        if isinstance(c.type, RedactedText | RedactedJSON)
    }
