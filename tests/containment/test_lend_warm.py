"""Lending a worktree the sandbox already owns (a warm one) writes no metadata: git's stat cache holds."""

from __future__ import annotations

import os
import time
from pathlib import Path

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
