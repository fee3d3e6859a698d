"""The search index: a derived SQLite FTS5 database over the wiki, never the source of truth.

`refresh(wiki)` (a coroutine: it reads the wiki through git) brings the index to the wiki's head: from the
changes since the last indexed commit, or by a full rebuild into a fresh file swapped in by rename when the
index is missing, unreadable, corrupt or of another schema. `search` is synchronous (one SQLite query,
a few milliseconds, but up to the busy timeout while another process writes the index: async callers run
it in a thread) and never raises on what it is given or on a broken database: a broken index answers
nothing and is rebuilt by the next `refresh`; a busy one answers nothing and is kept.

Ranking: BM25 over title, modules and body with column weights; the query text is shaped first (words
folded like the FTS tokenizer folds them, stop words dropped, the rarest terms kept, each one quoted so
FTS syntax in ticket text is inert). Pages whose `modules` cover the paths given are added and boosted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from bot.errors import BatonError
from bot.knowledge.modules import (
    AROUND,
    EXACT,
    INSIDE,
    coverage,
    has_glob,
    literal_key,
    lookup_keys,
    normalize,
)
from bot.knowledge.pages import Page

SCHEMA_VERSION = "2"
TITLE_WEIGHT, MODULES_WEIGHT, BODY_WEIGHT = 6.0, 3.0, 1.0
MAX_QUERY_CHARS = 20_000  # ticket text past this adds nothing a search needs
MAX_CANDIDATE_TERMS = 200  # distinct words looked up in the vocabulary
TOP_TERMS = 10  # at most this many of the rarest terms go into the MATCH
POSTINGS_BUDGET = 4000  # ... and only while their pages add up to this many (BM25 scores every match)
COMMON_FRACTION = 0.2  # a term in more than this share of pages says little: dropped while rarer ones exist
BUSY_TIMEOUT_S = 5.0  # how long a query waits for another process's write to the index
CANDIDATES = 40  # text matches ranked before module boosts
MODULE_ROWS = 5000  # module patterns looked at per search, at most
MODULE_BOOST = 0.8  # added to a page's normalized text score, times how closely its modules cover a path
MODULE_ONLY_SCORE = 0.3  # a page found by its modules alone starts here (times coverage)
OTHER_KIND_FACTOR = 0.8  # ... less when it is not a decision or a pitfall
FIRST_KINDS = ("decision", "pitfall")
TOKENIZER = "unicode61 remove_diacritics 2"
_STOP_TEXT = """a about above after again against all also am an and any are as at be because been before
    being below between both but by can cannot could did do does doing done down during each else etc even
    ever every few for from further get gets got had has have having he her here hers him his how however i if
    in into is it its itself just let like may me might more most must my no nor not now of off on once
    only or other our ours out over own per please same shall she should since so some such than that the
    their them then there these they this those though through thus to too under until up upon us use used
    using very via was way we were what when where which while who whom why will with within without would
    yet you your yours able add added adds also cant currently dont etc hi hello thanks thank want wants
    need needs needed make makes made new instead seems seem see still work works working one two"""
STOP_WORDS = frozenset(_STOP_TEXT.split())
_WORD_RE = re.compile(r"[^\W_]+")
log = logging.getLogger(__name__)


class PageSource(Protocol):
    """What the index reads from the wiki (`bot.knowledge.wiki.Wiki` satisfies it)."""

    async def head(self) -> str | None: ...

    async def pages(self, at: str | None = None) -> list[Page]: ...

    async def load(
        self, paths: Sequence[str], at: str | None = None
    ) -> tuple[list[Page], list[tuple[str, str]]]: ...

    async def changed_since(self, sha: str | None, at: str | None = None) -> tuple[list[str], list[str]]: ...


@dataclass(frozen=True)
class Hit:
    """A page found by a search, its score (higher is better) and whether its modules cover a given path."""

    page: Page
    score: float
    modules_matched: bool = False


class _Stale(Exception):
    """Another process moved the index while this one prepared its changes."""


def fold(word: str) -> str:
    """A word as the FTS tokenizer stores it: lower case, diacritics removed."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _searchable(word: str) -> bool:
    """Numbers of three digits or more (error codes, ports) count; shorter ones and stop words do not."""
    if word.isdigit():
        return len(word) >= 3
    return len(word) > 1 and word not in STOP_WORDS


def query_terms(text: str) -> list[str]:
    """The distinct searchable words of `text` in order: folded, no stop words, no single characters."""
    seen: dict[str, None] = {}
    for match in _WORD_RE.finditer(text[:MAX_QUERY_CHARS]):
        word = fold(match.group())
        if _searchable(word):
            seen.setdefault(word[:64], None)
            if len(seen) >= MAX_CANDIDATE_TERMS:
                break
    return list(seen)


def match_expression(terms: Iterable[str]) -> str:
    """An FTS5 MATCH of any of `terms`, each a quoted string (quotes doubled), so no word is syntax."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def choose_terms(
    frequencies: dict[str, int], pages: int, top: int = TOP_TERMS, budget: int = POSTINGS_BUDGET
) -> list[str]:
    """The rarest terms present in the index: at most `top`, and (beyond the first) only while their page
    counts add up to at most `budget`; terms in more than COMMON_FRACTION of the pages only when nothing
    rarer is left."""
    present = sorted((df, term) for term, df in frequencies.items() if df > 0)
    limit = max(1, int(pages * COMMON_FRACTION))
    ranked = [(df, term) for df, term in present if df <= limit] or present[:1]
    chosen: list[str] = []
    spent = 0
    for df, term in ranked[:top]:
        if chosen and spent + df > budget:
            break
        chosen.append(term)
        spent += df
    return chosen


def page_terms(page: Page) -> set[str]:
    """The distinct words of a page as `query_terms` folds them: what the document frequencies count."""
    text = f"{page.title} {' '.join(page.modules)} {page.body}"
    return {word if word.isascii() else fold(word) for word in _WORD_RE.findall(text.lower())}


class Index:
    """The FTS5 index at `db_path` (created on first use; safe to delete: it is rebuilt from the wiki)."""

    def __init__(self, db_path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.db_path = Path(db_path)
        self._busy_ms = max(0, int(busy_timeout_s * 1000))
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None

    # -- the public surface ----------------------------------------------------------------------

    async def refresh(self, wiki: PageSource) -> int:
        """Bring the index to the wiki's head; how many pages were (re)indexed or removed. A missing,
        corrupt or foreign index is rebuilt; an index that cannot even be written is logged, not raised;
        one that another process kept locked past the busy timeout is left for a later refresh (0)."""
        head = await wiki.head()
        for _ in range(3):
            try:
                indexed = await asyncio.to_thread(self._head)
            except sqlite3.Error as exc:
                if _busy(exc):
                    return _not_now()
                self._discard(exc)
                indexed = None
            if indexed == head and await asyncio.to_thread(self._usable):
                return 0
            if indexed is None or head is None:
                break
            try:
                return await self._incremental(wiki, indexed, head)
            except _Stale:
                head = await wiki.head()
            except (sqlite3.Error, OSError, BatonError) as exc:
                if isinstance(exc, sqlite3.Error) and _busy(exc):
                    return _not_now()
                log.warning("knowledge index: incremental refresh failed (%s); rebuilding", exc)
                break
        return await self._full(wiki, head)

    async def _full(self, wiki: PageSource, head: str | None) -> int:
        pages = await wiki.pages(at=head) if head is not None else []
        try:
            return await asyncio.to_thread(self._rebuild, pages, head)
        except (sqlite3.Error, OSError) as exc:
            log.error("knowledge index cannot be rebuilt at %s: %s", self.db_path, exc)
            return 0

    def search(self, text: str, modules: Sequence[str] = (), limit: int = 8) -> list[Hit]:
        """The pages best matching `text` (any length, any content) and covering `modules`, best first."""
        if limit <= 0:
            return []
        paths = [normalize(m) for m in modules if isinstance(m, str) and normalize(m)][:50]
        try:
            with self._lock:
                conn = self._connection()
                if conn is None:
                    return []
                return self._search(conn, text if isinstance(text, str) else "", paths, limit)
        except sqlite3.Error as exc:
            log.warning("knowledge index unusable for this search (%s: %s)", type(exc).__name__, exc)
            self._discard(exc)
            return []

    def indexed_head(self) -> str | None:
        """The wiki commit the index reflects; None when empty, missing, corrupt or of another schema."""
        try:
            return self._head()
        except sqlite3.Error as exc:
            self._discard(exc)
            return None

    def _head(self) -> str | None:
        with self._lock:
            conn = self._connection()
            return None if conn is None else _meta(conn, "head")

    def count(self) -> int:
        """How many pages the index holds (0 when it is unusable)."""
        try:
            with self._lock:
                conn = self._connection()
                return 0 if conn is None else int(_meta(conn, "pages") or 0)
        except sqlite3.Error as exc:
            self._discard(exc)
            return 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn, self._identity = None, None

    # -- searching -------------------------------------------------------------------------------

    def _search(self, conn: sqlite3.Connection, text: str, paths: Sequence[str], limit: int) -> list[Hit]:
        terms = query_terms(text)
        scores = _text_scores(conn, terms, max(CANDIDATES, limit * 3)) if terms else {}
        covered = _module_coverage(conn, paths) if paths else {}
        ranked: list[tuple[float, int, float]] = []
        for rowid in scores.keys() | covered.keys():
            base = scores.get(rowid, 0.0)
            cover, first = covered.get(rowid, (0.0, False))
            if base:
                score = base + MODULE_BOOST * cover
            else:
                score = MODULE_ONLY_SCORE * cover * (1.0 if first else OTHER_KIND_FACTOR)
            ranked.append((score, rowid, cover))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        pages = load_pages(conn, [rowid for _, rowid, _ in ranked[:limit]])
        hits = [Hit(pages[rowid], round(score, 6), cover > 0.0) for score, rowid, cover in ranked[:limit]
                if rowid in pages]  # fmt: skip
        hits.sort(key=lambda h: (-h.score, h.page.path))
        return hits

    # -- connection and maintenance ----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection | None:
        """The open connection (reopened when the file was swapped); None when there is no usable index."""
        try:
            stat = os.stat(self.db_path)
        except FileNotFoundError:
            self.close()
            return None
        identity = (stat.st_dev, stat.st_ino)
        if self._conn is None or identity != self._identity:
            self.close()
            conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            try:
                if _meta(conn, "schema") != SCHEMA_VERSION:
                    conn.close()
                    return None
            except sqlite3.Error:
                conn.close()
                raise
            self._conn, self._identity = conn, identity
        return self._conn

    def _usable(self) -> bool:
        try:
            with self._lock:
                return self._connection() is not None
        except sqlite3.Error as exc:
            self._discard(exc)
            return False

    def _discard(self, exc: sqlite3.Error) -> None:
        """Forget a broken index file (the next refresh rebuilds it); one that is only busy (another
        process held its write lock past the busy timeout) is kept."""
        if _busy(exc):
            return
        with self._lock:
            self.close()
            for suffix in ("", "-journal", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{self.db_path}{suffix}")

    async def _incremental(self, wiki: PageSource, indexed: str, head: str) -> int:
        changed, deleted = await wiki.changed_since(indexed, at=head)
        pages, _ = await wiki.load(changed, at=head)
        return await asyncio.to_thread(self._apply, pages, [*changed, *deleted], indexed, head)

    def _apply(self, pages: Sequence[Page], paths: Sequence[str], indexed: str, head: str) -> int:
        with self._lock:
            conn = self._connection()
            if conn is None:
                raise sqlite3.DatabaseError("the index disappeared")
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = _meta(conn, "head")
                if now == head:
                    conn.execute("ROLLBACK")
                    return 0
                if now != indexed:
                    raise _Stale
                _remove(conn, paths)
                _insert(conn, pages, count_terms=True)
                _set_meta(conn, "head", head)
                _set_meta(conn, "pages", str(conn.execute("SELECT count(*) FROM pages").fetchone()[0]))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return len(set(paths))

    def _rebuild(self, pages: Sequence[Page], head: str | None) -> int:
        """Write a whole new index next to the old one and swap it in by rename."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.db_path.with_name(f".{self.db_path.name}.{os.getpid()}.{threading.get_ident()}.new")
        staging.unlink(missing_ok=True)
        conn = sqlite3.connect(staging, isolation_level=None)
        try:
            conn.executescript(SCHEMA)
            conn.execute("BEGIN")
            _insert(conn, pages, count_terms=False)
            conn.execute("INSERT INTO terms (term, df) SELECT term, doc FROM vocab")
            _set_meta(conn, "schema", SCHEMA_VERSION)
            _set_meta(conn, "head", head or "")
            _set_meta(conn, "pages", str(len(pages)))
            conn.execute("COMMIT")
            conn.execute("INSERT INTO fts(fts) VALUES ('optimize')")
        finally:
            conn.close()
        with self._lock:
            self.close()
            for suffix in ("-journal", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{self.db_path}{suffix}")
            os.replace(staging, self.db_path)
        log.info("knowledge index rebuilt: %d pages at %s", len(pages), (head or "-")[:12])
        return len(pages)


SCHEMA = f"""
PRAGMA journal_mode = DELETE;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE pages (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, page TEXT NOT NULL);
CREATE TABLE modules (
    page_id INTEGER NOT NULL, key TEXT NOT NULL, pattern TEXT NOT NULL, first INTEGER NOT NULL
);
CREATE INDEX modules_key ON modules (key);
CREATE INDEX modules_page ON modules (page_id);
CREATE TABLE terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
CREATE VIRTUAL TABLE fts USING fts5 (title, modules, body, tokenize = '{TOKENIZER}');
CREATE VIRTUAL TABLE vocab USING fts5vocab (fts, row);
"""
# `terms` holds document frequencies for choosing query terms: fts5vocab computes them by reading a
# term's whole posting list (tens of milliseconds per ticket at 100k pages), this table is one lookup.
# A rebuild copies them from fts5vocab; an incremental refresh adjusts them by the pages' own words.


def _not_now() -> int:
    log.warning("knowledge index busy (another process is writing it): not refreshed now")
    return 0


def _busy(exc: sqlite3.Error) -> bool:
    """Whether `exc` only says the database is locked by another connection (nothing is broken)."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return (row[0] or None) if row else None


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def _count_terms(conn: sqlite3.Connection, page: Page, delta: int) -> None:
    rows = [(term, delta) for term in page_terms(page)]
    conn.executemany(
        "INSERT INTO terms (term, df) VALUES (?, max(?, 0)) ON CONFLICT (term) DO UPDATE SET df = df + ?",
        [(term, d, d) for term, d in rows],
    )


def _remove(conn: sqlite3.Connection, paths: Iterable[str]) -> None:
    for path in paths:
        row = conn.execute("SELECT id, page FROM pages WHERE path = ?", (path,)).fetchone()
        if row is None:
            continue
        with contextlib.suppress(ValidationError):
            _count_terms(conn, Page.model_validate_json(row[1]), -1)
        for table, column in (("fts", "rowid"), ("modules", "page_id"), ("pages", "id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (row[0],))  # noqa: S608 - fixed names
    conn.execute("DELETE FROM terms WHERE df <= 0")


def _insert(conn: sqlite3.Connection, pages: Iterable[Page], *, count_terms: bool) -> None:
    for page in pages:
        rowid = conn.execute(
            "INSERT INTO pages (path, page) VALUES (?, ?)", (page.path, page.model_dump_json())
        ).lastrowid
        conn.execute(
            "INSERT INTO fts (rowid, title, modules, body) VALUES (?, ?, ?, ?)",
            (rowid, page.title, " ".join(page.modules), page.body),
        )
        first = int(page.kind in FIRST_KINDS)
        conn.executemany(
            "INSERT INTO modules (page_id, key, pattern, first) VALUES (?, ?, ?, ?)",
            [(rowid, literal_key(m), m, first) for m in page.modules],
        )
        if count_terms:
            _count_terms(conn, page, 1)


def _text_scores(conn: sqlite3.Connection, terms: Sequence[str], limit: int) -> dict[int, float]:
    """rowid → text score in (0, 1] (the best match scores 1) for the rarest of `terms`."""
    marks = ",".join("?" * len(terms))
    query = f"SELECT term, df FROM terms WHERE term IN ({marks})"  # noqa: S608 - placeholders only
    frequencies = dict(conn.execute(query, terms).fetchall())
    chosen = choose_terms(frequencies, int(_meta(conn, "pages") or 0))
    if not chosen:
        return {}
    rows = conn.execute(
        "SELECT rowid, bm25(fts, ?, ?, ?) AS rank FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT ?",
        (TITLE_WEIGHT, MODULES_WEIGHT, BODY_WEIGHT, match_expression(chosen), limit),
    ).fetchall()
    best = -rows[0][1] if rows and rows[0][1] < 0 else 1.0
    return {rowid: max(-rank, 0.0) / best for rowid, rank in rows}


def _module_coverage(conn: sqlite3.Connection, paths: Sequence[str]) -> dict[int, tuple[float, bool]]:
    """rowid → (closest coverage of any of `paths` by the page's modules, is it a decision or pitfall)."""
    found: dict[int, tuple[float, bool]] = {}
    for path in paths:
        keys = lookup_keys(path)
        marks = ",".join("?" * len(keys))
        query = (
            f"SELECT page_id, key, pattern, first FROM modules WHERE key IN ({marks}) "  # noqa: S608
            "UNION ALL SELECT page_id, key, pattern, first FROM modules WHERE key >= ? AND key < ? LIMIT ?"
        )
        for rowid, key, pattern, first in conn.execute(query, (*keys, path + "/", path + "0", MODULE_ROWS)):
            if has_glob(pattern):
                cover = coverage(pattern, path)
            else:  # the key is the pattern: the path itself, a directory above it, or something below it
                cover = EXACT if key == path else INSIDE if path.startswith(key + "/") else AROUND
            if cover > found.get(rowid, (0.0, False))[0]:
                found[rowid] = (cover, bool(first))
    return found


def load_pages(conn: sqlite3.Connection, rowids: Iterable[int]) -> dict[int, Page]:
    """The pages stored under `rowids` (rows that no longer validate are skipped, with a warning)."""
    ids = list(rowids)
    pages: dict[int, Page] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for rowid, raw in conn.execute(f"SELECT id, page FROM pages WHERE id IN ({marks})", chunk):  # noqa: S608
            try:
                pages[rowid] = Page.model_validate_json(raw)
            except ValidationError:
                log.warning("knowledge index: an unreadable row for page id %d is skipped", rowid)
    return pages
