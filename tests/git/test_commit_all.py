"""Workspace.commit_all with real git: what `git commit` made, made with plumbing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.git.errors import NothingToCommit, UnsafeInput
from bot.git.workspace import Workspace
from tests.git.repos import BOT, Upstream, git


@pytest.fixture
async def workspace(tmp_path: Path, upstream: Upstream) -> Workspace:
    """A workspace with the upstream's mirror, for worktrees of `main`."""
    ws = Workspace(tmp_path / "ws", BOT)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    return ws


MESSAGE = "# DEMO-1: a title that starts like a comment  \n\nbody line\n\n\n"


async def test_the_commit_holds_every_change_verbatim_on_top_of_head(
    workspace: Workspace, upstream: Upstream
) -> None:
    ws = workspace
    async with ws.run_worktree(upstream.repo_id, "run-1", "main", "baton/demo-1") as tree:
        before = git("rev-parse", "HEAD", cwd=tree)
        (tree / "README.md").write_text("changed\n")
        (tree / "new.txt").write_text("new\n")
        sha = await ws.commit_all(tree, MESSAGE)

        assert git("rev-parse", "HEAD", cwd=tree) == sha
        assert git("rev-parse", "refs/heads/baton/demo-1", cwd=tree) == sha
        assert git("rev-parse", f"{sha}^", cwd=tree) == before
        assert (
            git("cat-file", "commit", sha, cwd=tree).split("\n\n", 1)[1] == MESSAGE.strip()
        )  # (git() strips)
        assert BOT.name in git("log", "-1", "--format=%an %cn", cwd=tree)
        assert set(git("show", "--name-only", "--format=", sha, cwd=tree).split()) == {"README.md", "new.txt"}
        assert git("status", "--porcelain", cwd=tree) == ""  # the index is the commit's tree


async def test_nothing_changed_is_nothing_to_commit_and_head_stays(
    workspace: Workspace, upstream: Upstream
) -> None:
    ws = workspace
    async with ws.run_worktree(upstream.repo_id, "run-2", "main", "baton/demo-2") as tree:
        before = git("rev-parse", "HEAD", cwd=tree)
        with pytest.raises(NothingToCommit):
            await ws.commit_all(tree, "nothing")
        assert git("rev-parse", "HEAD", cwd=tree) == before


async def test_the_diff_at_the_commit_is_the_worktrees_diff_and_ignores_later_edits(
    workspace: Workspace, upstream: Upstream
) -> None:
    """A proposal's diff is read from the commit just made (no second snapshot of the working tree): the
    same text and stat as the working tree's diff, and nothing written after the commit."""
    ws = workspace
    async with ws.run_worktree(upstream.repo_id, "run-3", "main", "baton/demo-3") as tree:
        base = git("rev-parse", "HEAD", cwd=tree)
        (tree / "README.md").write_text("changed\n")
        (tree / "new.txt").write_text("new\n")
        expected, expected_stat = await ws.diff(tree, base), await ws.diffstat(tree, base)
        sha = await ws.commit_all(tree, "the change")
        (tree / "later.txt").write_text("written after the commit\n")

        assert await ws.diff(tree, base, at=sha) == expected
        assert await ws.diffstat(tree, base, at=sha) == expected_stat
        snapshot = await ws.snapshot(tree)  # the working tree now: the commit and the later file
        assert "later.txt" in await ws.diff(tree, base, at=snapshot)
        assert await ws.diff(tree, base, at=snapshot) == await ws.diff(tree, base)
        assert git("status", "--porcelain", cwd=tree) == "?? later.txt"  # the real index untouched
        assert {f.path for f in expected_stat.files} == {"README.md", "new.txt"}
        assert "later.txt" in await ws.diff(tree, base)  # the working tree's own diff still sees it
        for bad in ("HEAD", "--output=/tmp/x", sha[:12], f"{sha}\n"):
            with pytest.raises(UnsafeInput):
                await ws.diff(tree, base, at=bad)
