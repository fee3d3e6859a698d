"""Which of the team's facts a brief gets: the modules a change likely touches, and the selection.

`likely_modules` guesses, deterministically and without an agent, where a change will land: the paths
the ticket (or the MR thread) names that exist in the worktree (a bare file name is looked up by name),
the files the merge request already changes, and the `.baton.yml` module map (`modules:`): a module
whose name the text mentions, or whose patterns cover a path found so far, adds its patterns.

`select_facts` asks the knowledge store for the facts relevant to the text and those modules within a
token budget, leaves out facts scoped to other modules (an ADR about another module is not this
change's business), and never raises: a broken or missing store gives no facts and the reason, which
the brief states before the run goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.knowledge import Hit
from bot.knowledge.modules import best_coverage
from bot.knowledge.pages import Page
from bot.repo_config import RepoConfig, modules_for, normalize_path
from orchestrators.brief import KNOWLEDGE_BUDGET_TOKENS, KnowledgeItem
from orchestrators.ports import Knowledge

MAX_TEXT_CHARS = 8_000  # of ticket text given to the search
MAX_MODULES = 50
MAX_WALK_FILES = 20_000  # files looked at to find a bare file name in the worktree
MAX_SAME_NAME = 5  # paths kept for one bare file name
SELECT_TIMEOUT_S = 60.0

_TOKEN_RE = re.compile(r"[A-Za-z0-9_./-]{1,300}")
_EXTENSION_RE = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")
log = logging.getLogger("baton.knowledge")


@dataclass(frozen=True)
class Selection:
    """The facts for a brief, and why there are none when the store could not be read."""

    facts: tuple[KnowledgeItem, ...] = ()
    unavailable: str = ""

    @property
    def decisions(self) -> tuple[KnowledgeItem, ...]:
        return tuple(f for f in self.facts if f.kind == "decision")


class KnowledgeUnavailable(RuntimeError):
    """The knowledge store could not be set up; every call says why."""


class Unavailable:
    """The stand-in the wiring uses when the knowledge store cannot be built: every call raises, so a
    brief says knowledge is unavailable (and why) and the run goes on; `/verify` refuses."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    @property
    def wiki(self) -> Unavailable:
        return self

    async def get(self, path: str, at: str | None = None) -> Page | None:
        raise KnowledgeUnavailable(self.reason)

    async def relevant(self, text: str, modules: Sequence[str], budget_tokens: int) -> list[Page]:
        raise KnowledgeUnavailable(self.reason)

    async def search(self, text: str, modules: Sequence[str] = (), limit: int = 8) -> list[Hit]:
        raise KnowledgeUnavailable(self.reason)

    async def land(self, pages: Sequence[Page], message: str, author: str = "Baton") -> str:
        raise KnowledgeUnavailable(self.reason)

    async def verify(self, path: str, who: str) -> Page:
        raise KnowledgeUnavailable(self.reason)


# --- where the change will likely land ----------------------------------------------------------


def _candidates(text: str) -> list[str]:
    """Path-like words of `text` (with a `/` or a file extension), normalized, first seen first."""
    found: dict[str, None] = {}
    for token in _TOKEN_RE.findall(text):
        word = token.rstrip(".,;:-").removeprefix("./")
        if "//" in word or not ("/" in word.rstrip("/") or _EXTENSION_RE.search(word)):
            continue
        normal = normalize_path(word.rstrip("/"))
        if normal is not None and not normal.startswith("."):
            found.setdefault(normal, None)
    return list(found)


def _inside(root: Path, path: str) -> bool:
    """`path` exists in the worktree (lexically inside it: no `..`, not `.git`)."""
    return path.split("/", 1)[0] != ".git" and (root / path).exists()


def _by_name(root: Path, names: set[str]) -> dict[str, list[str]]:
    """Where files called `names` are in the worktree (sorted walk, bounded, `.git` and dot-dirs skipped)."""
    found: dict[str, list[str]] = {name: [] for name in names}
    seen = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            seen += 1
            if name in found and len(found[name]) < MAX_SAME_NAME:
                found[name].append(str((Path(folder) / name).relative_to(root)))
        if seen >= MAX_WALK_FILES:
            break
    return found


def named_paths(text: str, worktree: Path) -> list[str]:
    """The paths `text` names that exist in the worktree, or that would be new files in an existing
    directory; a bare file name (`gitlab.py`) not at the top is looked up by name."""
    paths: list[str] = []
    bare: list[str] = []
    for candidate in _candidates(text):
        if _inside(worktree, candidate):
            paths.append(candidate)
        elif "/" in candidate:
            if (worktree / candidate.split("/", 1)[0]).is_dir():
                paths.append(candidate)
        else:
            bare.append(candidate)
    if bare:
        located = _by_name(worktree, set(bare))
        paths += [path for name in bare for path in located[name]]
    return list(dict.fromkeys(paths))


def _mentioned(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE) is not None


def likely_modules(text: str, worktree: Path, repo: RepoConfig, touched: Iterable[str] = ()) -> list[str]:
    """The paths and module patterns a change about `text` will likely touch (`touched`: paths already
    known to change, e.g. a merge request's files), first the surest; at most MAX_MODULES."""
    paths = [p for p in (normalize_path(t) for t in touched) if p is not None]
    paths += named_paths(text, worktree)
    names = [name for name in repo.modules if _mentioned(name, text)]
    names += modules_for(paths, repo.modules)
    globs = [glob for name in dict.fromkeys(names) for glob in repo.modules[name]]
    return list(dict.fromkeys([*paths, *globs]))[:MAX_MODULES]


# --- the selection ------------------------------------------------------------------------------


def item(page: Page) -> KnowledgeItem:
    return KnowledgeItem(
        page.title, page.status, page.source, page.body, kind=page.kind, path=page.path, modules=page.modules
    )


def _ours(page: Page, modules: Sequence[str]) -> bool:
    """A fact scoped to modules belongs to this change when one of them covers what it touches; when no
    module could be guessed, only facts scoped to no module (they apply everywhere) are kept."""
    return not page.modules or (bool(modules) and best_coverage(page.modules, modules) > 0.0)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def select_facts(
    knowledge: Knowledge, text: str, modules: Sequence[str], budget_tokens: int = KNOWLEDGE_BUDGET_TOKENS
) -> Selection:
    """The facts for a brief about `text` touching `modules`, most relevant first; never raises."""
    try:
        pages = await asyncio.wait_for(
            knowledge.relevant(text[:MAX_TEXT_CHARS], list(modules), budget_tokens), SELECT_TIMEOUT_S
        )
    except Exception as exc:
        log.warning("team knowledge unavailable for this brief: %s", _reason(exc))
        return Selection(unavailable=_reason(exc))
    return Selection(tuple(item(page) for page in pages if _ours(page, modules)))


async def facts_for(
    knowledge: Knowledge,
    text: str,
    worktree: Path,
    repo: RepoConfig,
    touched: Iterable[str] = (),
    budget_tokens: int = KNOWLEDGE_BUDGET_TOKENS,
) -> Selection:
    """`select_facts` for the modules `likely_modules` finds in the worktree (the same for a ticket's
    brief and an MR thread's)."""
    modules = await asyncio.to_thread(likely_modules, text, worktree, repo, list(touched))
    return await select_facts(knowledge, text, modules, budget_tokens)
