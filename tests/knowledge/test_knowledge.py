"""The facade: relevant pages for a brief, landing and verifying pages, built from settings."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import sqlite3
import time
from pathlib import Path

import pytest

from bot.knowledge import Knowledge, PageError, knowledge_for
from bot.knowledge.index import Index
from bot.knowledge.wiki import Wiki
from config.settings import load_settings
from tests.git.repos import git
from tests.knowledge.support import commits, page

PITFALL = page(
    "Retry-After on 429",
    "GitLab answers 429 with Retry-After; wait that long.",
    modules=("bot/clients/gitlab.py",),
)
ADR = page(
    "Store writes go through one lock",
    "## Context\n\nSQLite has one writer.\n\n## Decision\n\nA lock.\n\n## Consequences\n\nSerial writes.",
    kind="decision",
    modules=("bot/store/**",),
)


@pytest.fixture
def knowledge(tmp_path: Path) -> Knowledge:
    return Knowledge(Wiki(tmp_path / "wiki"), Index(tmp_path / "knowledge.db"))


async def test_relevant_refreshes_when_the_wiki_moved(knowledge: Knowledge) -> None:
    assert await knowledge.relevant("gitlab 429", ["bot/clients/gitlab.py"], 1000) == []
    await knowledge.wiki.put([PITFALL], "landed behind the facade's back")
    assert await knowledge.relevant("gitlab 429", ["bot/clients/gitlab.py"], 1000) == [PITFALL]


async def test_a_modules_adr_comes_with_any_ticket_touching_it_and_not_with_others(
    knowledge: Knowledge,
) -> None:
    await knowledge.land([PITFALL, ADR], "two")
    store = await knowledge.relevant("Add a column for the run's cost", ["bot/store/runs.py"], 1000)
    assert store == [ADR]
    other = await knowledge.relevant("Add a column for the run's cost", ["shell/cli.py"], 1000)
    assert ADR not in other


async def test_land_is_idempotent_and_verify_promotes(knowledge: Knowledge) -> None:
    first = await knowledge.land([PITFALL], "learned")
    assert await knowledge.land([PITFALL], "learned again") == first
    assert commits(knowledge.wiki.root) == 1
    verified = await knowledge.verify(PITFALL.path, who="Alice Example")
    assert (verified.status, verified.updated) == ("verified", datetime.date.today())
    assert await knowledge.wiki.get(PITFALL.path) == verified
    assert (await knowledge.relevant("gitlab 429", [], 1000))[0].status == "verified"
    with pytest.raises(PageError, match="no page"):
        await knowledge.verify("pitfalls/missing.md", who="alice")
    with pytest.raises(PageError):
        await knowledge.verify("../../etc/passwd", who="alice")


async def test_verify_keeps_every_byte_of_a_page_over_the_soft_cap(knowledge: Knowledge) -> None:
    body = "x" * 30_000 + "\nIMPORTANT TAIL"
    await knowledge.land([page("Big", body)], "a long page")
    verified = await knowledge.verify("pitfalls/big.md", who="alice")
    stored = git("--git-dir", str(knowledge.wiki.root), "show", "main:pitfalls/big.md")
    assert stored.endswith("\n\n" + body)
    assert "truncated by Baton" not in stored
    assert verified.body == body
    assert (await knowledge.wiki.get("pitfalls/big.md", whole=True)) == verified
    shown = await knowledge.wiki.get("pitfalls/big.md")  # what an agent reads is still cut
    assert shown is not None and shown.body.endswith("read it in the wiki]")


async def test_verify_keeps_an_edit_pushed_since_the_worker_last_synced(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", str(remote))
    stale = Wiki(tmp_path / "worker", remote=str(remote))  # fetches at most every 30 s for reads
    worker = Knowledge(stale, Index(tmp_path / "k.db"))
    await worker.land([PITFALL], "learned")
    fixed = PITFALL.model_copy(update={"body": "FIXED by a person.", "status": "human-provided"})
    await Wiki(tmp_path / "person", remote=str(remote), sync_interval_s=0).put([fixed], "a person's fix")
    verified = await worker.verify(PITFALL.path, who="alice")
    assert (verified.body, verified.status) == ("FIXED by a person.", "verified")
    final = await Wiki(tmp_path / "reader", remote=str(remote)).get(PITFALL.path)
    assert final == verified
    assert commits(remote) == 3
    assert (await worker.search("person fixed"))[0].page == verified


async def test_the_loop_keeps_beating_while_another_process_writes_the_index(knowledge: Knowledge) -> None:
    await knowledge.land([PITFALL], "one")
    assert await knowledge.search("gitlab 429")  # the index is built and open
    holder = sqlite3.connect(knowledge.index.db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # readers wait (up to the busy timeout) until it ends
    loop = asyncio.get_running_loop()
    loop.call_later(1.0, holder.execute, "COMMIT")
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    ticker = asyncio.create_task(tick())
    try:
        started = time.monotonic()
        hits = await knowledge.search("gitlab 429")
        waited = time.monotonic() - started
    finally:
        ticker.cancel()
        holder.close()
    assert [hit.page for hit in hits] == [PITFALL]  # answered once the writer was done
    assert waited >= 0.9
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.5
    assert len(ticks) >= 10


async def test_an_index_busy_past_the_timeout_answers_nothing_and_is_kept(tmp_path: Path) -> None:
    knowledge = Knowledge(Wiki(tmp_path / "wiki"), Index(tmp_path / "k.db", busy_timeout_s=0.1))
    await knowledge.land([PITFALL], "one")
    holder = sqlite3.connect(knowledge.index.db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert await knowledge.relevant("gitlab 429", [], 1000) == []
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert knowledge.index.db_path.is_file()
    assert knowledge.index.count() == 1
    assert await knowledge.relevant("gitlab 429", [], 1000) == [PITFALL]


async def test_relevant_still_answers_after_garbage_is_written_into_the_index(knowledge: Knowledge) -> None:
    await knowledge.land([PITFALL, ADR], "two")
    knowledge.index.db_path.write_bytes(b"garbage" * 1000)
    assert await knowledge.relevant("gitlab 429 retry", [], 1000) == [PITFALL]


async def test_relevant_survives_an_index_that_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "k.db").mkdir()  # a directory where the index file should be
    knowledge = Knowledge(Wiki(tmp_path / "wiki"), Index(tmp_path / "k.db"))
    await knowledge.land([PITFALL], "one")
    assert await knowledge.relevant("gitlab 429", [], 1000) == []


def test_knowledge_for_takes_its_paths_from_settings(tmp_path: Path) -> None:
    default = knowledge_for(load_settings({"BATON_STATE_DIR": str(tmp_path)}, check=False))
    assert default.wiki.root == tmp_path.absolute() / "wiki"
    assert default.index.db_path == tmp_path / "knowledge.db"
    assert default.wiki.remote is None
    configured = knowledge_for(
        load_settings(
            {
                "BATON_WIKI_DIR": str(tmp_path / "w"),
                "BATON_KNOWLEDGE_INDEX": str(tmp_path / "i.db"),
                "BATON_WIKI_REMOTE": "https://gitlab.example.test/team/wiki.git",
            },
            check=False,
        )
    )
    assert (configured.wiki.root, configured.index.db_path) == (tmp_path / "w", tmp_path / "i.db")
    assert configured.wiki.remote == "https://gitlab.example.test/team/wiki.git"
