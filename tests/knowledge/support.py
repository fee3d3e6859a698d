"""Helpers for the knowledge tests: pages to write, and raw commits into a wiki behind Baton's back."""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Mapping
from pathlib import Path

from bot.knowledge.pages import Kind, Page, Status, page_path
from tests.git.repos import git

DAY = datetime.date(2024, 8, 7)


def page(
    title: str,
    body: str = "",
    *,
    kind: Kind = "pitfall",
    status: Status = "inferred",
    modules: tuple[str, ...] = (),
    source: str = "PROJ-1",
    path: str | None = None,
) -> Page:
    """A valid page; its path follows `page_path` unless given."""
    return Page(
        path=path or page_path(kind, title),
        title=title,
        kind=kind,
        status=status,
        modules=modules,
        source=source,
        updated=DAY,
        body=body or f"About {title}.",
    )


def commit_raw(
    wiki_root: Path, files: Mapping[str, bytes | None], *, symlinks: Mapping[str, str] = {}
) -> str:
    """Commit `files` (None deletes) to the wiki's branch with plain git, as a person pushing would."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "clone"
        git("init", "--quiet", str(work))
        has_head = bool(git("--git-dir", str(wiki_root), "for-each-ref", "refs/heads/main"))
        if has_head:
            git("fetch", "--quiet", str(wiki_root), "main", cwd=work)
            git("reset", "--quiet", "--hard", "FETCH_HEAD", cwd=work)
        for name, data in files.items():
            target = work / name
            if data is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        for name, to in symlinks.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).symlink_to(to)
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "--allow-empty", "-m", "by hand", cwd=work)
        git("push", "--quiet", str(wiki_root), "HEAD:refs/heads/main", cwd=work)
        return git("rev-parse", "HEAD", cwd=work)


def commits(wiki_root: Path) -> int:
    return int(git("--git-dir", str(wiki_root), "rev-list", "--count", "refs/heads/main"))
