"""The facade: relevant pages for a brief, landing and verifying pages, built from settings."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from bot.knowledge import Knowledge, PageError, knowledge_for
from bot.knowledge.index import Index
from bot.knowledge.wiki import Wiki
from config.settings import load_settings
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
