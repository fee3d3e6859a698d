"""The worktree fingerprint changes with every kind of change and only then."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.agent.worktree import FingerprintError, fingerprint
from tests.agent.conftest import git


async def test_reading_and_git_status_leave_the_fingerprint_alone(worktree: Path) -> None:
    before = await fingerprint(worktree)
    (worktree / "README.md").read_text()
    git(worktree, "status")

    assert await fingerprint(worktree) == before


@pytest.mark.parametrize(
    "change",
    [
        "edit_tracked",
        "new_untracked",
        "edit_untracked",
        "delete_tracked",
        "stage",
        "commit",
        "chmod",
        "symlink",
    ],
)
async def test_every_kind_of_change_alters_the_fingerprint(worktree: Path, change: str) -> None:
    (worktree / "notes.txt").write_text("one\n")
    before = await fingerprint(worktree)

    apply(worktree, change)

    assert await fingerprint(worktree) != before


def apply(worktree: Path, change: str) -> None:
    readme = worktree / "README.md"
    if change == "edit_tracked":
        readme.write_text("# demo!\n")
    elif change == "new_untracked":
        (worktree / "src.py").write_text("x = 1\n")
    elif change == "edit_untracked":
        (worktree / "notes.txt").write_text("two\n")
    elif change == "delete_tracked":
        readme.unlink()
    elif change == "stage":
        git(worktree, "add", "notes.txt")
    elif change == "commit":
        git(worktree, "commit", "-q", "--allow-empty", "-m", "more")
    elif change == "chmod":
        readme.chmod(0o755)
    elif change == "symlink":
        (worktree / "link").symlink_to("README.md")


async def test_a_directory_that_is_not_a_repository_cannot_be_fingerprinted(tmp_path: Path) -> None:
    with pytest.raises(FingerprintError):
        await fingerprint(tmp_path / "missing")
