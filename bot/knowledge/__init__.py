"""The knowledge store: a wiki of pages in git, a derived search index, and the choice of what a brief gets.

    knowledge = knowledge_for(settings)
    pages = await knowledge.relevant(ticket_text, modules=["bot/clients/gitlab.py"], budget_tokens=2000)
    sha = await knowledge.land([page], "Pitfall learned on PROJ-7")
    page = await knowledge.verify("pitfalls/retry-after.md", who="alice")

The wiki (`wiki.Wiki`) is the source of truth; the index (`index.Index`) can be deleted at any time and is
rebuilt from it. Every method that touches the wiki is a coroutine, and the index's SQLite calls run in
a thread (another process may hold the index's write lock for seconds): the event loop never waits on them.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence

from bot.knowledge.index import Hit, Index
from bot.knowledge.pages import (
    KINDS,
    STATUSES,
    Kind,
    KnowledgeError,
    Page,
    PageError,
    Status,
    adr_body,
    page_path,
    parse_page,
    render_page,
)
from bot.knowledge.select import select
from bot.knowledge.wiki import UnknownCommit, Wiki, WikiError
from config.settings import Settings

SEARCH_LIMIT = 24  # hits considered for a brief before the budget cuts them down

__all__ = [
    "KINDS",
    "STATUSES",
    "Hit",
    "Index",
    "Kind",
    "Knowledge",
    "KnowledgeError",
    "Page",
    "PageError",
    "Status",
    "UnknownCommit",
    "Wiki",
    "WikiError",
    "adr_body",
    "knowledge_for",
    "page_path",
    "parse_page",
    "render_page",
    "select",
]


class Knowledge:
    """The wiki and its index together: what briefs, reviews and the learning loop call."""

    def __init__(self, wiki: Wiki, index: Index) -> None:
        self.wiki = wiki
        self.index = index

    async def refresh(self) -> int:
        """Bring the index to the wiki's head (incrementally when it can); pages (re)indexed."""
        return await self.index.refresh(self.wiki)

    async def search(self, text: str, modules: Sequence[str] = (), limit: int = 8) -> list[Hit]:
        """`Index.search` on an index brought up to date first."""
        await self._fresh()
        return await asyncio.to_thread(self.index.search, text, modules, limit)

    async def relevant(self, text: str, modules: Sequence[str], budget_tokens: int) -> list[Page]:
        """The pages a brief about `text` touching `modules` should show, most relevant first, within
        `budget_tokens`; the index is refreshed first when the wiki moved (or the index is broken)."""
        await self._fresh()
        hits = await asyncio.to_thread(self.index.search, text, modules, SEARCH_LIMIT)
        return select(hits, budget_tokens)

    async def land(self, pages: Sequence[Page], message: str, author: str = "Baton") -> str:
        """Commit `pages` to the wiki (nothing when unchanged) and index them; the commit SHA."""
        sha = await self.wiki.put(pages, message, author)
        await self.index.refresh(self.wiki)
        return sha

    async def verify(self, path: str, who: str) -> Page:
        """Mark the page at `path` `verified` by `who` (dated today) and commit it; the updated page,
        whole. The page is read at the commit the write builds on (`Wiki.update`), so an edit pushed since
        this worker last synced is kept. PageError when there is no such page (or it is not a valid one)."""
        today = datetime.date.today()
        verified = await self.wiki.update(
            path,
            lambda page: page.model_copy(update={"status": "verified", "updated": today}),
            f"Verify {path} ({who})",
            author=who,
        )
        await self.index.refresh(self.wiki)
        return verified

    async def _fresh(self) -> None:
        head = await self.wiki.head()
        if head != await asyncio.to_thread(self.index.indexed_head):
            await self.index.refresh(self.wiki)


def knowledge_for(settings: Settings) -> Knowledge:
    """The knowledge store the settings describe: BATON_WIKI_DIR (default <state_dir>/wiki), optionally
    mirroring BATON_WIKI_REMOTE (an https remote authenticates with BATON_GITLAB_TOKEN), and the index at
    BATON_KNOWLEDGE_INDEX (default <state_dir>/knowledge.db)."""
    remote = settings.wiki_remote or None
    token = settings.gitlab_token if remote and remote.startswith(("https://", "http://")) else None
    wiki = Wiki(settings.wiki_path, remote=remote, token=token, email=settings.git_author_email)
    return Knowledge(wiki, Index(settings.knowledge_index_path))
