"""The dashboard's pages in-process over a real SQLite store: what a person reads on each, hostile text
rendered as text, no secret ever on a page, and a store that is down."""

from __future__ import annotations

import asyncio
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert

from bot.store.engine import create_engine, sessionmaker
from bot.store.tables import Delivery
from shell.dashboard import pages
from shell.services import Services, build
from shell.wiring import load_manifest
from tests.dashboard.conftest import TOKEN, client_for, dashboard_settings
from tests.dashboard.seed import HOSTILE, Batch, command_run, ticket_run
from tests.support.deliveries import GITLAB_SECRET, JIRA_SECRET

NOW = datetime.now(UTC)
PAGES = (
    "/dashboard/",
    "/dashboard/proposals",
    "/dashboard/stopped",
    "/dashboard/costs",
    "/dashboard/costs?days=90",
)


async def seed(services: Services, batch: Batch) -> Batch:
    """Write `batch` through an engine without the redactor (as rows from before redaction would be)."""
    kept = Batch(
        list(batch.runs), list(batch.phases), list(batch.activity), list(batch.proposals), list(batch.effects)
    )
    engine = create_engine(services.settings.async_database_url)
    try:
        await batch.write(sessionmaker(engine))
    finally:
        await engine.dispose()
    return kept


def text_of(html: str) -> str:
    """The page's text without tags, roughly what a person reads."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_the_runs_list_shows_what_runs_and_filters(
    services: Services, signed_in: httpx.AsyncClient
) -> None:
    batch, rng = Batch(), random.Random(1)
    running = ticket_run(
        batch,
        rng,
        key="ALPHA-1",
        outcome="running",
        created=NOW - timedelta(minutes=5),
        summary="Add multiply",
    )
    shipped = ticket_run(
        batch, rng, key="BETA-2", outcome="shipped", created=NOW - timedelta(days=1), summary="Fix rounding"
    )
    command_run(
        batch, rng, key="BETA-2", kind="approve", args="6e40ffed9235", created=NOW - timedelta(hours=20)
    )
    written = await seed(services, batch)

    page = await signed_in.get("/dashboard/")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert (
        "3 runs" in shown and "Add multiply" in shown and "Fix rounding" in shown and "6e40ffed9235" in shown
    )
    row = text_of(re.search(rf'<tr data-run="{running}">.*?</tr>', page.text, re.S).group())  # type: ignore[union-attr]
    assert "running" in row and "2/6 done · implement running" in row and "ALPHA-1" in row
    cost = sum(p["cost_usd"] for p in written.phases if p["run_id"] == shipped)
    assert f"${cost:,.4f}" in text_of(page.text) and 'href="http://127.0.0.1:9/browse/BETA-2"' in page.text
    assert 'http-equiv="refresh"' in page.text

    waiting = text_of((await signed_in.get("/dashboard/?status=running")).text)
    assert "1 run;" in waiting and "Add multiply" in waiting and "Fix rounding" not in waiting
    by_kind = text_of((await signed_in.get("/dashboard/?kind=approve")).text)
    assert "1 run;" in by_kind and "6e40ffed9235" in by_kind
    by_subject = text_of((await signed_in.get("/dashboard/?subject=beta")).text)
    assert "2 runs" in by_subject and "Add multiply" not in by_subject
    ignored = text_of((await signed_in.get("/dashboard/?status=bogus&kind=<x>&page=-3")).text)
    assert "3 runs" in ignored  # unknown filter values mean "any"


async def test_pages_link_to_the_next_page_keeping_the_filters(
    services: Services, signed_in: httpx.AsyncClient
) -> None:
    batch, rng = Batch(), random.Random(2)
    for i in range(55):
        command_run(batch, rng, key=f"ALPHA-{i}", kind="status", args="", created=NOW - timedelta(minutes=i))
    await seed(services, batch)
    first = await signed_in.get("/dashboard/?kind=status")
    assert "page 1 of 2" in first.text and 'href="/dashboard/?kind=status&amp;page=2"' in first.text
    second = await signed_in.get("/dashboard/?kind=status&page=2")
    assert second.text.count("<tr data-run=") == 5 and "← newer" in second.text


async def test_one_run_shows_its_phases_cost_agents_brief_and_where_to_reply(
    services: Services, signed_in: httpx.AsyncClient
) -> None:
    batch, rng = Batch(), random.Random(3)
    run_id = ticket_run(
        batch,
        rng,
        key="ALPHA-7",
        outcome="proposed",
        created=NOW - timedelta(hours=3),
        summary="Add multiply",
    )
    written = await seed(services, batch)
    page = await signed_in.get(f"/dashboard/runs/{run_id}")
    assert page.status_code == 200
    shown = text_of(page.text)
    for phase in ("triage", "assemble", "implement", "validate", "review", "propose"):
        assert re.search(rf'data-phase="{phase}" data-status="done"', page.text)
    total = sum(p["cost_usd"] for p in written.phases if p["run_id"] == run_id)
    tokens = sum(p["input_tokens"] for p in written.phases if p["run_id"] == run_id)
    assert f"${total:,.4f}" in re.search(r'id="cost">([^<]+)<', page.text).group(1)  # type: ignore[union-attr]
    assert f"{tokens:,}" in shown and "41 s" in shown and "3.2 s" in shown  # agent and command time
    proposal = written.proposals[0]
    comment = next(e["external_id"] for e in written.effects if ":proposal:" in e["key"])
    assert re.search(r"Waiting for approval for 2 h \d+ min", shown) and f"/approve {proposal['id']}" in shown
    assert (
        f'href="http://127.0.0.1:9/browse/ALPHA-7?focusedCommentId={comment}#comment-{comment}"' in page.text
    )
    assert "Implemented ALPHA-7." in shown and "Looks right" in shown and "python -m pytest -q" in shown
    assert "<pre># Brief for ALPHA-7" in page.text and "waiting for /approve" in shown
    assert 'http-equiv="refresh"' not in page.text  # nothing moves while it waits


async def test_a_live_run_page_refreshes_itself_and_a_stopped_one_says_what_to_do(
    services: Services, signed_in: httpx.AsyncClient
) -> None:
    batch, rng = Batch(), random.Random(4)
    live = ticket_run(batch, rng, key="ALPHA-1", outcome="running", created=NOW)
    info = ticket_run(batch, rng, key="ALPHA-2", outcome="needs_info", created=NOW)
    human = ticket_run(batch, rng, key="ALPHA-3", outcome="needs_human", created=NOW)
    failed = ticket_run(batch, rng, key="ALPHA-4", outcome="failed", created=NOW)
    await seed(services, batch)
    page = await signed_in.get(f"/dashboard/runs/{live}")
    assert '<meta http-equiv="refresh" content="2">' in page.text
    assert 'data-phase="implement" data-status="running"' in page.text
    assert "Waiting for answers" in text_of((await signed_in.get(f"/dashboard/runs/{info}")).text)
    assert "Stopped for a person" in text_of((await signed_in.get(f"/dashboard/runs/{human}")).text)
    failing = text_of((await signed_in.get(f"/dashboard/runs/{failed}")).text)
    assert "Failed: phase implement failed" in failing and "/retry" in failing


@pytest.mark.parametrize("run_id", ["0" * 32, "zzzz", "%3Cscript%3E", "a" * 200, "..%2F..%2Fetc", "a%00b"])
async def test_an_unknown_run_is_404(signed_in: httpx.AsyncClient, run_id: str) -> None:
    answer = await signed_in.get(f"/dashboard/runs/{run_id}")
    assert answer.status_code == 404 and "<script>" not in answer.text


async def test_proposals_wait_with_how_long_and_the_comment_to_reply_to(
    services: Services, signed_in: httpx.AsyncClient
) -> None:
    batch, rng = Batch(), random.Random(5)
    older = ticket_run(
        batch,
        rng,
        key="ALPHA-1",
        outcome="proposed",
        created=NOW - timedelta(days=2, hours=1),
        summary="Older",
    )
    ticket_run(
        batch, rng, key="BETA-1", outcome="proposed", created=NOW - timedelta(hours=5), summary="Newer"
    )
    ticket_run(batch, rng, key="BETA-2", outcome="shipped", created=NOW - timedelta(hours=5), summary="Gone")
    written = await seed(services, batch)
    page = await signed_in.get("/dashboard/proposals")
    shown = text_of(page.text)
    assert shown.index("Older") < shown.index("Newer") and "Gone" not in shown
    assert re.search(r"<td class=\"num\"[^>]*>2 d( \d+ h)?</td>", page.text) and "4 h 5" in shown
    first = next(p for p in written.proposals if p["run_id"] == older)
    comment = next(e["external_id"] for e in written.effects if e["key"].startswith(f"run:{older}:proposal:"))
    assert f"/approve {first['id']}" in shown
    assert (
        f'class="reply" href="http://127.0.0.1:9/browse/ALPHA-1?focusedCommentId={comment}#comment-{comment}"'
        in page.text
    )
    assert 'Awaiting approval <span class="count">2</span>' in page.text


async def test_the_stopped_page_lists_what_waits_for_a_person_and_recent_failures(
    services: Services, signed_in: httpx.AsyncClient
) -> None:
    batch, rng = Batch(), random.Random(6)
    ticket_run(
        batch, rng, key="ALPHA-1", outcome="needs_info", created=NOW - timedelta(hours=4), summary="Vague one"
    )
    ticket_run(
        batch, rng, key="ALPHA-2", outcome="needs_human", created=NOW - timedelta(hours=3), summary="Hard one"
    )
    ticket_run(batch, rng, key="ALPHA-3", outcome="proposed", created=NOW, summary="Waits for approval")
    ticket_run(batch, rng, key="ALPHA-4", outcome="failed", created=NOW - timedelta(hours=1), summary="Broke")
    await seed(services, batch)
    shown = text_of((await signed_in.get("/dashboard/stopped")).text)
    stopped, failed = shown.split("Failed in the last 7 days")
    assert "Vague one" in stopped and "needs info" in stopped and "answer the questions" in stopped
    assert "Hard one" in stopped and "needs human" in stopped and "Waits for approval" not in stopped
    assert "Broke" in failed and "phase implement failed" in failed


async def test_the_cost_page_adds_up_and_draws_its_charts(
    services: Services, signed_in: httpx.AsyncClient
) -> None:
    batch, rng = Batch(), random.Random(7)
    runs = [
        ticket_run(batch, rng, key=f"ALPHA-{i}", outcome="shipped", created=NOW - timedelta(days=i))
        for i in range(5)
    ]
    ticket_run(batch, rng, key="BETA-1", outcome="rejected", created=NOW - timedelta(days=1))
    written = await seed(services, batch)
    page = await signed_in.get("/dashboard/costs")
    total = sum(p["cost_usd"] for p in written.phases)
    assert re.search(r'id="total-cost">([^<]+)<', page.text).group(1) == f"${total:,.2f}"  # type: ignore[union-attr]
    assert re.search(r'id="total-runs">([^<]+)<', page.text).group(1) == "6"  # type: ignore[union-attr]
    assert re.search(r'id="approval-rate">([^<]+)<', page.text).group(1) == "83%"  # type: ignore[union-attr]
    assert page.text.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart"') == 3
    assert "jira:ALPHA" in text_of(page.text) and len(runs) == 5
    for days in ("7", "90", "bogus", "-1", "100000"):
        answer = await signed_in.get(f"/dashboard/costs?days={days}")
        assert answer.status_code == 200
        assert f"<strong>{days if days in ('7', '90') else '30'} days</strong>" in answer.text


async def test_hostile_text_is_rendered_as_text_on_every_page(
    services: Services, signed_in: httpx.AsyncClient
) -> None:
    batch, rng = Batch(), random.Random(8)
    ids = [
        ticket_run(
            batch, rng, key=f"EVIL-{i}", outcome=outcome, created=NOW - timedelta(hours=i), text=HOSTILE
        )
        for i, outcome in enumerate(("proposed", "needs_info", "needs_human", "failed", "running"))
    ]
    command_run(batch, rng, key="EVIL-9", kind="reject", args=HOSTILE, created=NOW)
    batch.runs[0]["subject"] = f"jira:{HOSTILE}"  # even a subject that is not a ticket key
    await seed(services, batch)
    for path in (*PAGES, *(f"/dashboard/runs/{run_id}" for run_id in ids), f"/dashboard/?subject={HOSTILE}"):
        page = await signed_in.get(path)
        assert page.status_code == 200, path
        assert "<script" not in page.text and "<img" not in page.text and 'onerror="' not in page.text, path
        assert HOSTILE not in page.text, path
    run_page = await signed_in.get(f"/dashboard/runs/{ids[0]}")
    assert "&lt;img src=x onerror=&#34;window.__baton_xss=1" in run_page.text
    assert "&lt;script&gt;window.__baton_xss=2" in run_page.text


async def test_no_secret_reaches_a_page_even_from_rows_stored_without_redaction(
    services: Services, signed_in: httpx.AsyncClient
) -> None:
    settings = services.settings
    secrets = [TOKEN, GITLAB_SECRET, JIRA_SECRET, "gitlab-api-token-for-tests", "jira-api-token-for-tests"]
    leaked = " ".join(secrets) + " glpat-abcdefghijklmnopqrstu sk-ant-api03-aaaaaaaaaaaaaaaaaaaaaaaa"
    assert settings.dashboard_token is not None and settings.dashboard_token.get_secret_value() == TOKEN
    batch, rng = Batch(), random.Random(9)
    ids = [
        ticket_run(
            batch, rng, key=f"LEAK-{i}", outcome=outcome, created=NOW - timedelta(hours=i), text=leaked
        )
        for i, outcome in enumerate(("proposed", "needs_info", "failed"))
    ]
    command_run(batch, rng, key="LEAK-9", kind="revise", args=leaked, created=NOW)
    await seed(services, batch)
    async with services.sm.begin() as session:  # a raw webhook body is never shown either
        delivery = {"source": "jira", "dedup_key": "k", "event": "jira:issue_updated", "outcome": "enqueued"}
        payload = {"secret": leaked, "body": "RAW-WEBHOOK-BODY"}
        await session.execute(
            insert(Delivery), [{**delivery, "payload": payload, "received_at": NOW, "run_id": ids[0]}]
        )
    for path in (*PAGES, *(f"/dashboard/runs/{run_id}" for run_id in ids)):
        page = await signed_in.get(path)
        for secret in (*secrets, "glpat-abcdefghijklmnopqrstu", "sk-ant-api03-aaaa", "RAW-WEBHOOK-BODY"):
            assert secret not in page.text, (path, secret)
    assert "[redacted]" in (await signed_in.get(f"/dashboard/runs/{ids[0]}")).text


async def test_a_store_that_is_down_is_a_503_page_not_a_crash(tmp_path: Path) -> None:
    settings = dashboard_settings(tmp_path, "postgresql://postgres@127.0.0.1:9/nothing")
    services = build(settings, load_manifest(settings))
    try:
        async with client_for(services) as http:
            answer = await http.get(f"/dashboard/?token={TOKEN}")
            http.cookies.set("baton_dashboard", answer.cookies["baton_dashboard"], path="/dashboard")
            for path in PAGES:
                down = await http.get(path)
                assert down.status_code == 503 and "State store unavailable" in down.text
    finally:
        await services.close()


async def test_cost_figures_are_served_at_once_and_read_again_in_the_background(
    services: Services, signed_in: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def total(html: str) -> str:
        return re.search(r'id="total-runs">([^<]+)<', html).group(1)  # type: ignore[union-attr]

    batch, rng = Batch(), random.Random(10)
    ticket_run(batch, rng, key="ALPHA-1", outcome="shipped", created=NOW - timedelta(hours=1))
    await seed(services, batch)
    assert total((await signed_in.get("/dashboard/costs")).text) == "1"
    ticket_run(batch, rng, key="ALPHA-2", outcome="shipped", created=NOW - timedelta(hours=1))
    await seed(services, batch)
    assert total((await signed_in.get("/dashboard/costs")).text) == "1"  # the figures read a moment ago
    monkeypatch.setattr(pages, "REPORT_EVERY_S", 0)
    assert total((await signed_in.get("/dashboard/costs")).text) == "1"  # still served at once ...
    for _ in range(100):  # ... while they are read again in the background
        await asyncio.sleep(0.02)
        if total((await signed_in.get("/dashboard/costs")).text) == "2":
            break
    assert total((await signed_in.get("/dashboard/costs")).text) == "2"
    assert "Figures read" in (await signed_in.get("/dashboard/costs")).text


async def test_the_run_page_lists_the_team_knowledge_its_brief_used(
    services: Services, signed_in: httpx.AsyncClient
) -> None:
    batch, rng = Batch(), random.Random(11)
    run_id = ticket_run(batch, rng, key="ALPHA-1", outcome="proposed", created=NOW)
    assemble = next(p for p in batch.phases if p["run_id"] == run_id and p["name"] == "assemble")
    fact = {"path": "modules/billing/adr-7.md", "status": "verified", "kind": "decision", "title": HOSTILE}
    assemble["output"] = {**assemble["output"], "knowledge": [fact]}
    await seed(services, batch)
    page = await signed_in.get(f"/dashboard/runs/{run_id}")
    assert "Team knowledge in the brief" in page.text and "modules/billing/adr-7.md" in page.text
    assert "verified" in text_of(page.text) and HOSTILE not in page.text and "&lt;script&gt;" in page.text
