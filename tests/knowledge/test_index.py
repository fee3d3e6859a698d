"""The FTS5 index: incremental refresh, rebuilds after damage, ranking, module boosts, hostile queries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.knowledge.index import Hit, Index, choose_terms, match_expression, query_terms
from bot.knowledge.wiki import Wiki
from tests.knowledge.support import commit_raw, page

RETRY = page(
    "GitLab rate limits: honour Retry-After",
    "A 429 from GitLab carries Retry-After; the client waits that long instead of backing off blindly.",
    modules=("bot/clients/gitlab.py",),
)
LOCK = page(
    "SQLite has one writer at a time",
    "Queue writers on an in-process lock; the busy handler costs tens of milliseconds under load.",
    kind="decision",
    modules=("bot/store/**",),
)
WEBHOOK = page(
    "Jira sends a comment twice",
    "comment_created and issue_updated both carry a new comment: dedup on the comment id.",
    modules=("handlers/jira_comment.py",),
)


@pytest.fixture
def wiki(tmp_path: Path) -> Wiki:
    return Wiki(tmp_path / "wiki")


@pytest.fixture
def index(tmp_path: Path) -> Index:
    return Index(tmp_path / "state" / "knowledge.db")


def paths(hits: list[Hit]) -> list[str]:
    return [hit.page.path for hit in hits]


async def test_refresh_follows_adds_changes_and_deletes(wiki: Wiki, index: Index) -> None:
    assert await index.refresh(wiki) == 0
    assert index.search("gitlab") == []
    await wiki.put([RETRY, LOCK], "two")
    assert await index.refresh(wiki) == 2
    assert await index.refresh(wiki) == 0
    assert index.indexed_head() == await wiki.head()
    assert paths(index.search("gitlab retry")) == [RETRY.path]

    changed = RETRY.model_copy(update={"body": "Honour the backoff header from the forge."})
    await wiki.put([changed, WEBHOOK], "change one, add one")
    assert await index.refresh(wiki) == 2  # incremental: only what changed
    assert index.search("blindly") == []
    assert paths(index.search("backoff header forge")) == [RETRY.path]
    assert paths(index.search("jira comment twice")) == [WEBHOOK.path]

    await wiki.remove([LOCK.path], "delete")
    assert await index.refresh(wiki) == 1
    assert index.search("sqlite writer") == []
    assert index.count() == 2


async def test_incremental_word_counts_match_a_rebuild(wiki: Wiki, index: Index, tmp_path: Path) -> None:
    await wiki.put([RETRY, LOCK], "two")
    await index.refresh(wiki)
    await wiki.put(
        [RETRY.model_copy(update={"body": "Now about naïve café retries, 429 and 503."}), WEBHOOK], "b"
    )
    await wiki.remove([LOCK.path], "c")
    await index.refresh(wiki)
    rebuilt = Index(tmp_path / "rebuilt.db")
    await rebuilt.refresh(wiki)

    def counts(db: Path) -> dict[str, int]:
        with sqlite3.connect(db) as conn:
            return dict(conn.execute("SELECT term, df FROM terms").fetchall())

    assert counts(index.db_path) == counts(rebuilt.db_path)
    assert counts(index.db_path)["cafe"] == 1
    assert "sqlite" not in counts(index.db_path)  # only the deleted page had it
    assert index.count() == rebuilt.count() == 2


async def test_a_page_that_becomes_invalid_leaves_the_index(wiki: Wiki, index: Index) -> None:
    await wiki.put([RETRY, LOCK], "two")
    await index.refresh(wiki)
    commit_raw(wiki.root, {RETRY.path: b"no front matter any more\n"})
    assert await index.refresh(wiki) == 1
    assert index.search("gitlab retry") == []
    assert paths(index.search("sqlite writer")) == [LOCK.path]


GARBAGE = [
    ("random bytes", b"\x13\x37" * 5000),
    ("a truncated database", None),  # the first 1 KiB of a real index
    ("an empty file", b""),
    ("text", b"SQLite format 3\x00 but not really" + b"\xff" * 2000),
]


@pytest.mark.parametrize(("data", "open_first"), [(d, o) for _, d in GARBAGE for o in (False, True)])
async def test_a_damaged_index_never_raises_and_is_rebuilt(
    wiki: Wiki, index: Index, data: bytes | None, open_first: bool
) -> None:
    await wiki.put([RETRY, LOCK, WEBHOOK], "three")
    await index.refresh(wiki)
    if open_first:
        assert paths(index.search("gitlab retry")) == [RETRY.path]  # a connection is open and warm
    raw = index.db_path.read_bytes()
    index.db_path.write_bytes(raw[:1024] if data is None else data)
    assert paths(index.search("gitlab retry")) in ([], [RETRY.path])  # no exception, whatever it reads
    assert index.indexed_head() in (None, await wiki.head())
    assert await index.refresh(wiki) in (0, 3)
    assert paths(index.search("gitlab retry")) == [RETRY.path]
    assert index.count() == 3


async def test_an_index_of_another_schema_or_wiki_is_rebuilt(
    wiki: Wiki, index: Index, tmp_path: Path
) -> None:
    await wiki.put([RETRY], "one")
    index.db_path.parent.mkdir(parents=True)
    with sqlite3.connect(index.db_path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema', '0'), ('head', 'abc')")
    assert index.indexed_head() is None
    assert index.search("gitlab") == []
    assert await index.refresh(wiki) == 1
    assert paths(index.search("gitlab")) == [RETRY.path]

    other = Wiki(tmp_path / "other-wiki")  # the index now points at a commit this wiki never had
    await other.put([LOCK], "elsewhere")
    assert await index.refresh(other) == 1
    assert paths(index.search("gitlab sqlite writer")) == [LOCK.path]


async def test_a_deleted_index_is_rebuilt_by_the_next_refresh(wiki: Wiki, index: Index) -> None:
    await wiki.put([RETRY, LOCK], "two")
    await index.refresh(wiki)
    index.db_path.unlink()
    assert index.search("gitlab") == []
    assert index.indexed_head() is None
    assert await index.refresh(wiki) == 2
    assert paths(index.search("gitlab")) == [RETRY.path]


async def test_two_index_objects_on_one_file_stay_consistent(wiki: Wiki, tmp_path: Path) -> None:
    one, two = Index(tmp_path / "k.db"), Index(tmp_path / "k.db")
    await wiki.put([RETRY], "one")
    await one.refresh(wiki)
    assert paths(two.search("gitlab")) == [RETRY.path]
    await wiki.put([LOCK], "two")
    await two.refresh(wiki)
    assert await one.refresh(wiki) == 0
    assert paths(one.search("sqlite writer")) == [LOCK.path]
    one.db_path.unlink()
    await two.refresh(wiki)  # rebuilt into a new file: the first object reopens it
    assert paths(one.search("sqlite writer")) == [LOCK.path]


HOSTILE_QUERIES = [
    '"',
    '""""',
    "NEAR(",
    "NEAR(gitlab retry, 2)",
    "*",
    "gitl*",
    "-",
    "-gitlab",
    "gitlab AND OR NOT",
    "title:gitlab",
    "{title body}: gitlab",
    "^gitlab",
    "gitlab + retry",
    "(((((",
    "'; DROP TABLE pages; --",
    "\x00gitlab\x00",
    "ＧｉｔＬａｂ ｒｅｔｒｙ",
    "ﺍﻟﻌﺮﺑﻴﺔ עברית 中文 🙂🔥",
    "\u202egitlab\u202c",
    "the of and to a in",
    "",
    "   \n\t ",
    "a" * 10_000,
    ("gitlab retry " + "x" * 100 + " ") * 900,  # ~100 KB
    " ".join(f"w{i}" for i in range(20_000)),
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
async def test_hostile_queries_are_inert(wiki: Wiki, index: Index, query: str) -> None:
    await wiki.put([RETRY, LOCK, WEBHOOK], "three")
    await index.refresh(wiki)
    hits = index.search(query, modules=[query[:300], "../../etc", "**"], limit=5)
    assert len(hits) <= 5
    assert index.count() == 3  # nothing in a query reaches the SQL


def test_query_shaping_quotes_every_term_and_drops_stop_words() -> None:
    terms = query_terms('The "GitLab" client should NEAR( retry* on -429 errors, café; gitlab again')
    assert terms == ["gitlab", "client", "near", "retry", "429", "errors", "cafe"]
    assert match_expression(['a"b', "c"]) == '"a""b" OR "c"'
    assert choose_terms({"common": 900, "rare": 2, "mid": 50, "absent": 0}, 1000, top=2) == ["rare", "mid"]
    assert choose_terms({"common": 900}, 1000) == ["common"]  # only common words: still searched


async def test_title_matches_outrank_body_matches(wiki: Wiki, index: Index) -> None:
    in_title = page("Webhook signature verification", "Compare in constant time.")
    in_body = page("Security notes", "Every webhook signature goes through hmac.compare_digest.")
    filler = [page(f"Unrelated page {i}", f"Nothing about hooks here {i}.") for i in range(10)]
    await wiki.put([in_title, in_body, *filler], "pages")
    await index.refresh(wiki)
    assert paths(index.search("webhook signature"))[:2] == [in_title.path, in_body.path]


async def test_module_coverage_boosts_and_adds_pages(wiki: Wiki, index: Index) -> None:
    gitlab = page("Retries on the client", "Retry with backoff.", modules=("bot/clients/gitlab.py",))
    jira = page("Retries on the other client", "Retry with backoff.", modules=("bot/clients/jira.py",))
    store_adr = page("One writer", "Lock writers.", kind="decision", modules=("bot/store/**",))
    await wiki.put([gitlab, jira, store_adr], "pages")
    await index.refresh(wiki)

    plain = {hit.page.path: hit for hit in index.search("retry backoff")}
    assert set(plain) == {gitlab.path, jira.path}
    assert not any(hit.modules_matched for hit in plain.values())

    boosted = index.search("retry backoff", modules=["bot/clients/jira.py"])
    assert paths(boosted)[0] == jira.path
    assert boosted[0].modules_matched and not boosted[1].modules_matched
    assert boosted[0].score > boosted[1].score

    # a page found by its modules alone (no word in common with the text)
    found = index.search("retry backoff", modules=["bot/store/inbox.py"])
    assert store_adr.path in paths(found)
    assert next(h for h in found if h.page.path == store_adr.path).modules_matched
    assert paths(index.search("", modules=["bot/store/inbox.py"])) == [store_adr.path]
    assert index.search("", modules=["shell/cli.py"]) == []


async def test_rare_words_find_their_page_among_many(wiki: Wiki, index: Index) -> None:
    common = [
        page(f"Deploy note {i}", "The deploy pipeline runs the tests and the linters.") for i in range(40)
    ]
    needle = page("Pgbouncer transaction pooling", "Prepared statements break under transaction pooling.")
    await wiki.put([*common, needle], "many")
    await index.refresh(wiki)
    ticket = "The deploy pipeline fails: prepared statements error with pgbouncer after the tests run. " * 5
    assert paths(index.search(ticket, limit=3))[0] == needle.path


def test_an_index_file_that_is_a_directory_does_not_raise(tmp_path: Path) -> None:
    (tmp_path / "k.db").mkdir()
    index = Index(tmp_path / "k.db")
    assert index.search("x") == []
    assert index.indexed_head() is None
