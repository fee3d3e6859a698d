"""The wiki on real git repositories: atomic, idempotent writes, change lists, hostile files, a remote."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.git.errors import UnsafeInput
from bot.knowledge.pages import HARD_CAP_BYTES, Page, PageError, render_page
from bot.knowledge.wiki import UnknownCommit, Wiki, WikiError
from bot.sandbox.git_http import GitHttpBackend
from tests.git.repos import TOKEN, git, serve
from tests.knowledge.support import commit_raw, commits, page

RETRY = page("Honour Retry-After", "GitLab sends 429 with Retry-After.", modules=("bot/clients/gitlab.py",))
OWNER = page("Clients are owned by the platform team", kind="ownership", modules=("bot/clients/",))


@pytest.fixture
def wiki(tmp_path: Path) -> Wiki:
    return Wiki(tmp_path / "wiki")


async def test_a_new_wiki_is_an_empty_bare_repository(wiki: Wiki) -> None:
    assert await wiki.head() is None
    assert await wiki.pages() == []
    assert await wiki.problems() == []
    assert await wiki.changed_since(None) == ([], [])
    assert await wiki.get("pitfalls/none.md") is None
    assert (wiki.root / "HEAD").is_file()
    assert git("--git-dir", str(wiki.root), "rev-parse", "--is-bare-repository") == "true"


async def test_put_commits_pages_that_read_back(wiki: Wiki) -> None:
    sha = await wiki.put([RETRY, OWNER], "Two pages", author="Alice Example")
    assert sha == await wiki.head()
    assert await wiki.pages() == sorted([RETRY, OWNER], key=lambda p: p.path)
    assert await wiki.get(RETRY.path) == RETRY
    assert git("--git-dir", str(wiki.root), "log", "-1", "--format=%an|%s") == "Alice Example|Two pages"
    shown = git("--git-dir", str(wiki.root), "show", f"{sha}:{RETRY.path}")
    assert shown + "\n" == render_page(RETRY)


async def test_putting_identical_content_commits_nothing(wiki: Wiki) -> None:
    first = await wiki.put([RETRY, OWNER], "Two pages")
    assert await wiki.put([RETRY], "Again") == first
    assert await wiki.put([OWNER, RETRY], "And again") == first
    assert commits(wiki.root) == 1
    changed = RETRY.model_copy(update={"status": "verified"})
    second = await wiki.put([changed], "Verify")
    assert second != first
    assert commits(wiki.root) == 2
    assert await wiki.get(RETRY.path) == changed


async def test_any_person_name_can_author_a_commit(wiki: Wiki) -> None:
    await wiki.put([RETRY], "one", author="Ada <ada@example.test>\n\x00")
    await wiki.put([OWNER], "two", author="  <>  ")
    authors = git("--git-dir", str(wiki.root), "log", "--format=%an <%ae>").splitlines()
    assert authors == ["Baton <baton@localhost>", "Ada ada@example.test <baton@localhost>"]


async def test_put_refuses_nothing_and_two_pages_for_one_path(wiki: Wiki) -> None:
    with pytest.raises(PageError, match="at least one page"):
        await wiki.put([], "nothing")
    with pytest.raises(PageError, match="same path"):
        await wiki.put([RETRY, RETRY.model_copy(update={"body": "other"})], "twice")
    assert await wiki.head() is None


async def test_changed_since_lists_added_changed_and_deleted_pages(wiki: Wiki) -> None:
    first = await wiki.put([RETRY, OWNER], "Two pages")
    assert await wiki.changed_since(None) == (sorted([RETRY.path, OWNER.path]), [])
    assert await wiki.changed_since(first) == ([], [])
    glossary = page("MR", kind="glossary")
    await wiki.put([glossary, RETRY.model_copy(update={"body": "Changed."})], "Add and change")
    second = await wiki.remove([OWNER.path], "Remove ownership")
    assert await wiki.changed_since(first) == (sorted([glossary.path, RETRY.path]), [OWNER.path])
    assert await wiki.changed_since(first, at=second) == await wiki.changed_since(first)
    assert await wiki.remove(["pitfalls/never-there.md"], "no-op") == second


async def test_changed_since_an_unknown_commit_says_so(wiki: Wiki) -> None:
    await wiki.put([RETRY], "One")
    for sha in ["0" * 40, "f" * 40, "HEAD", "--all", "not a sha"]:
        with pytest.raises(UnknownCommit):
            await wiki.changed_since(sha)


async def test_files_pushed_by_hand_are_pages_or_problems(wiki: Wiki) -> None:
    await wiki.put([RETRY], "One")
    commit_raw(
        wiki.root,
        {
            "README.md": b"# Our wiki\n",  # for people: not a page, not a problem
            "images/diagram.png": b"\x89PNG\r\n\x1a\n\x00\x00",  # not markdown: ignored
            "pitfalls/no-header.md": b"# Forgot the front matter\n",
            "pitfalls/binary.md": b"\x00\x01\x02\x03",
            "pitfalls/huge.md": b"x" * (HARD_CAP_BYTES + 1),
            "pitfalls/bad status.md": render_page(OWNER).encode(),
            "pitfalls/*.md": render_page(OWNER).encode(),
            "decisions/odd.md": render_page(RETRY).replace("status: inferred", "status: gossip").encode(),
        },
        symlinks={"pitfalls/link.md": "../README.md"},
    )
    assert await wiki.pages() == [RETRY]
    problems = dict(await wiki.problems())
    assert sorted(problems) == [
        "decisions/odd.md",
        "pitfalls/*.md",
        "pitfalls/bad status.md",
        "pitfalls/binary.md",
        "pitfalls/huge.md",
        "pitfalls/link.md",
        "pitfalls/no-header.md",
    ]
    assert "unknown status 'gossip'" in problems["decisions/odd.md"]
    assert "binary content" in problems["pitfalls/binary.md"]
    assert "more than the" in problems["pitfalls/huge.md"]
    assert "symbolic link" in problems["pitfalls/link.md"]
    assert "page path" in problems["pitfalls/bad status.md"]
    with pytest.raises(PageError, match="no front matter"):
        await wiki.get("pitfalls/no-header.md")
    pages, problems_of_one = await wiki.load(["pitfalls/*.md", RETRY.path])  # names taken literally
    assert (pages, [path for path, _ in problems_of_one]) == ([RETRY], ["pitfalls/*.md"])


async def test_get_refuses_traversal_paths(wiki: Wiki) -> None:
    await wiki.put([RETRY], "One")
    for path in ["../HEAD", "/etc/passwd", "pitfalls/../../x.md", "HEAD:pitfalls/x.md"]:
        with pytest.raises(PageError):
            await wiki.get(path)


async def test_concurrent_writers_on_one_wiki_keep_every_page(tmp_path: Path) -> None:
    writers = [Wiki(tmp_path / "wiki") for _ in range(4)]
    pages = [page(f"Pitfall number {i}") for i in range(12)]
    await asyncio.gather(*(writers[i % 4].put([p], f"page {i}") for i, p in enumerate(pages)))
    assert await Wiki(tmp_path / "wiki").pages() == sorted(pages, key=lambda p: p.path)
    assert commits(tmp_path / "wiki") == 12


async def test_a_directory_that_is_not_a_wiki_is_refused(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("mine")
    with pytest.raises(WikiError, match="not a bare git repository"):
        await Wiki(tmp_path / "busy").head()


async def test_next_decision_number_follows_the_highest(wiki: Wiki) -> None:
    assert await wiki.next_decision_number() == 1
    adr = page("Use FTS5", kind="decision", path="decisions/0007-use-fts5.md")
    await wiki.put([adr, RETRY], "ADR")
    assert await wiki.next_decision_number() == 8


# -- a remote ---------------------------------------------------------------------------------------


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", str(bare))
    return bare


async def test_two_wikis_sharing_a_remote_see_each_others_pages(tmp_path: Path, remote: Path) -> None:
    one = Wiki(tmp_path / "one", remote=str(remote), sync_interval_s=0)
    two = Wiki(tmp_path / "two", remote=str(remote), sync_interval_s=0)
    first = await one.put([RETRY], "From one")
    assert git("--git-dir", str(remote), "rev-parse", "refs/heads/main") == first
    assert await two.pages() == [RETRY]
    second = await two.put([OWNER], "From two")
    assert await one.head() == second
    assert await one.changed_since(first) == ([OWNER.path], [])


async def test_a_push_refused_because_the_remote_moved_is_rebuilt_on_top(
    tmp_path: Path, remote: Path
) -> None:
    one = Wiki(tmp_path / "one", remote=str(remote), sync_interval_s=3600)
    await one.put([RETRY], "From one")
    commit_raw(remote, {"glossary/mr.md": render_page(page("MR", kind="glossary")).encode()})
    await one.put([OWNER], "Built on the stale head first")  # refused once, then rebuilt on the new head
    assert [p.path for p in await Wiki(tmp_path / "three", remote=str(remote)).pages()] == sorted(
        ["glossary/mr.md", OWNER.path, RETRY.path]
    )
    assert commits(remote) == 3


async def test_concurrent_writers_on_separate_clones_of_one_remote(tmp_path: Path, remote: Path) -> None:
    wikis = [Wiki(tmp_path / f"w{i}", remote=str(remote), sync_interval_s=0) for i in range(3)]
    pages = [page(f"Remote pitfall {i}") for i in range(6)]
    await asyncio.gather(*(wikis[i % 3].put([p], f"page {i}") for i, p in enumerate(pages)))
    assert await wikis[0].pages() == sorted(pages, key=lambda p: p.path)


async def test_update_changes_the_page_at_the_remote_head_not_a_stale_copy(
    tmp_path: Path, remote: Path
) -> None:
    stale = Wiki(tmp_path / "stale", remote=str(remote), sync_interval_s=3600)
    await stale.put([RETRY], "From stale")
    assert await stale.get(RETRY.path) == RETRY  # read (and synced) before the person's edits
    long_body = "A person's rewrite. " * 2000  # over the soft cap: read and written whole
    commit_raw(remote, {RETRY.path: render_page(RETRY.model_copy(update={"body": long_body})).encode()})
    seen: list[str] = []

    def promote(current: Page) -> Page:
        seen.append(current.body)
        return current.model_copy(update={"status": "verified"})

    written = await stale.update(RETRY.path, promote, "Verify", author="Alice")
    assert seen == [long_body.strip()]
    assert (written.status, written.body) == ("verified", long_body.strip())
    assert await Wiki(tmp_path / "reader", remote=str(remote)).get(RETRY.path, whole=True) == written
    assert commits(remote) == 3


async def test_update_refuses_missing_invalid_and_moved_pages(wiki: Wiki) -> None:
    with pytest.raises(PageError, match="no page"):
        await wiki.update(RETRY.path, lambda p: p, "on an empty wiki")
    await wiki.put([RETRY], "One")
    commit_raw(wiki.root, {"pitfalls/broken.md": b"# no header\n"})
    before = await wiki.head()
    with pytest.raises(PageError, match="no page"):
        await wiki.update("pitfalls/missing.md", lambda p: p, "missing")
    with pytest.raises(PageError, match="no front matter"):
        await wiki.update("pitfalls/broken.md", lambda p: p, "invalid")
    with pytest.raises(PageError, match="cannot move it"):
        await wiki.update(RETRY.path, lambda p: p.model_copy(update={"path": "pitfalls/x.md"}), "move")
    with pytest.raises(PageError):
        await wiki.update("../HEAD", lambda p: p, "traversal")
    assert await wiki.head() == before
    assert await wiki.update(RETRY.path, lambda p: p, "unchanged") == RETRY
    assert await wiki.head() == before


@pytest.fixture
def served_remote(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "served"
    (root / "team").mkdir(parents=True)
    git("init", "--quiet", "--bare", str(root / "team" / "wiki.git"))
    with serve(GitHttpBackend(root, TOKEN)) as base:
        yield f"{base}/team/wiki.git"


async def test_an_https_remote_authenticates_through_askpass_only(tmp_path: Path, served_remote: str) -> None:
    wiki = Wiki(tmp_path / "wiki", remote=served_remote, token=SecretStr(TOKEN), sync_interval_s=0)
    sha = await wiki.put([RETRY], "Over HTTP")
    assert await Wiki(tmp_path / "other", remote=served_remote, token=SecretStr(TOKEN)).head() == sha
    config = (tmp_path / "wiki" / "config").read_text()
    assert TOKEN not in config
    denied = Wiki(tmp_path / "denied", remote=served_remote, token=SecretStr("wrong-token-123"))
    assert await denied.head() is None  # reads go on from the (empty) local copy
    with pytest.raises(WikiError) as caught:
        await denied.sync()
    assert "wrong-token-123" not in str(caught.value)
    with pytest.raises(WikiError):
        await denied.put([OWNER], "refused")
    with pytest.raises(UnsafeInput):
        Wiki(tmp_path / "x", remote=served_remote.replace("http://", f"http://u:{TOKEN}@"))
