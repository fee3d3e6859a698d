"""`settle` lists what it must act on with `find`, and walks the tree in Python (`entries`) where find is
missing or fails: on hostile trees both leave the same tree, return the same count and refuse alike."""

from __future__ import annotations

import errno
import functools
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.git import tree
from bot.git.tree import MAX_DEPTH, Unservable, settle
from tests.git import repos

ROOT = Path(__file__).resolve().parents[2]
Tree = dict[str, tuple[str, int, int, bytes]]
Outcome = tuple[str, int, Tree | str]  # settled, count, tree; or refused, 0, why


def snapshot(root: Path) -> Tree:
    """Every path below `root` (its `.git` too): kind, mode bits, links, bytes or link target."""
    found: Tree = {}
    for top, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(top, name)
            info = path.lstat()
            kind = stat.S_IFMT(info.st_mode)
            data = os.fsencode(os.readlink(path)) if stat.S_ISLNK(kind) else b""
            if stat.S_ISREG(kind):
                data = path.read_bytes()
            rel = os.fsencode(path.relative_to(root)).decode("latin-1")
            found[rel] = (oct(kind), stat.S_IMODE(info.st_mode), info.st_nlink, data)
    return found


deep_chain = functools.partial(repos.deep_chain, leaf_mode=0o600)  # a leaf whose mode settle puts right


def write(path: Path, mode: int, text: str = "x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def hostile(root: Path) -> None:
    """Odd names, every kind of entry settle acts on, wrong modes, a directory nobody may read."""
    odd = root / "new\nline" / "-rf" / "*[?" / os.fsdecode(b"bad\xff name")
    write(odd / "x y", 0o4755)  # setuid: 0o755
    write(odd / "-", 0o600)
    write(odd / "ok", 0o644)
    os.mkfifo(odd / "pipe\n")
    os.mknod(root / "new\nline" / "--sock", stat.S_IFSOCK | 0o600)
    (root / "new\nline").chmod(0o700)
    (root / "-rf").mkdir()
    (root / "-rf").chmod(0o1777)
    write(root / "--" / "run.sh", 0o700)  # executable: 0o755
    write(root / "--" / "shared", 0o666)
    write(root / "--" / "exact", 0o755)
    (root / "--" / "dangling").symlink_to("nowhere")
    (root / "--" / "up").symlink_to("..")
    nested = root / "src dir" / ".git"  # a nested repository, with what would be acted on inside
    write(nested / "config", 0o600, "[core]\n\tfsmonitor = touch /tmp/pwned\n")
    os.mkfifo(nested / "fifo")
    deep_chain(nested / "deep", MAX_DEPTH + 5)
    write(root / "docs" / ".git", 0o644, "gitdir: /elsewhere\n")
    (root / "a").mkdir()
    (root / "a" / ".git").symlink_to("../src dir")
    locked = root / "locked"
    write(locked / "inner" / "f", 0o640)
    os.mkfifo(locked / "inner" / "p")
    locked.chmod(0o000)
    deep_chain(root / "deep", MAX_DEPTH - 1)  # a file at the depth bound: allowed
    (root / "deep" / "wrong").mkdir(mode=0o700)
    write(root / ".git" / "HEAD", 0o600, "ref: refs/heads/main\n")  # the root's .git: never touched
    os.mkfifo(root / ".git" / "fifo")


def with_find(root: Path, gitlinks: tuple[str, ...]) -> int:
    readable = os.geteuid() == 0 or not (root / "locked").exists()  # not root: find fails on mode 000
    assert (tree._deviants(root, ~tree._umask()) is not None) == readable
    return settle(root, gitlinks)


def walking(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, tuple[str, ...]], int]:
    def settle_walking(root: Path, gitlinks: tuple[str, ...]) -> int:
        with monkeypatch.context() as patched:
            patched.setattr(tree, "FIND", str(root.parent / "no-such-find"))
            assert tree._deviants(root, ~tree._umask()) is None
            return settle(root, gitlinks)

    return settle_walking


def outcome(run: Callable[[Path, tuple[str, ...]], int], root: Path, gitlinks: tuple[str, ...]) -> Outcome:
    try:
        changed = run(root, gitlinks)
    except Unservable as exc:
        return ("unservable", 0, str(exc))
    except OSError as exc:
        return ("oserror", 0, errno.errorcode.get(exc.errno or 0, "?"))
    return ("settled", changed, snapshot(root))


@pytest.fixture
def trees(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two roots for the same tree, emptied afterwards with rm (pytest's rmtree dies on deep trees)."""
    yield tmp_path / "find" / "t", tmp_path / "walk" / "t"
    for child in tmp_path.iterdir():
        tree.remove_tree(child)


def test_find_and_the_python_walk_settle_a_hostile_tree_alike(
    trees: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for root in trees:
        hostile(root)
    root_git = snapshot(trees[0] / ".git")
    listed, walked = outcome(with_find, trees[0], ()), outcome(walking(monkeypatch), trees[1], ())
    assert listed == walked
    kind, changed, after = listed
    assert kind == "settled" and changed == 16 and isinstance(after, dict)
    umask = tree._umask()
    assert after["new\nline/-rf/*[?/bad\xff name/x y"][1] == 0o755 & ~umask
    assert after["locked"][1] == 0o777 & ~umask and after["locked/inner/f"][1] == 0o666 & ~umask
    assert not [rel for rel in after if rel.endswith(("pipe\n", "sock", "/p"))]
    assert not [rel for rel in after if "/.git" in rel]
    assert snapshot(trees[0] / ".git") == root_git
    assert settle(trees[0]) == 0 and walking(monkeypatch)(trees[1], ()) == 0


def in_submodule(root: Path) -> tuple[str, ...]:
    write(root / "lib" / "sub *[\n" / "planted.txt", 0o644)
    return ("lib/sub *[\n",)


def empty_submodules(root: Path) -> tuple[str, ...]:
    """Empty, absent, a file, a symlink to a full directory, below a symlink: nothing is inside."""
    (root / "empty").mkdir()
    write(root / "full" / "sub" / "f", 0o644)
    (root / "file").write_text("x\n")
    (root / "linked").symlink_to("full/sub")
    (root / "via").symlink_to("full")
    write(root / ".git" / "sub" / "f", 0o644)
    return ("empty", "absent/sub", "file", "linked", "via/sub", ".git/sub", "full/./sub", "full//sub")


def hard_link(root: Path) -> tuple[str, ...]:
    write(root / "src" / "keep", 0o644)
    os.link(root / "src" / "keep", root.parent / "outside")
    return ()


def past_the_bound(root: Path) -> tuple[str, ...]:
    deep_chain(root / "deep", MAX_DEPTH, os.fsdecode(b"-\n\xff*["))  # odd names, a directory at depth 257
    return ()


def dotgit_past_the_bound(root: Path) -> tuple[str, ...]:
    """A `.git` at depth MAX_DEPTH + 1 is deleted, not walked: not past the bound."""
    deep_chain(root, MAX_DEPTH)
    root.joinpath(*["d"] * MAX_DEPTH, ".git", "x").mkdir(parents=True)
    return ()


def path_of(length: int) -> Callable[[Path], tuple[str, ...]]:
    """A file whose absolute path is `length` bytes (PATH_MAX and more: `entries` cannot lstat it)."""

    def leave(root: Path) -> tuple[str, ...]:
        fd, at = os.open(root, os.O_RDONLY | os.O_DIRECTORY), len(os.fsencode(root))
        try:
            while length - at > 256:
                os.mkdir("y" * 200, dir_fd=fd)
                inner = os.open("y" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd, at = inner, at + 201
            made = os.open("z" * (length - at - 1), os.O_WRONLY | os.O_CREAT, 0o666, dir_fd=fd)
            os.close(made)  # its mode (and its directories') as a checkout's: nothing to act on
        finally:
            os.close(fd)
        return ()

    leave.__name__ = f"path_of_{length}"
    return leave


def empty_past_the_bound(root: Path) -> tuple[str, ...]:
    deep_chain(root, MAX_DEPTH)
    root.joinpath(*["d"] * MAX_DEPTH, "empty").mkdir()  # a directory at depth MAX_DEPTH + 1
    return ()


def at_the_bound_with_wrong_modes(root: Path) -> tuple[str, ...]:
    deep_chain(root, MAX_DEPTH)  # its leaf (depth MAX_DEPTH + 1, mode 0o600) is allowed
    os.mkfifo(root.joinpath(*["d"] * MAX_DEPTH, "fifo"))
    return ()


def far_past_the_bound_and_path_max(root: Path) -> tuple[str, ...]:
    deep_chain(root / "deep", 2100)
    return ()


def past_path_max(root: Path) -> tuple[str, ...]:
    deep_chain(root / "long", 25, "x" * 200)  # ~5,000 bytes: `entries` cannot lstat it
    return ()


def deep_below_a_nested_dotgit(root: Path) -> tuple[str, ...]:
    deep_chain(root / "src" / ".git", 1200)
    return ()


@pytest.mark.parametrize(
    ("leave", "want"),
    [
        (in_submodule, "unservable"),
        (empty_submodules, "settled"),
        (hard_link, "unservable"),
        (past_the_bound, "unservable"),
        (dotgit_past_the_bound, "settled"),
        (path_of(tree.PATH_MAX - 1), "settled"),
        (path_of(tree.PATH_MAX), "oserror"),
        (empty_past_the_bound, "unservable"),
        (at_the_bound_with_wrong_modes, "settled"),
        (far_past_the_bound_and_path_max, "unservable"),
        (past_path_max, "oserror"),
        (deep_below_a_nested_dotgit, "settled"),
    ],
)
def test_find_and_the_python_walk_refuse_alike(
    trees: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    leave: Callable[[Path], tuple[str, ...]],
    want: str,
) -> None:
    listed_root, walked_root = trees
    listed_root.mkdir(parents=True)
    walked_root.mkdir(parents=True)
    gitlinks = leave(listed_root)
    assert leave(walked_root) == gitlinks
    if want == "oserror":  # find reads it (relative to descriptors); settle refuses it as the walk
        with pytest.raises(OSError, match="too long"):
            tree._deviants(listed_root, ~tree._umask())
        listed = outcome(settle, listed_root, gitlinks)
    else:
        listed = outcome(with_find, listed_root, gitlinks)
    walked = outcome(walking(monkeypatch), walked_root, gitlinks)
    assert listed == walked
    assert listed[0] == want


@pytest.mark.parametrize("program", ["false", "no-such-find"])
def test_settle_walks_in_python_where_find_is_missing_or_fails(
    trees: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, program: str
) -> None:
    """`false` exits 1 (as find does on an error); a program not on PATH cannot start."""
    for root in trees:
        hostile(root)
    listed = outcome(with_find, trees[0], ())
    monkeypatch.setattr(tree, "FIND", program)
    assert tree._deviants(trees[1], ~tree._umask()) is None
    assert outcome(settle, trees[1], ()) == listed


CHILD = """
import json, os, sys
from pathlib import Path
from bot.git import tree
root = Path(sys.argv[1])
listed = tree._deviants(root, ~tree._umask())
print(json.dumps([listed is None, tree.settle(root)]))
"""


def test_a_directory_find_cannot_read_is_settled_by_the_python_walk(trees: tuple[Path, Path]) -> None:
    """Without the privilege to read any directory (not root, or root without CAP_DAC_*), find fails on
    a mode-000 directory; the Python walk gives it its mode before it reads it."""
    unprivileged, reference = trees
    for root in trees:
        hostile(root)
    drop = ["setpriv", "--inh-caps=-dac_override,-dac_read_search"]
    drop += ["--bounding-set=-dac_override,-dac_read_search", "--"]
    child = subprocess.run(
        [*(drop if os.geteuid() == 0 else []), sys.executable, "-c", CHILD, str(unprivileged)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    fell_back, changed = json.loads(child.stdout)
    assert fell_back
    assert ("settled", changed, snapshot(unprivileged)) == outcome(settle, reference, ())
