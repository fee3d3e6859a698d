"""Per-run git workspaces: one fetched mirror per repository, one worktree and branch per run."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.git.askpass import DEFAULT_USERNAME, askpass_env, check_remote_url, install_script, needs_credentials
from bot.git.branch import is_sha, is_valid_branch, is_valid_refname
from bot.git.diffstat import DiffStat, parse_numstat
from bot.git.errors import HeadMoved, NothingToCommit, UnsafeInput, WorkspaceError
from bot.git.lock import file_lock
from bot.git.paths import check_run_id, mirror_dirname
from bot.git.pool import Pool
from bot.git.runner import GitResult, GitRunner
from bot.git.tree import Unservable, discard, remove_tree, settle, sweep

# Upstream branches land under refs/remotes/origin/, never in refs/heads/: run branches live there, and
# `fetch` refuses to update a branch checked out in a worktree (and --prune would delete unpushed ones).
FETCH_REFSPECS = ("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
FETCH_FLAGS = ("--quiet", "--prune", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules")
UPSTREAM_PREFIX = "refs/remotes/origin/"
DIFF_FLAGS = ("--no-ext-diff", "--no-textconv", "--no-color", "--no-renames")
_NAME_RE = re.compile(r"[^\x00-\x1f<>\x7f]{1,200}")
_EMAIL_RE = re.compile(r"[^\x00-\x20<>\x7f]{1,254}")
POOL_SIZE = 2  # warm worktrees kept per repository (BATON_WORKSPACE_POOL)
STATUS_ALL = ("status", "--porcelain", "--ignored", "-z", "--untracked-files=all")
# Awaited with a warm worktree's final path before it is reset (Workspace.create_worktree)
Arriving = Callable[[Path], Awaitable[None]]
log = logging.getLogger(__name__)


class Secret(Protocol):
    """Anything holding a secret string (pydantic's SecretStr fits)."""

    def get_secret_value(self) -> str: ...


@dataclass(frozen=True)
class GitAuthor:
    """Author and committer of Baton's commits."""

    name: str
    email: str

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name) or not _EMAIL_RE.fullmatch(self.email):
            raise UnsafeInput("author name and email must be non-empty, without <, >, or control characters")

    def env(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }


def _secret_text(token: Secret | None) -> str:
    return token.get_secret_value() if token is not None else ""


def _has_repo(path: Path) -> bool:
    return (path / "HEAD").is_file()


def _replace_dir(staging: Path, target: Path) -> None:
    remove_tree(target)  # debris of a crash before an earlier rename
    staging.rename(target)


def _gitlinks(listed: bytes) -> list[str]:
    """The submodule paths (mode 160000) in `git ls-files --stage -z` output."""
    entries = (e.decode("utf-8", "surrogateescape") for e in listed.split(b"\0") if e)
    return [e.split("\t", 1)[1] for e in entries if e.startswith("160000 ") and "\t" in e]


def _seed_index(source: str, target: Path) -> None:
    if Path(source).is_file():
        shutil.copyfile(source, target)


class Workspace:
    """`root/mirrors/<id>.git` (one per repository), `root/worktrees/<run_id>` (one per run) and
    `root/pool/<mirror>/<n>` (up to `pool_size` idle worktrees per repository, reused warm)."""

    def __init__(
        self,
        root: Path,
        author: GitAuthor,
        *,
        runner: GitRunner | None = None,
        username: str = DEFAULT_USERNAME,
        lock_wait_s: float = 600.0,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.root = root.resolve()
        self.author = author
        self.mirrors = self.root / "mirrors"
        self.worktrees = self.root / "worktrees"
        self._runner = runner or GitRunner()
        self._username = username
        self._lock_wait_s = lock_wait_s
        self.pool_dir = self.root / "pool"
        self._pool_size = pool_size

    # -- mirrors -------------------------------------------------------------------------------

    def mirror_path(self, repo_id: str) -> Path:
        return self.mirrors / mirror_dirname(repo_id)

    async def ensure_mirror(self, repo_id: str, remote_url: str, token: Secret | None) -> Path:
        """Create the repository's mirror on first use, then `fetch --prune` it on every call."""
        url = check_remote_url(remote_url)
        mirror = self.mirror_path(repo_id)
        self._prepare()
        async with self._locked(mirror):
            if _has_repo(mirror):
                await self._fetch(mirror, url, token)
            else:
                await self._create_mirror(mirror, url, token)
        return mirror

    async def _create_mirror(self, mirror: Path, url: str, token: Secret | None) -> None:
        staging = Path(tempfile.mkdtemp(dir=self.mirrors, prefix=f".{mirror.name}.new-"))
        try:
            await self._git(["init", "--bare", "--quiet", "--end-of-options", str(staging)])
            await self._fetch(staging, url, token)
            await asyncio.to_thread(_replace_dir, staging, mirror)
        finally:
            await self._delete_tree(staging)

    async def _fetch(self, mirror: Path, url: str, token: Secret | None) -> None:
        await self._remote_git(
            mirror, ["fetch", *FETCH_FLAGS, "--end-of-options", url, *FETCH_REFSPECS], url, token
        )

    # -- worktrees -----------------------------------------------------------------------------

    async def read_at(self, repo_id: str, base_ref: str, path: str) -> str | None:
        """The text of `path` at `base_ref` in the repository's mirror (None: no such file there)."""
        mirror = self._require_existing_mirror(repo_id)
        sha = await self._resolve(mirror, base_ref)
        found = await self._mgit(mirror, ["rev-parse", "--verify", "--quiet", f"{sha}:{path}"], check=False)
        if found.returncode != 0 or not is_sha(found.text):
            return None
        if (await self._mgit(mirror, ["cat-file", "-t", found.text])).text != "blob":
            return None  # a directory (tree) or a submodule, not a file
        blob = await self._mgit(mirror, ["cat-file", "blob", found.text])
        return blob.stdout.decode("utf-8", "replace")

    def _require_existing_mirror(self, repo_id: str) -> Path:
        mirror = self.mirror_path(repo_id)
        if not _has_repo(mirror):
            raise WorkspaceError(f"no mirror for {repo_id[:80]!r} yet: call ensure_mirror first")
        return mirror

    async def create_worktree(
        self,
        repo_id: str,
        run_id: str,
        base_ref: str,
        branch: str,
        *,
        sparse: Sequence[str] = (),
        arriving: Arriving | None = None,
    ) -> Path:
        """Add `root/worktrees/<run_id>` on a new `branch` from `base_ref` (upstream branch, ref or SHA):
        a warm one from the pool when there is one, else a fresh checkout; only the directories in
        `sparse` (and the root's files) when it names any. `arriving(path)` is awaited once a warm
        worktree is at `path`, before it is reset: what may start there meanwhile (a sandbox that binds
        the directory; nothing that reads or writes its files before this returns). If the reset
        fails, the directory is replaced by a fresh checkout (another inode). Whatever `arriving` starts
        must not load or run anything from the tree before the reset is verified: a warm worktree's
        files may still be the previous run's sandbox uid's (bot/agent/runner.py `Prestarted`)."""
        path = self.worktrees / check_run_id(run_id)
        if not is_valid_branch(branch):
            raise UnsafeInput(f"refusing branch name {branch[:60]!r}")
        mirror = self._require_existing_mirror(repo_id)
        self._prepare()
        await self.remove_worktree(run_id)  # leftovers of an earlier attempt of this run
        async with self._locked(mirror):
            sha = await self._resolve(mirror, base_ref)
            await self._drop_unused_branch(mirror, branch)
            if not await self._lease_warm(mirror, path, branch, sha, sparse, arriving):
                await self._add_fresh(mirror, path, branch, sha, sparse)
        return path

    async def _add_fresh(
        self, mirror: Path, path: Path, branch: str, sha: str, sparse: Sequence[str]
    ) -> None:
        """`git worktree add`: every file, or (sparse) none, then the sparse cone, then the checkout."""
        add = ["worktree", "add", "--quiet", *(["--no-checkout"] if sparse else []), "-b", branch]
        await self._mgit(mirror, [*add, "--end-of-options", str(path), sha])
        if sparse:
            if not await self._cone(path, sparse):
                raise WorkspaceError(f"git sparse-checkout of {len(sparse)} directories failed")
            await self._wt_git(path, ["checkout", "--force", "--quiet", branch])

    # -- the pool of warm worktrees (callers hold the mirror's lock) ------------------------------

    def pool(self, mirror: Path) -> Pool:
        return Pool(self.pool_dir / mirror.stem, self._pool_size)

    async def _lease_warm(
        self,
        mirror: Path,
        path: Path,
        branch: str,
        sha: str,
        sparse: Sequence[str],
        arriving: Arriving | None,
    ) -> bool:
        """Take an idle worktree, move it to `path` (its `.git` link checked first: no git runs in it
        otherwise), `arriving(path)`, then reset it there to `sha` on `branch`, verified clean."""
        pool = self.pool(mirror)
        lease = pool.claim(path.name, occupied=True)
        if lease is None:
            return False
        where = lease.path
        try:
            if lease.reclaimed:
                log.warning("workspace slot %s: reclaimed the lease of %s", lease.path, lease.reclaimed)
            try:
                why = await self._move(mirror, lease.path, path)
                if why is None:
                    where = path
                    if arriving is not None:
                        await arriving(path)
                    why = await self._reset(mirror, path, branch, sha, sparse)
                if why is None:
                    return True
            except Exception as exc:  # whatever a run left that breaks the reset: never a failed run
                why = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("workspace slot %s did not reset clean; discarded (%s)", lease.path, why)
            await self._delete_tree(where)
            await self._mgit(mirror, ["worktree", "prune"], check=False)
            await self._mgit(mirror, ["branch", "--quiet", "-D", "--end-of-options", branch], check=False)
            return False
        finally:
            pool.release(lease)

    async def _move(self, mirror: Path, slot: Path, path: Path) -> str | None:
        """The slot's worktree moved to `path`; None, or why not."""
        if self._linked_admin(slot, mirror / "worktrees") is None:
            return "its .git is not this mirror's worktree link"
        moved = ["worktree", "move", "--end-of-options", str(slot), str(path)]
        done = await self._mgit(mirror, moved, check=False)
        return None if done.returncode == 0 else "git worktree move failed"

    async def _reset(
        self, mirror: Path, slot: Path, branch: str, sha: str, sparse: Sequence[str]
    ) -> str | None:
        """The worktree `slot` (moved to its run's path) reset: its `.git` link checked (no git runs in it
        otherwise), `checkout --force` (only files
        that differ are written), the sparse cone (or none), `settle` (what git never sees deleted: a
        `.git` below the root, FIFOs; hard links, submodule contents and trees past the depth bound
        refused; modes as a fresh checkout), `clean -ffdx` (untracked and ignored leftovers); None only
        if `status --ignored` then shows nothing at all and HEAD is `sha`, else why not."""
        if self._linked_admin(slot, mirror / "worktrees") is None:
            return "its .git is not this mirror's worktree link"
        checkout = ["checkout", "--force", "--quiet", "--no-recurse-submodules", "-b", branch, sha]
        if (await self._slot_git(slot, checkout)).returncode != 0:
            return "git checkout failed"
        if not await self._cone(slot, sparse):
            return "git sparse-checkout failed"
        listed = await self._slot_git(slot, ["ls-files", "--stage", "-z"])
        if listed.returncode != 0:
            return "git ls-files failed"
        try:  # before clean: a tree past the depth bound is discarded, never cleaned (quadratic in git)
            await asyncio.to_thread(settle, slot, _gitlinks(listed.stdout))
        except Unservable as exc:
            return str(exc)
        if (await self._slot_git(slot, ["clean", "-ffdxq"])).returncode != 0:
            return "git clean failed"
        status = await self._slot_git(slot, STATUS_ALL)
        head = await self._slot_git(slot, ["rev-parse", "--verify", "--quiet", "HEAD"])
        return None if status.returncode == 0 and not status.stdout and head.text == sha else "not clean"

    async def _park(self, mirror: Path, path: Path) -> bool:
        """Move a finished run's worktree into a vacant slot, HEAD detached (its branch stays free)."""
        pool = self.pool(mirror)
        lease = pool.claim(path.name, occupied=False)
        if lease is None:
            return False
        try:
            head = await self._wt_git(path, ["rev-parse", "--verify", "--quiet", "HEAD"], check=False)
            if head.returncode != 0 or not is_sha(head.text):
                return False
            await self._wt_git(path, ["update-ref", "--no-deref", "HEAD", head.text])
            moved = ["worktree", "move", "--end-of-options", str(path), str(lease.path)]
            return (await self._mgit(mirror, moved, check=False)).returncode == 0
        finally:
            pool.release(lease)

    async def _slot_git(self, slot: Path, args: Sequence[str], stdin: bytes | None = None) -> GitResult:
        scoped = {"GIT_CEILING_DIRECTORIES": str(slot.parent)}
        return await self._runner.run(args, cwd=slot, env=scoped, stdin=stdin, check=False)

    async def _set_sparse(self, tree: Path, directories: Sequence[str]) -> GitResult:
        """Cone-mode sparse checkout of `directories`, read from stdin (never parsed as options)."""
        listed = "".join(f"{d}\n" for d in directories).encode()
        return await self._slot_git(tree, ["sparse-checkout", "set", "--cone", "--stdin"], stdin=listed)

    async def _cone(self, tree: Path, sparse: Sequence[str]) -> bool:
        """The sparse cone a run asks for, or every file again if it asks for none."""
        if sparse:
            return (await self._set_sparse(tree, sparse)).returncode == 0
        state = await self._slot_git(tree, ["config", "--type=bool", "core.sparseCheckout"])
        if state.text != "true":
            return True
        return (await self._slot_git(tree, ["sparse-checkout", "disable"])).returncode == 0

    @asynccontextmanager
    async def run_worktree(
        self, repo_id: str, run_id: str, base_ref: str, branch: str
    ) -> AsyncIterator[Path]:
        """A worktree for the block, removed afterwards whether the block succeeded or failed."""
        path = await self.create_worktree(repo_id, run_id, base_ref, branch)
        try:
            yield path
        finally:
            await self.remove_worktree(run_id)

    async def remove_worktree(self, run_id: str, *, keep_branch: bool = False) -> None:
        """Delete the run's worktree, its administrative files and (unless kept) its local branch."""
        path = self.worktrees / check_run_id(run_id)
        mirror = self._mirror_of(path)
        if mirror is None:
            await self._delete_tree(path)
            await self._prune_all()
            return
        async with self._locked(mirror):
            await self._remove_locked(mirror, path, keep_branch=keep_branch)

    async def _remove_locked(self, mirror: Path, path: Path, *, keep_branch: bool) -> None:
        branch = self._checked_out_branch(path)
        if not await self._park(mirror, path):
            await self._delete_tree(path)
        await self._mgit(mirror, ["worktree", "prune"])
        if branch is not None and not keep_branch:
            await self._mgit(mirror, ["update-ref", "-d", "--end-of-options", branch], check=False)

    async def _prune_all(self) -> None:
        for mirror in self._all_mirrors():
            async with self._locked(mirror):
                await self._mgit(mirror, ["worktree", "prune"], check=False)

    async def _drop_unused_branch(self, mirror: Path, branch: str) -> None:
        """A branch left by an earlier run of the same ticket is deleted; one in use makes git refuse."""
        found = await self._mgit(
            mirror, ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], check=False
        )
        if found.returncode == 0:
            await self._mgit(mirror, ["branch", "--quiet", "-D", "--end-of-options", branch])

    async def _resolve(self, mirror: Path, base_ref: str) -> str:
        """The commit SHA `base_ref` names: an upstream branch name, a full ref or a SHA."""
        if is_sha(base_ref) or (base_ref.startswith("refs/") and is_valid_refname(base_ref)):
            ref = base_ref
        elif is_valid_branch(base_ref):
            ref = UPSTREAM_PREFIX + base_ref
        else:
            raise UnsafeInput(f"refusing base ref {base_ref[:60]!r}")
        args = ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"]
        result = await self._mgit(mirror, args, check=False)
        if result.returncode != 0:
            raise WorkspaceError(f"base ref {base_ref!r} is not a commit in the mirror")
        return result.text

    # -- commit, diff, push --------------------------------------------------------------------

    async def commit_all(self, worktree: Path, message: str) -> str:
        """Stage everything and commit as the configured author (no hooks run); return the new SHA."""
        mirror = self._require_mirror(worktree)
        text = message.replace("\x00", "").strip()
        if not text:
            raise UnsafeInput("commit message is empty")
        body = f"{text}\n".encode("utf-8", "replace")
        async with self._locked(mirror):
            # plumbing, not `git commit` (which refreshes the whole index again and runs hooks): stage,
            # write the tree, compare it with HEAD's, make the commit, move the branch if HEAD is still
            # where it was
            await self._wt_git(worktree, ["add", "--all", "--sparse"])
            tree = (await self._wt_git(worktree, ["write-tree"])).text
            head = await self.head(worktree)
            if tree == (await self._wt_git(worktree, ["rev-parse", "--verify", f"{head}^{{tree}}"])).text:
                raise NothingToCommit(f"nothing to commit in run {worktree.name}")
            made = ["commit-tree", "--no-gpg-sign", "-p", head, "-F", "-", "--end-of-options", tree]
            sha = (await self._wt_git(worktree, made, env=self.author.env(), stdin=body)).text
            moved = ["update-ref", "-m", "baton: commit", "--end-of-options", "HEAD", sha, head]
            await self._wt_git(worktree, moved)
        return sha

    async def head(self, worktree: Path) -> str:
        self._require_mirror(worktree)
        return (await self._wt_git(worktree, ["rev-parse", "--verify", "HEAD"])).text

    async def tree_of(self, worktree: Path, commit: str) -> str:
        """The tree object of the worktree's `commit` (full SHA): compared with a `snapshot`."""
        self._require_mirror(worktree)
        if not is_sha(commit):
            raise UnsafeInput("tree_of needs a full commit SHA")
        return (
            await self._wt_git(worktree, ["rev-parse", "--verify", "--end-of-options", f"{commit}^{{tree}}"])
        ).text

    async def snapshot(self, worktree: Path) -> str:
        """The working tree as it is (committed, staged, unstaged and untracked, as `add --all` stages
        it) as a tree object, built in a scratch index (the real one is untouched): `diff` and `diffstat`
        take it as `at`, so several readers of one state read the worktree once."""
        self._require_mirror(worktree)
        return await self._snapshot_tree(worktree)

    async def diff(self, worktree: Path, base: str, *, at: str | None = None) -> str:
        """The worktree's changes (committed, staged, unstaged and untracked) since it left `base`; with
        `at`, those of that commit or `snapshot` of the worktree's (no snapshot of the working tree)."""
        start, tree = await self._diff_ends(worktree, base, at)
        result = await self._wt_git(worktree, ["diff", *DIFF_FLAGS, "--end-of-options", start, tree])
        return result.stdout.decode("utf-8", "replace")

    async def diffstat(self, worktree: Path, base: str, *, at: str | None = None) -> DiffStat:
        start, tree = await self._diff_ends(worktree, base, at)
        args = ["diff", *DIFF_FLAGS, "--numstat", "-z", "--end-of-options", start, tree]
        return parse_numstat((await self._wt_git(worktree, args)).stdout)

    async def _diff_ends(self, worktree: Path, base: str, at: str | None) -> tuple[str, str]:
        mirror = self._require_mirror(worktree)
        if at is not None and not is_sha(at):
            raise UnsafeInput("a diff of a commit or snapshot needs its full SHA")
        base_sha = await self._resolve(mirror, base)
        merge_base = await self._wt_git(worktree, ["merge-base", "--end-of-options", base_sha, "HEAD"])
        return merge_base.text, at if at is not None else await self._snapshot_tree(worktree)

    async def _snapshot_tree(self, worktree: Path) -> str:
        """A tree object of the working tree as it is, built in a scratch index; the real one is untouched."""
        index = await self._wt_git(worktree, ["rev-parse", "--path-format=absolute", "--git-path", "index"])
        with tempfile.TemporaryDirectory(dir=self.root / "tmp") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            _seed_index(index.text, Path(env["GIT_INDEX_FILE"]))
            await self._wt_git(worktree, ["add", "--all", "--sparse"], env=env)
            return (await self._wt_git(worktree, ["write-tree"], env=env)).text

    async def push(
        self, worktree: Path, remote_url: str, branch: str, token: Secret | None, expected_sha: str
    ) -> None:
        """Push exactly `expected_sha` to `refs/heads/<branch>`, refusing if HEAD moved since approval."""
        url = check_remote_url(remote_url)
        if not is_valid_branch(branch) or not is_sha(expected_sha):
            raise UnsafeInput("push needs a valid branch name and a full commit SHA")
        mirror = self._require_mirror(worktree)
        head = await self.head(worktree)
        if head != expected_sha:
            raise HeadMoved(f"worktree HEAD is {head[:12]}, not the approved {expected_sha[:12]}")
        refspec = f"{expected_sha}:refs/heads/{branch}"
        args = ["push", "--quiet", "--porcelain", "--no-verify", "--end-of-options", url, refspec]
        await self._remote_git(mirror, args, url, token)

    # -- filesystem helpers (synchronous: metadata only) -----------------------------------------

    def _prepare(self) -> None:
        for directory in (self.mirrors, self.worktrees, self.root / "tmp"):
            directory.mkdir(parents=True, exist_ok=True)

    async def _delete_tree(self, path: Path) -> None:
        """Remove `path` if present, in a thread (a big checkout takes a while to delete); what cannot be
        deleted is moved into `trash/` so the name (a slot's number, a run's worktree) is free again, and
        deleted again at the next call."""
        trash = self.root / "trash"
        await asyncio.to_thread(discard, path, trash)
        if trash.is_dir():
            await asyncio.to_thread(sweep, trash)

    def _all_mirrors(self) -> list[Path]:
        return sorted(self.mirrors.glob("*.git")) if self.mirrors.is_dir() else []

    def _locked(self, mirror: Path) -> AbstractAsyncContextManager[None]:
        return file_lock(mirror.with_suffix(".lock"), self._lock_wait_s)

    def _mirror_of(self, worktree: Path) -> Path | None:
        """The mirror a Baton worktree belongs to, read from its `.git` file and cross-checked."""
        admin = self._admin_dir(worktree)
        return admin.parent.parent if admin is not None else None

    def _require_mirror(self, worktree: Path) -> Path:
        mirror = self._mirror_of(worktree)
        if mirror is None:
            raise WorkspaceError(f"{worktree} is not a worktree of this workspace")
        return mirror

    def _admin_dir(self, worktree: Path) -> Path | None:
        """`<mirror>/worktrees/<name>` if the worktree's `.git` file and git's back-link agree."""
        if worktree.parent != self.worktrees:
            return None
        admin = self._linked_admin(worktree, None)
        return admin if admin is not None and admin.parent.parent.parent == self.mirrors else None

    @staticmethod
    def _linked_admin(worktree: Path, admins: Path | None) -> Path | None:
        """The administrative directory the worktree's `.git` names, if `.git` is a regular file of ours
        with one link, naming a directory `<mirror>/worktrees/<name>` (in `admins` when given) whose
        `gitdir` names this `.git` back; None otherwise (git must not run there: a `.git` replaced by
        a run would bring its own hooks and configuration)."""
        dotgit = worktree / ".git"
        try:
            info = dotgit.lstat()
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
                return None
            admin = Path(dotgit.read_text(errors="replace").strip().removeprefix("gitdir:").strip())
            if not admin.is_absolute() or ".." in admin.parts or admin.parent.name != "worktrees":
                return None
            if admins is not None and admin.parent != admins:
                return None
            back_link = admin / "gitdir"
            if Path(back_link.read_text(errors="replace").strip()) != dotgit:
                return None
        except (OSError, ValueError):
            return None
        return admin

    def _checked_out_branch(self, worktree: Path) -> str | None:
        admin = self._admin_dir(worktree)
        head_file = admin / "HEAD" if admin is not None else None
        head = head_file.read_text(errors="replace").strip() if head_file and head_file.is_file() else ""
        ref = head.removeprefix("ref: ")
        return ref if ref.startswith("refs/heads/") and is_valid_refname(ref) else None

    # -- git calls -------------------------------------------------------------------------------

    async def _git(self, args: Sequence[str], *, check: bool = True) -> GitResult:
        return await self._runner.run(args, cwd=self.root, check=check)

    async def _mgit(self, mirror: Path, args: Sequence[str], *, check: bool = True) -> GitResult:
        return await self._runner.run([f"--git-dir={mirror}", *args], cwd=self.root, check=check)

    async def _wt_git(
        self,
        worktree: Path,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        check: bool = True,
    ) -> GitResult:
        # The ceiling stops repository discovery at the worktree: never fall through to an enclosing repo.
        scoped = {"GIT_CEILING_DIRECTORIES": str(self.worktrees), **(env or {})}
        return await self._runner.run(args, cwd=worktree, env=scoped, stdin=stdin, check=check)

    async def _remote_git(self, repo: Path, args: Sequence[str], url: str, token: Secret | None) -> GitResult:
        secret = _secret_text(token)
        env: dict[str, str] = {}
        if secret and needs_credentials(url):
            env = askpass_env(install_script(self.root / "bin"), url, secret, self._username)
        return await self._runner.run([f"--git-dir={repo}", *args], cwd=self.root, env=env, secrets=[secret])
