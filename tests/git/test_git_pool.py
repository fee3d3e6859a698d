"""Warm, leased worktrees: a reset worktree is the same tree as a fresh checkout, a lease is one holder's
at a time (across processes), and a crashed holder's lease is reclaimed and its leftovers reset."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.git import tree
from bot.git.pool import Pool
from bot.git.tree import settle
from bot.git.workspace import Workspace
from tests.git.repos import BOT, Upstream, deep_chain, git

Snapshot = dict[str, tuple[str, int, bytes]]
ROOT = Path(__file__).resolve().parents[2]


def snapshot(root: Path) -> Snapshot:
    """Every path under `root` but its top `.git`: kind, permission bits, bytes (or link target); a file
    with other hard links or a FIFO is a kind of its own."""
    found: Snapshot = {}
    for top, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(top, name)
            rel = str(path.relative_to(root))
            if rel == ".git":
                continue
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", 0, os.fsencode(os.readlink(path)))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", stat.S_IMODE(info.st_mode), b"")
            elif not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
                found[rel] = ("special", info.st_mode, b"")
            else:
                found[rel] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
        dirs[:] = [d for d in dirs if not (top == str(root) and d == ".git")]
    return found


def fresh(upstream: Upstream, sha: str, where: Path) -> Snapshot:
    git("clone", "--quiet", "--no-checkout", str(upstream.bare), str(where))
    git("checkout", "--quiet", "--detach", sha, cwd=where)
    return snapshot(where)


def seed_tree(upstream: Upstream) -> str:
    seed = upstream.seed
    (seed / ".gitignore").write_text("build/\n*.pyc\n")
    (seed / "run.sh").write_text("#!/bin/sh\necho run\n")
    (seed / "run.sh").chmod(0o755)
    (seed / "docs").mkdir()
    (seed / "docs" / "guide.md").write_text("# guide\n")
    (seed / "src" / "keep.txt").write_text("kept\n")
    (seed / "link").symlink_to("src/app.py")
    return upstream.commit("data.bin", "\x00\x01binary\n")


def dirty(tree: Path) -> None:
    """What a run may leave: edits, deletions, mode changes, untracked, ignored, staged, nested repos."""
    (tree / "src" / "app.py").write_text("print('changed by the run')\n")
    (tree / "docs" / "guide.md").unlink()
    (tree / "run.sh").chmod(0o644)
    (tree / "src" / "keep.txt").chmod(0o4777)
    (tree / "link").unlink()
    (tree / "link").write_text("no longer a link\n")
    (tree / "notes.txt").write_text("untracked\n")
    (tree / "build").mkdir()
    (tree / "build" / "out.o").write_bytes(b"\x7fELF")
    (tree / "src" / "cache.pyc").write_bytes(b"pyc")
    (tree / "staged.txt").write_text("staged\n")
    git("add", "staged.txt", cwd=tree)
    git("init", "--quiet", str(tree / "vendor"))
    (tree / "vendor" / "lib.c").write_text("int x;\n")
    # what git's status and clean never look at: a `.git` below the root (a directory with a config
    # whose fsmonitor the next run's git would execute from src/, and a file), a FIFO
    nested = tree / "src" / ".git"
    nested.mkdir()
    (nested / "HEAD").write_text("ref: refs/heads/main\n")
    (nested / "config").write_text(f"[core]\n\tfsmonitor = touch {tree.parent}/pwned\n")
    (tree / "docs" / ".git").write_text("gitdir: /somewhere/else\n")
    os.mkfifo(tree / "src" / "pipe")


async def test_a_reset_worktree_is_byte_identical_to_a_fresh_checkout(
    tmp_path: Path, upstream: Upstream
) -> None:
    first_sha = seed_tree(upstream)
    ws = Workspace(tmp_path / "ws", BOT, pool_size=1)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    one = await ws.create_worktree(upstream.repo_id, "run-1", "main", "baton/T-1-one")
    warm_inode = one.stat().st_ino
    (one / "committed.txt").write_text("on the run's branch\n")
    await ws.commit_all(one, "T-1: a commit the next run must not see")
    dirty(one)
    await ws.remove_worktree("run-1")

    two = await ws.create_worktree(upstream.repo_id, "run-2", "main", "baton/T-2-two")
    assert two.stat().st_ino == warm_inode  # the same directory, reused warm
    assert snapshot(two) == fresh(upstream, first_sha, tmp_path / "fresh-1")
    assert git("symbolic-ref", "HEAD", cwd=two) == "refs/heads/baton/T-2-two"
    assert git("rev-parse", "HEAD", cwd=two) == first_sha

    dirty(two)
    untouched = (two / ".gitignore").stat().st_ino
    (upstream.seed / "src" / "keep.txt").unlink()
    (upstream.seed / "new").mkdir()
    (upstream.seed / "new" / "file.txt").write_text("new upstream\n")
    second_sha = upstream.commit("src/app.py", "print('upstream moved on')\n")
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    await ws.remove_worktree("run-2")

    three = await ws.create_worktree(upstream.repo_id, "run-3", "main", "baton/T-3-three")
    assert three.stat().st_ino == warm_inode
    assert snapshot(three) == fresh(upstream, second_sha, tmp_path / "fresh-2")
    assert (three / ".gitignore").stat().st_ino == untouched  # a file the new base did not change: kept
    assert git("status", "--porcelain", "--ignored", cwd=three) == ""


async def parked_slot(ws: Workspace, upstream: Upstream) -> Path:
    """The pool's slot holding run-1's worktree, parked after it finished."""
    mirror = await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    await ws.create_worktree(upstream.repo_id, "run-1", "main", "baton/T-1-one")
    await ws.remove_worktree("run-1")
    return ws.pool(mirror).slots()[0]


async def test_a_slot_that_does_not_reset_clean_is_discarded_for_a_fresh_checkout(
    tmp_path: Path, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    sha = seed_tree(upstream)
    ws = Workspace(tmp_path / "ws", BOT, pool_size=1)
    slot = await parked_slot(ws, upstream)
    (slot / ".git").write_text("gitdir: /nonexistent/elsewhere\n")  # a slot git no longer recognises
    (slot / "leftover").write_text("must not be served\n")

    with caplog.at_level(logging.WARNING, logger="bot.git.workspace"):
        two = await ws.create_worktree(upstream.repo_id, "run-2", "main", "baton/T-2-two")
    assert not slot.exists()  # deleted (its inode number may be reused by the fresh checkout)
    assert snapshot(two) == fresh(upstream, sha, tmp_path / "fresh")
    assert "did not reset clean; discarded" in caplog.text


class Arrivals:
    """What `create_worktree`'s `arriving` saw: the path, the directory's inode, and whether the previous
    run's leftovers were still there (the reset comes after)."""

    def __init__(self) -> None:
        self.seen: list[tuple[Path, int, bool]] = []

    async def __call__(self, path: Path) -> None:
        self.seen.append((path, path.stat().st_ino, (path / "notes.txt").exists()))


async def test_a_warm_worktree_arrives_at_its_path_before_it_is_reset(
    tmp_path: Path, upstream: Upstream
) -> None:
    """So that a CLI can start in it while it resets (orchestrators/implement.py `assemble`): `arriving`
    sees the run's final path, the same directory the run then gets, still as the last run left it."""
    sha = seed_tree(upstream)
    ws = Workspace(tmp_path / "ws", BOT, pool_size=1)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    arrivals = Arrivals()
    one = await ws.create_worktree(upstream.repo_id, "run-1", "main", "baton/T-1", arriving=arrivals)
    assert arrivals.seen == []  # a fresh checkout (the pool is empty): nothing arrives
    dirty(one)
    await ws.remove_worktree("run-1")

    two = await ws.create_worktree(upstream.repo_id, "run-2", "main", "baton/T-2", arriving=arrivals)

    assert arrivals.seen == [(two, two.stat().st_ino, True)]
    assert snapshot(two) == fresh(upstream, sha, tmp_path / "fresh")
    assert git("symbolic-ref", "HEAD", cwd=two) == "refs/heads/baton/T-2"


async def test_a_warm_worktree_that_arrived_but_did_not_reset_is_replaced(
    tmp_path: Path, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """The directory `arriving` saw is deleted and a fresh checkout takes its path (another inode: what a
    sandbox bound to the old one sees is not the run's worktree, bot/agent/runner.py `Prestarted.place`)."""
    sha = seed_tree(upstream)
    ws = Workspace(tmp_path / "ws", BOT, pool_size=1)
    slot = await parked_slot(ws, upstream)
    held = os.open(slot, os.O_RDONLY | os.O_DIRECTORY)  # keeps the inode from being reused
    try:
        os.link(slot / "README.md", tmp_path / "outside-link")  # a hard link: the slot is unservable
        arrivals = Arrivals()
        with caplog.at_level(logging.WARNING, logger="bot.git.workspace"):
            two = await ws.create_worktree(upstream.repo_id, "run-2", "main", "baton/T-2", arriving=arrivals)
        ((path, inode, _),) = arrivals.seen
        assert path == two and two.stat().st_ino != inode
        assert os.fstat(held).st_nlink == 0  # the directory that arrived is gone
    finally:
        os.close(held)
    assert snapshot(two) == fresh(upstream, sha, tmp_path / "fresh")
    assert "did not reset clean; discarded" in caplog.text and "hard link" in caplog.text


def overlaps(lines: list[str]) -> list[tuple[str, str]]:
    leases = sorted((int(i), float(s), float(e), run) for i, s, e, run in (ln.split() for ln in lines))
    return [
        (a[3], b[3])
        for n, a in enumerate(leases)
        for b in leases[n + 1 :]
        if a[0] == b[0] and b[1] < a[2] and a[1] < b[2]
    ]


def child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.git.pool_child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # starts processes
async def test_two_processes_never_share_a_worktree(tmp_path: Path, upstream: Upstream) -> None:
    seed_tree(upstream)
    root = tmp_path / "ws"
    await Workspace(root, BOT).ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    log = tmp_path / "leases.log"
    procs = [child("cycle", str(root), upstream.repo_id, tag, "6", str(log)) for tag in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    lines = log.read_text().splitlines()
    assert len(lines) == 12
    assert overlaps(lines) == []
    inodes = [line.split()[0] for line in lines]
    assert len(set(inodes)) < len(inodes)  # worktrees were reused warm, one holder at a time


async def test_tasks_of_one_process_never_share_a_slot(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool", 3)
    for slot in pool.slots():
        slot.mkdir(parents=True)
    held = [pool.claim(f"run-{n}", occupied=True) for n in range(4)]
    paths = [lease.path for lease in held if lease is not None]
    assert len(paths) == 3 and len(set(paths)) == 3 and held[3] is None
    assert pool.claim("vacant", occupied=False) is None  # every slot holds a worktree
    first = held[0]
    assert first is not None
    Pool.release(first)
    again = pool.claim("run-5", occupied=True)
    assert again is not None and again.path == first.path and again.reclaimed is None


@pytest.mark.slow  # starts processes
async def test_a_crashed_holders_lease_is_reclaimed_and_reset(
    tmp_path: Path, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    sha = seed_tree(upstream)
    ws = Workspace(tmp_path / "ws", BOT, pool_size=1)
    mirror = await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    await ws.create_worktree(upstream.repo_id, "run-0", "main", "baton/T-0")
    await ws.remove_worktree("run-0")
    slot = ws.pool(mirror).slots()[0]
    holder = child("hold", str(slot.parent))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = await ws.create_worktree(upstream.repo_id, "run-1", "main", "baton/T-1")
        assert slot.exists() and busy.stat().st_ino != slot.stat().st_ino  # a live holder keeps its slot
        await ws.remove_worktree("run-1")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)
    assert "crasher" in slot.with_suffix(".lease").read_text()  # the dead holder's record is still there

    with caplog.at_level(logging.WARNING, logger="bot.git.workspace"):
        two = await ws.create_worktree(upstream.repo_id, "run-2", "main", "baton/T-2")
    assert not slot.exists()  # the abandoned slot was taken over, reset and handed to run-2
    assert "reclaimed the lease of crasher" in caplog.text
    assert snapshot(two) == fresh(upstream, sha, tmp_path / "fresh")
    assert not slot.with_suffix(".lease").exists()


def test_settle_restores_checkout_permissions(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o700)
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "d" / "f").chmod(0o4777)
    (tmp_path / "g").write_text("y")
    (tmp_path / "g").chmod(0o666)
    (tmp_path / "l").symlink_to("g")
    umask = os.umask(0o022)
    os.umask(umask)
    assert settle(tmp_path) == 3
    assert stat.S_IMODE((tmp_path / "d" / "f").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "g").stat().st_mode) == 0o666 & ~umask
    assert settle(tmp_path) == 0


def fresh_sparse(upstream: Upstream, sha: str, where: Path, directories: list[str]) -> Snapshot:
    git("clone", "--quiet", "--no-checkout", str(upstream.bare), str(where))
    git("sparse-checkout", "set", "--cone", *directories, cwd=where)
    git("checkout", "--quiet", "--detach", sha, cwd=where)
    return snapshot(where)


async def test_sparse_worktrees_fresh_and_warm_match_a_sparse_checkout(
    tmp_path: Path, upstream: Upstream
) -> None:
    sha = seed_tree(upstream)
    ws = Workspace(tmp_path / "ws", BOT, pool_size=1)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    cold = await ws.create_worktree(upstream.repo_id, "run-1", "main", "baton/T-1", sparse=("src",))
    want, inode = fresh_sparse(upstream, sha, tmp_path / "fresh-sparse", ["src"]), cold.stat().st_ino
    assert snapshot(cold) == want and "docs" not in want and "src/app.py" in want and "run.sh" in want
    (cold / "src" / "app.py").write_text("changed\n")
    (cold / "docs").mkdir()
    (cold / "docs" / "outside-the-cone.md").write_text("untracked\n")
    (cold / "build").mkdir()
    (cold / "build" / "x.o").write_text("ignored\n")
    await ws.remove_worktree("run-1")

    full = await ws.create_worktree(upstream.repo_id, "run-2", "main", "baton/T-2")  # warm, every file
    assert full.stat().st_ino == inode
    assert snapshot(full) == fresh(upstream, sha, tmp_path / "fresh-full")
    dirty(full)
    await ws.remove_worktree("run-2")

    again = await ws.create_worktree(upstream.repo_id, "run-3", "main", "baton/T-3", sparse=("src",))
    assert again.stat().st_ino == inode and snapshot(again) == want


async def test_read_at_reads_a_file_of_the_base_without_a_worktree(
    tmp_path: Path, upstream: Upstream
) -> None:
    upstream.commit(".baton.yml", "checkout: [src]\n")
    ws = Workspace(tmp_path / "ws", BOT)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    assert await ws.read_at(upstream.repo_id, "main", ".baton.yml") == "checkout: [src]\n"
    assert await ws.read_at(upstream.repo_id, "main", "no/such/file") is None
    assert await ws.read_at(upstream.repo_id, "main", "src") is None  # a directory is not a file


@pytest.mark.parametrize(
    ("record", "taken"),
    [
        (None, True),  # a free slot
        ('{"owner": "run-9", "host": "this-host", "pid": 999999999, "expires": 9e12}', True),  # ours, dead
        ('{"owner": "run-9", "host": "other-host", "pid": 1, "expires": 9e12}', False),  # another host's
        ('{"owner": "run-9", "host": "other-host", "pid": 1, "expires": 1}', True),  # expired
        ('{"owner": "run-9", "host": "other-host", "expires": "never"}', True),  # no usable expiry
        ("not json at all", True),
        ("[1, 2]", True),
    ],
)
def test_a_lease_record_is_respected_only_while_another_hosts_lease_runs(
    tmp_path: Path, record: str | None, taken: bool
) -> None:
    pool = Pool(tmp_path / "pool", 1, host="this-host")
    slot = pool.slots()[0]
    slot.mkdir(parents=True)
    if record is not None:
        slot.with_suffix(".lease").write_text(record)
    lease = pool.claim("run-1", occupied=True)
    assert (lease is not None) == taken
    if lease is not None:
        assert '"owner": "run-1"' in slot.with_suffix(".lease").read_text()
        assert bool(lease.reclaimed) == (record is not None)  # a previous holder is named
        Pool.release(lease)
        assert not slot.with_suffix(".lease").exists()


def add_gitlink(upstream: Upstream, path: str) -> str:
    """Commit a submodule entry (mode 160000) at `path`; a checkout makes it an empty directory."""
    target = git("rev-parse", "HEAD", cwd=upstream.seed)
    git("update-index", "--add", "--cacheinfo", f"160000,{target},{path}", cwd=upstream.seed)
    git("commit", "--quiet", "-m", f"upstream: submodule {path}", cwd=upstream.seed)
    git("push", "--quiet", str(upstream.bare), "HEAD:refs/heads/main", cwd=upstream.seed)
    return git("rev-parse", "HEAD", cwd=upstream.seed)


async def leased_after(ws: Workspace, upstream: Upstream, leave: object) -> tuple[Path, Path, int]:
    """run-1 leaves what `leave(tree)` makes and is parked; returns run-2's tree, the slot, run-1's inode."""
    mirror = await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    one = await ws.create_worktree(upstream.repo_id, "run-1", "main", "baton/T-1-one")
    inode = one.stat().st_ino
    assert callable(leave)
    leave(one)
    await ws.remove_worktree("run-1")
    slot = ws.pool(mirror).slots()[0]
    assert slot.stat().st_ino == inode  # parked
    # held open: a slot discarded at run-2's path frees its inode number, which run-2's fresh checkout
    # there could otherwise get back
    held = os.open(slot, os.O_RDONLY | os.O_DIRECTORY)
    try:
        two = await ws.create_worktree(upstream.repo_id, "run-2", "main", "baton/T-2-two")
    finally:
        os.close(held)
    return two, slot, inode


def in_submodule(tree: Path) -> None:
    (tree / "sub" / "planted.txt").write_text("git status and clean never look in here\n")


def hard_linked(tree: Path) -> None:
    os.link(tree / "src" / "keep.txt", tree.parent / "outside-the-worktree")


@pytest.mark.parametrize(("leave", "why"), [(in_submodule, "submodule"), (hard_linked, "hard link")])
async def test_what_cannot_be_put_right_in_a_slot_discards_it(
    tmp_path: Path, upstream: Upstream, caplog: pytest.LogCaptureFixture, leave: object, why: str
) -> None:
    seed_tree(upstream)
    sha = add_gitlink(upstream, "sub")
    ws = Workspace(tmp_path / "ws", BOT, pool_size=1)
    with caplog.at_level(logging.WARNING, logger="bot.git.workspace"):
        two, slot, _ = await leased_after(ws, upstream, leave)
    assert not slot.exists()  # deleted; run-2 is a fresh checkout
    want = fresh(upstream, sha, tmp_path / "fresh")
    assert want["sub"] == ("dir", 0o755, b"")  # the submodule's directory, empty
    assert snapshot(two) == want
    assert "did not reset clean; discarded" in caplog.text and why in caplog.text


@pytest.fixture
def deep_tmp(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, emptied afterwards with rm (pytest's own recursive rmtree dies on these trees)."""
    yield tmp_path
    for child in tmp_path.iterdir():
        tree.remove_tree(child)


def deep_and_long(tree: Path) -> None:
    deep_chain(tree / "src" / ".git", 1200)  # below a `.git` git clean skips
    deep_chain(tree / "deep", 1200)  # untracked
    deep_chain(tree / "long", 25, "x" * 200)  # a path of ~5,000 characters, past PATH_MAX


def deep_below_a_nested_dotgit(tree: Path) -> None:
    deep_chain(tree / "src" / ".git", 1200)


def over_long(tree: Path) -> None:
    deep_chain(tree / "build", 25, "x" * 200)  # ignored, but unreadable by path: the walk fails


@pytest.mark.parametrize(
    ("leave", "warm"), [(deep_and_long, False), (deep_below_a_nested_dotgit, True), (over_long, False)]
)
async def test_a_deep_or_over_long_tree_left_by_a_run_never_blocks_the_next(
    deep_tmp: Path, upstream: Upstream, leave: object, warm: bool
) -> None:
    sha = seed_tree(upstream)
    ws = Workspace(deep_tmp / "ws", BOT, pool_size=1)
    two, slot, inode = await leased_after(ws, upstream, leave)
    assert (two.stat().st_ino == inode) == warm  # a nested .git is deleted; past the depth bound: discarded
    assert snapshot(two) == fresh(upstream, sha, deep_tmp / "fresh")
    deep_and_long(two)
    await ws.remove_worktree("run-2")
    three = await ws.create_worktree(upstream.repo_id, "run-3", "main", "baton/T-3")
    assert snapshot(three) == fresh(upstream, sha, deep_tmp / "fresh-3")
    assert sorted(p.name for p in slot.parent.iterdir() if not p.name.endswith(".lock")) == []


async def test_an_error_while_resetting_a_slot_discards_it(
    tmp_path: Path, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = seed_tree(upstream)
    ws = Workspace(tmp_path / "ws", BOT, pool_size=1)

    def broken(*_: object) -> int:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("bot.git.workspace.settle", broken)
    two, slot, _ = await leased_after(ws, upstream, lambda tree: None)
    assert not slot.exists()
    assert snapshot(two) == fresh(upstream, sha, tmp_path / "fresh")


def test_remove_tree_deletes_deep_and_over_long_trees(deep_tmp: Path) -> None:
    deep_and_long(deep_tmp / "t")
    (deep_tmp / "t" / "src").mkdir(exist_ok=True)
    assert tree.remove_tree(deep_tmp / "t") and not (deep_tmp / "t").exists()
    assert tree.remove_tree(deep_tmp / "never-there")


def test_entries_refuses_a_tree_past_the_depth_bound(tmp_path: Path) -> None:
    deep_chain(tmp_path, tree.MAX_DEPTH + 2)
    with pytest.raises(tree.Unservable, match="deeper than"):
        list(tree.entries(tmp_path))


def test_what_cannot_be_deleted_moves_to_the_trash_and_is_swept_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slot = tmp_path / "pool" / "0"
    deep_chain(slot, 3)
    trash = tmp_path / "trash"
    monkeypatch.setattr(tree, "remove_tree", lambda path: not os.path.lexists(path))  # rm fails
    assert tree.discard(slot, trash) and not slot.exists()  # the slot's number is free again
    assert [p.name.startswith("0-") for p in trash.iterdir()] == [True]
    monkeypatch.undo()
    tree.sweep(trash)
    assert list(trash.iterdir()) == []


def replace_dotgit_with_a_directory(slot: Path, evil: Path) -> None:
    (slot / ".git").unlink()
    (evil / ".git").rename(slot / ".git")


def point_dotgit_elsewhere(slot: Path, evil: Path) -> None:
    (slot / ".git").write_text(f"gitdir: {evil / '.git'}\n")


@pytest.mark.parametrize("replace", [replace_dotgit_with_a_directory, point_dotgit_elsewhere])
async def test_no_git_runs_in_a_slot_whose_dotgit_was_replaced(
    tmp_path: Path, upstream: Upstream, replace: Callable[[Path, Path], None]
) -> None:
    sha = seed_tree(upstream)
    ws = Workspace(tmp_path / "ws", BOT, pool_size=1)
    slot = await parked_slot(ws, upstream)
    evil = tmp_path / "evil"
    git("clone", "--quiet", str(upstream.bare), str(evil))  # has the commit, so a checkout would succeed
    marker = tmp_path / "filter-ran"  # Baton's git turns hooks and fsmonitor off, not a repo's filters
    (evil / ".git" / "info" / "attributes").write_text("* filter=evil\n")
    for kind in ("clean", "smudge"):
        git("config", f"filter.evil.{kind}", f"touch {marker}; cat", cwd=evil)
    replace(slot, evil)

    two = await ws.create_worktree(upstream.repo_id, "run-2", "main", "baton/T-2-two")
    assert not marker.exists()  # no git ran with the replaced .git's configuration
    assert not slot.exists()
    assert snapshot(two) == fresh(upstream, sha, tmp_path / "fresh")


async def test_a_sparse_checkout_does_not_limit_what_a_run_commits(
    tmp_path: Path, upstream: Upstream
) -> None:
    """`checkout` is an optimisation (README, repo_config): a file written outside the cone is committed."""
    seed_tree(upstream)
    ws = Workspace(tmp_path / "ws", BOT, pool_size=1)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    tree = await ws.create_worktree(upstream.repo_id, "run-1", "main", "baton/T-1", sparse=("src",))
    (tree / "docs").mkdir()
    (tree / "docs" / "outside.md").write_text("outside the cone\n")
    sha = await ws.commit_all(tree, "T-1: outside the cone")
    assert git("show", "--name-status", "--format=", sha, cwd=tree).splitlines() == ["A\tdocs/outside.md"]
    assert "+outside the cone" in await ws.diff(tree, "main")  # what review and the guards see
