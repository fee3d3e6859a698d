"""Lending a worktree the sandbox already owns (a warm one) writes no metadata: git's stat cache holds."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bot.containment import host
from bot.containment.confine import Drop
from bot.containment.host import _chown_tree


def test_files_the_sandbox_owns_already_are_not_chowned_again(tmp_path: Path) -> None:
    me = Drop(os.geteuid(), os.getegid())
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("a\n")
    (tmp_path / "link").symlink_to("src/a.py")
    before = {p: p.lstat().st_ctime_ns for p in tmp_path.rglob("*")}
    time.sleep(0.02)
    _chown_tree(tmp_path, me, include_root=False)
    assert {p: p.lstat().st_ctime_ns for p in tmp_path.rglob("*")} == before


as_root = pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another uid needs a root worker")
SANDBOX = Drop(65534, 65534)


def hostile_tree(root: Path, outside: Path) -> None:
    """Names find(1) and a shell would trip on, a symlink out of the tree, a `.git` with contents."""
    (root / "-rf").mkdir()
    (root / "-rf" / "--help").write_text("x\n")
    (root / "new\nline").write_text("x\n")
    (root / "sp ace" / "deep" / "er").mkdir(parents=True)
    (root / "sp ace" / "deep" / "er" / "f").write_text("x\n")
    (root / os.fsdecode(b"bad-\xff-utf8")).write_text("x\n")
    (root / "escape").symlink_to(outside)
    (root / "dangling").symlink_to(root / "nowhere")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")


@as_root
@pytest.mark.parametrize("listing", ["find", "python"])
def test_lending_hands_every_entry_but_the_skipped_to_the_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listing: str
) -> None:
    """The same with find(1) listing what is not the sandbox's yet and with the Python walk it falls
    back to: every entry below the root, symlinks themselves (never their targets), `.git` left alone."""
    outside = tmp_path / "outside.txt"
    outside.write_text("not in the tree\n")
    root = tmp_path / "tree"
    root.mkdir()
    hostile_tree(root, outside)
    if listing == "python":
        monkeypatch.setattr("bot.containment.host._not_owned", lambda *_: None)
    else:  # find runs (a listing, not a fallback)
        assert host._not_owned(root, SANDBOX) is not None

    _chown_tree(root, SANDBOX, include_root=False, skip=(root / ".git",))

    owners = {str(p.relative_to(root)): (p.lstat().st_uid, p.lstat().st_gid) for p in root.rglob("*")}
    ours = {name for name, owner in owners.items() if owner == (os.geteuid(), os.getegid())}
    assert ours == {".git", ".git/config"}
    assert set(owners) - ours and all(owners[n] == (65534, 65534) for n in set(owners) - ours)
    assert "new\nline" in owners and "-rf/--help" in owners and os.fsdecode(b"bad-\xff-utf8") in owners
    assert outside.stat().st_uid == os.geteuid()  # the symlink's target outside the tree is not touched
    assert root.stat().st_uid == os.geteuid()  # nor the root (include_root=False)


@as_root
def test_without_find_the_python_walk_lends_the_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tree"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "c.txt").write_text("x\n")
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))

    assert host._not_owned(root, SANDBOX) is None
    _chown_tree(root, SANDBOX, include_root=False)
    assert (root / "a" / "b" / "c.txt").stat().st_uid == 65534
