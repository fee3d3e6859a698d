"""Knowledge search: latency at 10k and 100k pages and top-3 hit rate on a labelled set, vs a naive baseline.

Run: `python -m bench.search [--sizes 10000,100000] [--queries 300] [--seed 7]`

The labelled set is `bench/data/knowledge/`: 59 engineering-wiki pages (`wiki/`, ADRs, pitfalls,
ownership, glossary, ticket histories of a fictional payments company) and 40 tickets (`queries.yaml`:
title + description, the paths the change touches, the pages a good search ranks in its top 3), written
for this benchmark. The pages go through the real path: committed to a `Wiki` (git) and indexed by
`Index.refresh`; the hit rate there is "corpus alone". For the sizes, synthetic pages fill an index up to
N pages around the same 59 (titles, bodies and module paths drawn from a Zipf distribution over a
vocabulary that contains every word of the labelled set), so the labelled tickets are also scored among
N-59 distractors; the index is built with `Index`'s own rebuild, from pages held in memory.

Latency: ticket-length queries timed through `Index.search(text, modules, limit=8)` (query shaping, the
FTS5 query, module coverage, scoring and page loading) after a warm-up pass: over the 40 labelled tickets,
and over those plus synthetic tickets (40-220 words drawn like the pages, with stop words, 1-3 module
paths) up to `--queries`; p50/p99/max.

Naive baseline, in the same run on the same database file: every distinct word of the ticket, quoted, in
one FTS5 OR query ranked by plain `bm25()` (no column weights, no stop words, no term cap, no module
boost), LIMIT 8, pages loaded the same way: timed over the same 40 labelled tickets, and over a sample
of 20 synthetic ones (about a second each at 100k pages: their common words match most pages). Also
shown: the shaped search without the module paths (hit rate only).

Figures go to stdout and to `bench/results/search.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.knowledge.index import STOP_WORDS, Index, fold, load_pages, match_expression
from bot.knowledge.pages import Kind, Page, parse_page
from bot.knowledge.wiki import Wiki

DATA = Path(__file__).with_name("data") / "knowledge"
RESULTS = Path(__file__).with_name("results")
LIMIT = 8
TOP = 3
GOAL_P99_MS = 20.0
ZIPF_S = 1.05
VOCABULARY = 40_000
WARM_UP = 5
NAIVE_SAMPLE = 20
LABELLED = "40 labelled"
SYNTHETIC_KINDS: tuple[Kind, ...] = (
    *("pitfall", "pitfall", "pitfall", "pitfall", "pitfall", "decision", "decision"),
    *("history", "history", "history", "glossary", "ownership"),
)
_WORD = re.compile(r"[^\W_]+")

Search = Callable[[str, Sequence[str]], list[Page]]


@dataclass(frozen=True)
class Labelled:
    id: str
    text: str
    modules: tuple[str, ...]
    expected: frozenset[str]


@dataclass
class Latency:
    size: int
    method: str
    over: str  # which tickets
    queries: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class HitRate:
    size: int  # 0: the labelled corpus alone
    method: str
    hits: int
    queries: int

    @property
    def rate(self) -> float:
        return round(self.hits / self.queries, 3)


# -- the labelled set -------------------------------------------------------------------------------


def corpus_pages() -> list[Page]:
    root = DATA / "wiki"
    return [parse_page(str(f.relative_to(root)), f.read_bytes()) for f in sorted(root.rglob("*.md"))]


def labelled_queries() -> list[Labelled]:
    raw = yaml.safe_load((DATA / "queries.yaml").read_text())
    return [Labelled(q["id"], q["text"], tuple(q["modules"]), frozenset(q["expected"])) for q in raw]


async def index_corpus_through_git(pages: Sequence[Page], base: Path) -> Index:
    """The real path: the pages committed to a Wiki (git), then Index.refresh."""
    wiki = Wiki(base / "wiki")
    await wiki.put(pages, "The labelled corpus", author="Bench")
    index = Index(base / "corpus.db")
    assert await index.refresh(wiki) == len(pages)
    return index


# -- synthetic pages and tickets --------------------------------------------------------------------


class Zipf:
    """Words drawn with probability ~ 1/rank^s over a fixed vocabulary."""

    def __init__(self, words: Sequence[str], rng: random.Random) -> None:
        self.words = list(words)
        self.cum = list(itertools.accumulate(1.0 / (rank**ZIPF_S) for rank in range(1, len(words) + 1)))
        self.rng = rng

    def draw(self, k: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cum, k=k)


def vocabulary(pages: Sequence[Page], queries: Sequence[Labelled], rng: random.Random) -> list[str]:
    """Every word of the labelled set (shuffled into the ranks) plus pseudo-words up to VOCABULARY."""
    real = {fold(w) for p in pages for w in _WORD.findall(f"{p.title} {p.body}")}
    real |= {fold(w) for q in queries for w in _WORD.findall(q.text)}
    real -= STOP_WORDS
    syllables = ["ka", "lo", "mi", "ser", "tra", "vin", "po", "dex", "ru", "nal", "qui", "zo", "bel", "tor"]
    fake: set[str] = set()
    while len(fake) + len(real) < VOCABULARY:
        fake.add("".join(rng.choices(syllables, k=rng.randint(2, 4))))
    words = sorted(real) + sorted(fake - real)
    rng.shuffle(words)
    return words


def module_paths(rng: random.Random) -> list[str]:
    services = [f"svc{i:02d}" for i in range(60)]
    return [
        f"services/{s}/{sub}/{name}.py"
        for s in services
        for sub in ("api", "jobs", "models", "consumers")
        for name in rng.sample(["handlers", "views", "client", "store", "schema", "retry", "tasks"], 3)
    ]


def synthetic_pages(n: int, zipf: Zipf, modules: Sequence[str], rng: random.Random) -> list[Page]:
    pages = []
    for i in range(n):
        kind = rng.choice(SYNTHETIC_KINDS)
        title = " ".join(zipf.draw(rng.randint(4, 9))).capitalize()
        body = " ".join(zipf.draw(rng.randint(60, 250)))
        own = [rng.choice(modules).rsplit("/", 1)[0] + "/**" if rng.random() < 0.3 else rng.choice(modules)]
        pages.append(
            Page.model_construct(
                path=f"{kind}s/synthetic-{i:06d}.md",
                title=title,
                kind=kind,
                status="inferred",
                modules=tuple(own),
                source=f"SYN-{i}",
                updated=datetime.date(2024, 1, 1),
                body=body,
            )
        )
    return pages


def synthetic_tickets(n: int, zipf: Zipf, modules: Sequence[str], rng: random.Random) -> list[Labelled]:
    stop = sorted(STOP_WORDS)
    tickets = []
    for i in range(n):
        words = zipf.draw(rng.randint(40, 220))
        text = " ".join(w if rng.random() > 0.35 else f"{rng.choice(stop)} {w}" for w in words)
        paths = tuple(rng.sample(list(modules), rng.randint(1, 3)))
        tickets.append(Labelled(f"S{i}", text, paths, frozenset()))
    return tickets


# -- the searches -----------------------------------------------------------------------------------


def shaped(index: Index) -> Search:
    return lambda text, modules: [hit.page for hit in index.search(text, modules, LIMIT)]


def shaped_without_modules(index: Index) -> Search:
    return lambda text, modules: [hit.page for hit in index.search(text, (), LIMIT)]


def naive(db: Path) -> Search:
    """Every distinct word, quoted, ORed; plain bm25; no stop words, cap, weights or module boost."""
    conn = sqlite3.connect(db, check_same_thread=False)

    def search(text: str, modules: Sequence[str]) -> list[Page]:
        words = list(dict.fromkeys(fold(w) for w in _WORD.findall(text)))
        if not words:
            return []
        rows = conn.execute(
            "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT ?", (match_expression(words), LIMIT)
        ).fetchall()
        found = load_pages(conn, [r[0] for r in rows])
        return [found[r[0]] for r in rows if r[0] in found]

    return search


SHAPED, NO_MODULES, NAIVE = "shaped (Baton)", "shaped, no module paths", "naive: OR of all words"
METHODS: dict[str, Callable[[Index], Search]] = {
    SHAPED: shaped,
    NO_MODULES: shaped_without_modules,
    NAIVE: lambda index: naive(index.db_path),
}


def timed(search: Search, queries: Sequence[Labelled]) -> tuple[list[float], list[list[Page]]]:
    """Each query's latency in ms and its results."""
    samples, results = [], []
    for q in queries:
        began = time.perf_counter()
        results.append(search(q.text, q.modules))
        samples.append((time.perf_counter() - began) * 1000)
    return samples, results


def latency(size: int, method: str, over: str, samples: list[float]) -> Latency:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Latency(size, method, over, len(ordered), round(statistics.median(ordered), 2), round(p99, 2),
                   round(ordered[-1], 2))  # fmt: skip


def hit_rate(size: int, method: str, results: Sequence[list[Page]], queries: Sequence[Labelled]) -> HitRate:
    hits = sum(
        1 for q, found in zip(queries, results, strict=True) if {p.path for p in found[:TOP]} & q.expected
    )
    return HitRate(size, method, hits, len(queries))


def measure(
    size: int, name: str, search: Search, labelled: Sequence[Labelled], synthetic: Sequence[Labelled]
) -> tuple[HitRate, list[Latency]]:
    """The hit rate on the labelled tickets and, when `synthetic` tickets are given, latencies after a
    warm-up pass: over the labelled tickets, and over all tickets (the naive baseline, which takes about
    a second per synthetic ticket at 100k pages, over a sample of NAIVE_SAMPLE of them)."""
    if name == NO_MODULES or not synthetic:
        return hit_rate(size, name, timed(search, labelled)[1], labelled), []
    sample = synthetic[:NAIVE_SAMPLE] if name == NAIVE else synthetic
    timed(search, [*labelled, *sample][: WARM_UP if name == NAIVE else None])
    samples, results = timed(search, labelled)
    timings = [latency(size, name, LABELLED, samples)]
    more = timed(search, sample)[0]
    if name == NAIVE:
        timings.append(latency(size, name, f"{len(sample)} synthetic", more))
    else:
        timings.append(latency(size, name, f"{LABELLED} + {len(sample)} synthetic", samples + more))
    return hit_rate(size, name, results, labelled), timings


def build(pages: Sequence[Page], db: Path) -> tuple[Index, float]:
    began = time.perf_counter()
    index = Index(db)
    index._rebuild(pages, "bench")
    return index, round(time.perf_counter() - began, 1)


def report(
    latencies: Sequence[Latency], rates: Sequence[HitRate], builds: dict[int, float], command: str
) -> str:
    lines = [f"{'pages':>7}  {'method':24}  {'tickets':26}  {'p50 ms':>8}  {'p99 ms':>8}  {'max ms':>8}"]
    for r in latencies:
        lines.append(
            f"{r.size:>7}  {r.method:24}  {r.over:26}  {r.p50_ms:>8.2f}  {r.p99_ms:>8.2f}  {r.max_ms:>8.2f}"
        )
    lines.append("")
    lines.append(f"{'pages':>7}  {'method':24}  top-{TOP} hit rate on the labelled tickets")
    for h in rates:
        where = "corpus" if h.size == 0 else str(h.size)
        lines.append(f"{where:>7}  {h.method:24}  {h.rate:.3f} ({h.hits}/{h.queries})")
    lines.append("")
    lines += [f"index built from {n} pages in {s:.1f} s" for n, s in builds.items()]
    lines.append(f"goal: p99 < {GOAL_P99_MS:g} ms at 100k pages (shaped)")
    lines.append(f"reproduce: {command}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000", help="index sizes in pages, comma-separated")
    parser.add_argument(
        "--queries", type=int, default=300, help="tickets timed per size (40 labelled + synthetic)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rng = random.Random(args.seed)
    corpus, labelled = corpus_pages(), labelled_queries()
    command = f"python -m bench.search --sizes {args.sizes} --queries {args.queries} --seed {args.seed}"
    latencies: list[Latency] = []
    rates: list[HitRate] = []
    builds: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="baton-bench-search-") as tmp:
        base = Path(tmp)
        index = asyncio.run(index_corpus_through_git(corpus, base))
        rates += [measure(0, name, make(index), labelled, ())[0] for name, make in METHODS.items()]
        assert len(labelled) == 40, "LABELLED names the labelled set's size"
        zipf = Zipf(vocabulary(corpus, labelled, rng), rng)
        modules = module_paths(rng)
        synthetic = synthetic_tickets(max(args.queries - len(labelled), NAIVE_SAMPLE), zipf, modules, rng)
        for size in sizes:
            pages = [*corpus, *synthetic_pages(max(size - len(corpus), 0), zipf, modules, rng)]
            index, builds[size] = build(pages, base / f"index-{size}.db")
            del pages
            for name, make in METHODS.items():
                rate, timings = measure(size, name, make(index), labelled, synthetic)
                rates.append(rate)
                latencies += timings
            index.close()
            print(f"... {size} pages done", file=sys.stderr, flush=True)
    print(report(latencies, rates, builds, command), flush=True)
    RESULTS.mkdir(exist_ok=True)
    document: dict[str, Any] = {
        "command": command,
        "labelled_queries": len(labelled),
        "corpus_pages": len(corpus),
        "goal_p99_ms": GOAL_P99_MS,
        "latency": [asdict(r) for r in latencies],
        "hit_rate": [{**asdict(h), "rate": h.rate} for h in rates],
        "build_s": builds,
    }
    (RESULTS / "search.json").write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
