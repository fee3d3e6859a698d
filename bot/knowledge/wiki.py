"""The wiki: markdown pages in a git repository, read and written as commits (async, via bot/git's runner).

The repository is bare (`git init --bare` on first use) and Baton never checks it out: pages are read
from the branch's commit (`ls-tree`, `cat-file --batch`) and written by building a tree in a private
index and moving the branch by compare-and-set (`update-ref <new> <old>`), so a write is one atomic
commit and two writers never lose each other's pages. With a remote (BATON_WIKI_REMOTE, e.g. a GitLab
project) the remote is the source of truth: reads fetch it first (at most every `sync_interval_s`), a
write is built on the remote's head and pushed before the local branch moves, and a push refused because
someone else pushed first is rebuilt on their commit and pushed again.

Every method is a coroutine, like the rest of bot/git.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from bot.git.askpass import DEFAULT_USERNAME, askpass_env, check_remote_url, install_script, needs_credentials
from bot.git.branch import is_sha
from bot.git.errors import GitError
from bot.git.lock import file_lock
from bot.git.runner import GitResult, GitRunner
from bot.git.workspace import GitAuthor, Secret
from bot.knowledge.pages import (
    HARD_CAP_BYTES,
    KnowledgeError,
    Page,
    PageError,
    check_path,
    parse_page,
    render_page,
)

BRANCH = "main"
REF = f"refs/heads/{BRANCH}"
REMOTE_REF = f"refs/remotes/origin/{BRANCH}"
FETCH_REFSPEC = "+refs/heads/*:refs/remotes/origin/*"  # an empty remote has no main yet: no error
ZERO = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
COMMIT_FLAGS = ("--no-gpg-sign",)
PUSH_ATTEMPTS = 8  # someone else pushed first: fetch, rebuild on their commit, push again
LOCK_WAIT_S = 120.0
DEFAULT_EMAIL = "baton@localhost"
INLINE_PARSE = 20  # more pages than this are parsed in a thread
PATHSPEC_MAX = 200  # up to this many pages are listed by path; more by listing the whole tree
LITERAL_PATHSPECS = {"GIT_LITERAL_PATHSPECS": "1"}
SKIPPED_NAMES = frozenset({"readme.md"})  # notes for people browsing the wiki, not pages
_DECISION_RE = re.compile(r"decisions/(\d{4})-")
_AUTHOR_UNSAFE = re.compile(r"[\x00-\x1f\x7f<>]")  # what GitAuthor refuses in a name

Problem = tuple[str, str]
Changes = tuple[Sequence[Page], Sequence[str]]  # pages to write, paths to remove
log = logging.getLogger(__name__)


class UnknownCommit(KnowledgeError):
    """`changed_since` was given a commit the wiki does not have (history rewritten, another wiki)."""


class WikiError(KnowledgeError):
    """The wiki repository cannot be read or written; the message says why (never a secret)."""


def _parse_all(files: Sequence[tuple[str, bytes]], whole: bool = False) -> tuple[list[Page], list[Problem]]:
    pages, problems = [], []
    for path, data in files:
        try:
            pages.append(parse_page(path, data, truncate=not whole))
        except PageError as exc:
            problems.append((path, str(exc)))
    return pages, problems


async def _ready(pages: Sequence[Page], removed: Sequence[str]) -> Changes:
    return pages, removed


def is_page_file(path: str) -> bool:
    """Whether a file in the wiki is meant as a page: `*.md`, except README.md files."""
    name = path.rsplit("/", 1)[-1].lower()
    return name.endswith(".md") and name not in SKIPPED_NAMES


class Wiki:
    """A git repository of pages at `root` (bare; created on first use), optionally mirroring `remote`."""

    def __init__(
        self,
        root: Path,
        *,
        remote: str | None = None,
        token: Secret | None = None,
        username: str = DEFAULT_USERNAME,
        email: str = DEFAULT_EMAIL,
        runner: GitRunner | None = None,
        sync_interval_s: float = 30.0,
    ) -> None:
        self.root = Path(root).absolute()
        self.remote = check_remote_url(remote) if remote else None
        self._token = token
        self._username = username
        self._email = email
        self._runner = runner or GitRunner()
        self._sync_interval_s = sync_interval_s
        self._synced_at = float("-inf")
        self._scanned: tuple[str, list[Page], list[Problem]] | None = None
        self._ready = False

    # -- reading -------------------------------------------------------------------------------

    async def head(self) -> str | None:
        """The SHA of the wiki's current commit, or None while it has no page at all."""
        await self._prepare()
        return await self._local_head()

    async def pages(self, at: str | None = None) -> list[Page]:
        """Every valid page at commit `at` (default: the head), sorted by path."""
        return (await self._scan(at))[0]

    async def problems(self, at: str | None = None) -> list[Problem]:
        """(path, why it was rejected) for every page file that is not a valid page."""
        return (await self._scan(at))[1]

    async def get(self, path: str, at: str | None = None, *, whole: bool = False) -> Page | None:
        """The page at `path`; None when there is no such file, PageError when it is not a valid page.
        Its body is cut to the soft cap for an agent unless `whole` (to change a page, use `update`)."""
        check_path(path)
        pages, problems = await self.load([path], at=at, whole=whole)
        if problems:
            raise PageError(problems[0][1])
        return pages[0] if pages else None

    async def load(
        self, paths: Sequence[str], at: str | None = None, *, whole: bool = False
    ) -> tuple[list[Page], list[Problem]]:
        """The pages at `paths` (missing ones are left out) and the problems of those that are invalid;
        bodies cut to the soft cap unless `whole`."""
        commit = at or await self.head()
        if commit is None or not paths:
            return [], []
        wanted = set(paths)
        listed = await self._tree(commit, sorted(wanted) if len(wanted) <= PATHSPEC_MAX else ())
        return await self._read_entries([entry for entry in listed if entry[3] in wanted], whole)

    async def changed_since(self, sha: str | None, at: str | None = None) -> tuple[list[str], list[str]]:
        """(changed or added, deleted) page paths between commit `sha` and `at` (default: the head);
        every page path when `sha` is None; UnknownCommit when the wiki does not have `sha`."""
        commit = at or await self.head()
        if commit is None:
            return [], []
        if sha is None:
            return sorted(entry[3] for entry in await self._tree(commit) if is_page_file(entry[3])), []
        if not is_sha(sha) or not await self._has_commit(sha):
            raise UnknownCommit(f"the wiki has no commit {sha[:40]!r}")
        out = await self._git(["diff-tree", "-r", "-z", "--no-renames", "--name-status", sha, commit])
        fields = out.stdout.decode("utf-8", "surrogateescape").split("\0")
        changed: list[str] = []
        deleted: list[str] = []
        for status, path in zip(fields[0::2], fields[1::2], strict=False):
            if is_page_file(path):
                (deleted if status == "D" else changed).append(path)
        return sorted(changed), sorted(deleted)

    async def next_decision_number(self) -> int:
        """The number the next ADR gets: one more than the highest `decisions/NNNN-…` path."""
        head = await self.head()
        if head is None:
            return 1
        numbers = [int(m.group(1)) for e in await self._tree(head) if (m := _DECISION_RE.match(e[3]))]
        return max(numbers, default=0) + 1

    # -- writing -------------------------------------------------------------------------------

    async def put(self, pages: Sequence[Page], message: str, author: str = "Baton") -> str:
        """Write `pages` (added or replaced by path) in one commit and return its SHA; when nothing
        changes, commit nothing and return the current head. With a remote, the commit is pushed first."""
        if not pages:
            raise PageError("put needs at least one page")
        paths = [page.path for page in pages]
        if len(set(paths)) != len(paths):
            raise PageError("put was given two pages for the same path")
        sha = await self._write(lambda _: _ready(pages, ()), message, author)
        assert sha is not None  # a put on an empty wiki always makes its first commit
        return sha

    async def remove(self, paths: Sequence[str], message: str, author: str = "Baton") -> str | None:
        """Delete the pages at `paths` in one commit (missing ones are ignored); the head afterwards."""
        for path in paths:
            check_path(path)
        return await self._write(lambda _: _ready((), paths), message, author)

    async def update(
        self, path: str, change: Callable[[Page], Page], message: str, author: str = "Baton"
    ) -> Page:
        """Commit `change(page)` for the page at `path` and return what was written. The page is read
        whole (never cut to the soft cap) at the very commit the write builds on, inside the write lock,
        and read again whenever a push is refused because someone else moved the wiki: an edit made
        since this copy last synced is changed, never overwritten. PageError when there is no such page,
        it is not a valid one, or `change` gives a page for another path."""
        check_path(path)
        written: list[Page] = []

        async def build(parent: str | None) -> Changes:
            pages, problems = await self.load([path], at=parent, whole=True) if parent else ([], [])
            if problems:
                raise PageError(problems[0][1])
            if not pages:
                raise PageError(f"no page {path!r} in the wiki")
            changed = change(pages[0])
            if changed.path != path:
                raise PageError(f"an update of {path!r} cannot move it to {changed.path!r}")
            written[:] = [changed]
            return [changed], ()

        await self._write(build, message, author)
        return written[0]

    async def _write(
        self, build: Callable[[str | None], Awaitable[Changes]], message: str, author: str
    ) -> str | None:
        """Commit what `build(parent)` gives (pages to write, paths to remove) on the head the write
        builds on; `build` runs again on the new head when a push is refused."""
        who = GitAuthor(_AUTHOR_UNSAFE.sub("", author).strip()[:200] or "Baton", self._email)
        await self._prepare()
        async with self._locked():
            for _ in range(PUSH_ATTEMPTS):
                if self.remote is not None:
                    await self._fetch()
                parent = await self._base()
                pages, removed = await build(parent)
                sha = await self._commit(parent, pages, removed, message, who)
                if sha == parent or (sha is not None and await self._publish(sha, parent)):
                    self._synced_at = time.monotonic()
                    return sha
                await asyncio.sleep(random.uniform(0.02, 0.2))  # noqa: S311 - jitter, not a secret
        raise WikiError(f"the wiki remote kept moving: {PUSH_ATTEMPTS} pushes refused")

    async def sync(self) -> str | None:
        """Fetch the remote now (if there is one) and move the local branch to it; the head.
        WikiError when the remote cannot be reached (other reads fall back to the local copy)."""
        await self._prepare(fetch=False)
        if self.remote is not None:
            async with self._locked():
                await self._fetch()
                await self._follow_remote()
        return await self._local_head()

    # -- internals -----------------------------------------------------------------------------

    async def _prepare(self, fetch: bool = True) -> None:
        if not self._ready:
            if not (self.root / "HEAD").is_file():
                await self._create()
            self._ready = True
        due = time.monotonic() - self._synced_at >= self._sync_interval_s
        if fetch and self.remote is not None and due:
            try:
                async with self._locked():
                    await self._fetch()
                    await self._follow_remote()
            except WikiError as exc:  # reads go on from the local copy; writes fetch again and fail loudly
                log.warning("wiki remote unreachable, reading the local copy: %s", exc)
                self._synced_at = time.monotonic()

    async def _create(self) -> None:
        """`git init --bare` at the root, once even when several writers start together."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        async with file_lock(self.root.parent / f".{self.root.name}.init-lock", LOCK_WAIT_S):
            if (self.root / "HEAD").is_file():
                return
            if self.root.exists() and any(self.root.iterdir()):
                raise WikiError(f"{self.root} exists and is not a bare git repository")
            # Made aside and renamed into place: nobody sees a half-initialised repository.
            staging = Path(tempfile.mkdtemp(dir=self.root.parent, prefix=f".{self.root.name}.new-"))
            try:
                await self._runner.run(["init", "--bare", "--quiet", "--end-of-options", str(staging)])
                if self.root.exists():
                    self.root.rmdir()
                staging.rename(self.root)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _locked(self) -> AbstractAsyncContextManager[None]:
        return file_lock(self.root / "baton-wiki.lock", LOCK_WAIT_S)

    async def _git(
        self,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        secrets: Sequence[str] = (),
        check: bool = True,
    ) -> GitResult:
        return await self._runner.run(
            [f"--git-dir={self.root}", *args],
            cwd=self.root,
            env=env,
            stdin=stdin,
            secrets=secrets,
            check=check,
        )

    async def _local_head(self) -> str | None:
        found = await self._git(["rev-parse", "--verify", "--quiet", f"{REF}^{{commit}}"], check=False)
        return found.text if found.returncode == 0 else None

    async def _has_commit(self, sha: str) -> bool:
        found = await self._git(["cat-file", "-e", f"{sha}^{{commit}}"], check=False)
        return found.returncode == 0

    async def _tree(self, commit: str, only: Sequence[str] = ()) -> list[tuple[str, str, int, str]]:
        """(mode, blob sha, size, path) of every file at `commit`, or of the files at the paths `only`
        (taken literally: no pathspec magic or globs)."""
        args = ["ls-tree", "-r", "-z", "--long", "--full-tree", "--end-of-options", commit]
        out = await self._git([*args, *only], env=LITERAL_PATHSPECS if only else None)
        entries = []
        for record in out.stdout.split(b"\0"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            mode, kind, sha, size = meta.decode().split()
            if kind == "blob":
                path = raw_path.decode("utf-8", "replace")
                entries.append((mode, sha, int(size) if size.isdigit() else 0, path))
        return entries

    async def _scan(self, at: str | None) -> tuple[list[Page], list[Problem]]:
        commit = at or await self.head()
        if commit is None:
            return [], []
        if self._scanned is not None and self._scanned[0] == commit:
            return self._scanned[1], self._scanned[2]
        entries = [entry for entry in await self._tree(commit) if is_page_file(entry[3])]
        pages, problems = await self._read_entries(entries)
        self._scanned = (commit, pages, problems)
        return pages, problems

    async def _read_entries(
        self, entries: Sequence[tuple[str, str, int, str]], whole: bool = False
    ) -> tuple[list[Page], list[Problem]]:
        problems: list[Problem] = []
        readable = []
        for mode, sha, size, path in entries:
            if mode == "120000":
                problems.append((path, f"{path}: a symbolic link, not a page"))
            elif size > HARD_CAP_BYTES:
                problems.append(
                    (path, f"{path}: the page is {size} bytes, more than the {HARD_CAP_BYTES} allowed")
                )
            else:
                readable.append((sha, path))
        blobs = await self._cat([sha for sha, _ in readable])
        work = [(path, blobs[sha]) for sha, path in readable]
        # Parsing is CPU work (YAML): a large wiki is parsed in a thread so the worker's loop keeps beating.
        pages, rejected = (
            _parse_all(work, whole)
            if len(work) <= INLINE_PARSE
            else await asyncio.to_thread(_parse_all, work, whole)
        )
        return sorted(pages, key=lambda p: p.path), sorted(problems + rejected)

    async def _cat(self, shas: Sequence[str]) -> dict[str, bytes]:
        """The contents of blobs by SHA, in one `cat-file --batch`."""
        unique = list(dict.fromkeys(shas))
        if not unique:
            return {}
        out = await self._git(["cat-file", "--batch"], stdin="".join(f"{s}\n" for s in unique).encode())
        data, pos, blobs = out.stdout, 0, {}
        for sha in unique:
            eol = data.index(b"\n", pos)
            header = data[pos:eol].split()
            if len(header) != 3:
                raise WikiError(f"blob {sha} is missing from the wiki")
            size = int(header[2])
            blobs[sha] = data[eol + 1 : eol + 1 + size]
            pos = eol + 1 + size + 1
        return blobs

    async def _base(self) -> str | None:
        """The commit a write builds on: the remote's head when there is a remote, else the local one."""
        if self.remote is None:
            return await self._local_head()
        found = await self._git(["rev-parse", "--verify", "--quiet", f"{REMOTE_REF}^{{commit}}"], check=False)
        return found.text if found.returncode == 0 else None

    async def _commit(
        self, parent: str | None, pages: Sequence[Page], removed: Sequence[str], message: str, who: GitAuthor
    ) -> str | None:
        """A commit of `pages` and without `removed` on top of `parent`; `parent` itself when the tree
        would not change."""
        with tempfile.TemporaryDirectory(dir=self.root, prefix="baton-put-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent is not None:
                await self._git(["read-tree", "--end-of-options", parent], env=env)
            shas = await self._hash(Path(tmp), pages)
            info = [f"0 {ZERO}\t{path}\0" for path in removed]
            info += [f"100644 {sha}\t{page.path}\0" for sha, page in zip(shas, pages, strict=True)]
            await self._git(["update-index", "-z", "--index-info"], env=env, stdin="".join(info).encode())
            tree = (await self._git(["write-tree"], env=env)).text
        if parent is None and tree == EMPTY_TREE:
            return None
        if parent is not None and tree == (await self._git(["rev-parse", f"{parent}^{{tree}}"])).text:
            return parent
        text = message.strip() or "Update the wiki"
        parents = ["-p", parent] if parent is not None else []
        made = await self._git(["commit-tree", *COMMIT_FLAGS, *parents, "-F", "-", "--end-of-options", tree],
                               env=who.env(), stdin=text.encode())  # fmt: skip
        return made.text

    async def _hash(self, tmp: Path, pages: Sequence[Page]) -> list[str]:
        """Write each page's rendered file as a blob; their SHAs in order."""
        if not pages:
            return []
        files = []
        for number, page in enumerate(pages):
            file = tmp / f"{number}.md"
            file.write_text(render_page(page), encoding="utf-8")
            files.append(str(file))
        hashed = await self._git(["hash-object", "-w", "--no-filters", "--stdin-paths"],
                                 stdin="".join(f"{f}\n" for f in files).encode())  # fmt: skip
        return hashed.text.split("\n")

    async def _publish(self, sha: str, parent: str | None) -> bool:
        """Push `sha` (with a remote), then move the local branch to it; False when the push was refused."""
        if self.remote is not None:
            pushed = await self._remote(["push", "--quiet", "--porcelain", "--end-of-options", self.remote,
                                         f"{sha}:{REF}"], check=False)  # fmt: skip
            if pushed.returncode != 0:
                if b"rejected" in pushed.stdout + pushed.stderr:
                    return False
                raise GitError("push", pushed.returncode, pushed.stderr.decode("utf-8", "replace")[-500:])
            await self._git(["update-ref", "--end-of-options", REMOTE_REF, sha])
            await self._git(["update-ref", "--end-of-options", REF, sha])
            return True
        await self._git(["update-ref", "--end-of-options", REF, sha, parent or ZERO])
        return True

    async def _fetch(self) -> None:
        assert self.remote is not None
        flags = ["--quiet", "--prune", "--no-tags", "--no-write-fetch-head"]
        await self._remote(["fetch", *flags, "--end-of-options", self.remote, FETCH_REFSPEC])
        self._synced_at = time.monotonic()

    async def _follow_remote(self) -> None:
        remote_head = await self._base()
        if remote_head is not None and remote_head != await self._local_head():
            await self._git(["update-ref", "--end-of-options", REF, remote_head])

    async def _remote(self, args: Sequence[str], check: bool = True) -> GitResult:
        assert self.remote is not None
        secret = self._token.get_secret_value() if self._token is not None else ""
        env: dict[str, str] = {}
        if secret and needs_credentials(self.remote):
            env = askpass_env(install_script(self.root / "baton-bin"), self.remote, secret, self._username)
        try:
            return await self._git(args, env=env, secrets=[secret], check=check)
        except GitError as exc:
            raise WikiError(f"the wiki remote: {exc}") from None
