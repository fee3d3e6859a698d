"""`baton wiki index | search | add | show`: the team's knowledge wiki from the command line.

Exit codes: 0 done; 1 nothing found, or a page that is missing or invalid; 2 bad input or configuration;
3 the wiki's git repository (or its remote) cannot be used.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bot.errors import BatonError
from bot.knowledge import Knowledge, Page, PageError, knowledge_for, page_path, parse_page, render_page
from bot.knowledge.pages import HARD_CAP_BYTES, SOFT_CAP_BYTES
from bot.knowledge.wiki import WikiError
from config.settings import SettingsError, load_settings

PROVISIONAL = "new-page.md"  # the path a page is parsed under before its own is known
wiki_app = typer.Typer(no_args_is_help=True, help="The team's knowledge wiki: index, search, add, show.")
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def _knowledge() -> Knowledge:
    try:
        return knowledge_for(load_settings(os.environ, check=False))
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; a page problem exits 1, an unusable wiki repository exits 3, each saying why."""
    try:
        return asyncio.run(work)
    except PageError as exc:
        err.print(Text.assemble(("refused: ", "red"), str(exc)))
        raise typer.Exit(1) from None
    except (WikiError, BatonError, OSError) as exc:
        err.print(Text.assemble(("wiki unavailable: ", "red"), str(exc)))
        raise typer.Exit(3) from None


@wiki_app.command("index")
def index_command() -> None:
    """Bring the search index up to date with the wiki (incrementally); list pages that were refused."""
    knowledge = _knowledge()

    async def work() -> tuple[int, str | None, list[tuple[str, str]]]:
        changed = await knowledge.refresh()
        return changed, await knowledge.wiki.head(), await knowledge.wiki.problems()

    changed, head, problems = _run(work())
    total = knowledge.index.count()
    console.print(Text(f"{total} pages indexed at {(head or 'an empty wiki')[:12]} ({changed} updated now)"))
    for path, why in problems:
        err.print(Text.assemble(("refused ", "yellow"), path, ": ", why))


@wiki_app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="Words to look for (ticket text works); '-' reads stdin.")],
    module: Annotated[
        list[str] | None, typer.Option("--module", "-m", help="A path the change touches (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many pages at most.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Search the wiki (BM25 over title, modules, body; pages covering --module boosted). Exit 1: no hit."""
    text = sys.stdin.read(1_000_000) if query == "-" else query
    knowledge = _knowledge()
    hits = _run(knowledge.search(text, module or (), limit))
    if as_json:
        rows = [{"score": h.score, "modules_matched": h.modules_matched, **_summary(h.page)} for h in hits]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif hits:
        table = Table("score", "status", "kind", "path", "title")
        for h in hits:
            cells = (f"{h.score:.3f}", h.page.status, h.page.kind, h.page.path, h.page.title)
            table.add_row(*(Text(cell) for cell in cells))
        console.print(table)
    else:
        err.print("no page matches")
    if not hits:
        raise typer.Exit(1)


@wiki_app.command("add")
def add_command(
    file: Annotated[Path, typer.Argument(help="A markdown file with the page's front matter.")],
    path: Annotated[
        str | None, typer.Option(help="Where in the wiki (default: from its kind and title).")
    ] = None,
    message: Annotated[str | None, typer.Option(help="The commit message.")] = None,
    author: Annotated[str, typer.Option(help="The commit's author name.")] = "Baton",
) -> None:
    """Add or replace a page from FILE, checked like every page, in one commit (nothing if unchanged).
    A body over the soft cap (24 KB) is refused, exit 1: agents would see only its start."""
    data = _read(file)
    knowledge = _knowledge()

    async def work() -> tuple[Page, str]:
        try:
            page = parse_page(path or PROVISIONAL, data, truncate=False)
        except PageError as exc:  # name the file, not the provisional path
            raise PageError(str(exc).replace(PROVISIONAL, str(file), 1)) from None
        size = len(page.body.encode("utf-8"))
        if size > SOFT_CAP_BYTES:
            raise PageError(
                f"{file}: the body is {size} bytes; an agent is shown only the first {SOFT_CAP_BYTES}, "
                "so add it as smaller pages (nothing was stored)"
            )
        if path is None:
            number = await knowledge.wiki.next_decision_number() if page.kind == "decision" else None
            page = page.model_copy(update={"path": page_path(page.kind, page.title, number)})
        sha = await knowledge.land([page], message or f"Add {page.path}", author=author)
        return page, sha

    page, sha = _run(work())
    console.print(Text(f"{page.path} ({page.status} {page.kind}) at {sha[:12]}"))


@wiki_app.command("show")
def show_command(
    path: Annotated[str, typer.Argument(help="The page's path in the wiki, e.g. pitfalls/retry-after.md.")],
) -> None:
    """Print a page as it is stored: front matter and body. Exit 1 when missing or invalid."""
    knowledge = _knowledge()
    page = _run(knowledge.wiki.get(path, whole=True))
    if page is None:
        err.print(Text(f"no page {path!r} in the wiki"))
        raise typer.Exit(1)
    sys.stdout.write(render_page(page))


def _read(file: Path) -> bytes:
    """The file's bytes, refusing what is not a readable regular file or is over the page cap."""
    try:
        if not file.is_file():
            raise OSError("not a regular file")
        with file.open("rb") as handle:
            data = handle.read(HARD_CAP_BYTES + 1)
    except OSError as exc:
        err.print(Text(f"cannot read {file}: {exc.strerror or exc}"))
        raise typer.Exit(2) from None
    if len(data) > HARD_CAP_BYTES:
        err.print(Text(f"refused: {file} is larger than the {HARD_CAP_BYTES} bytes a page may have"))
        raise typer.Exit(1)
    return data


def _summary(page: Page) -> dict[str, object]:
    return {
        "path": page.path,
        "title": page.title,
        "kind": page.kind,
        "status": page.status,
        "modules": list(page.modules),
        "source": page.source,
        "updated": page.updated.isoformat(),
    }
