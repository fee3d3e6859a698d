"""The workspace end to end: mirror, worktree per run, commit, push through askpass to a real HTTP remote."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.git.branch import branch_name
from bot.git.errors import GitError, HeadMoved, NothingToCommit, UnsafeInput, WorkspaceError
from bot.git.runner import GitRunner
from bot.git.workspace import Workspace
from tests.git.repos import BOT, TOKEN, Served, Upstream, git

ZERO = "0" * 40


def workspace(tmp_path: Path, runner: GitRunner | None = None) -> Workspace:
    return Workspace(tmp_path / "ws", BOT, runner=runner)


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


async def test_mirror_is_created_once_then_fetch_picks_up_and_prunes(
    tmp_path: Path, upstream: Upstream, served: Served
) -> None:
    ws = workspace(tmp_path)
    mirror = await ws.ensure_mirror(upstream.repo_id, served.url, SecretStr(TOKEN))
    assert git("rev-parse", "refs/remotes/origin/main", cwd=mirror) == upstream.ref("refs/heads/main")

    new_sha = upstream.commit("CHANGELOG", "v2\n")
    upstream.commit("feature.txt", "f\n", branch="feature")
    assert await ws.ensure_mirror(upstream.repo_id, served.url, SecretStr(TOKEN)) == mirror
    assert git("rev-parse", "refs/remotes/origin/main", cwd=mirror) == new_sha
    assert "refs/remotes/origin/feature" in git("for-each-ref", "--format=%(refname)", cwd=mirror)

    git("update-ref", "-d", "refs/heads/feature", cwd=upstream.bare)
    await ws.ensure_mirror(upstream.repo_id, served.url, SecretStr(TOKEN))
    assert "feature" not in git("for-each-ref", "--format=%(refname)", cwd=mirror)
    assert "refs/heads/" not in git("for-each-ref", "--format=%(refname)", cwd=mirror)


async def test_a_run_commits_as_the_bot_and_pushes_the_exact_sha(
    tmp_path: Path, upstream: Upstream, served: Served
) -> None:
    ws = workspace(tmp_path)
    await ws.ensure_mirror(upstream.repo_id, served.url, SecretStr(TOKEN))
    branch = branch_name("PROJ-42", "Add a greeting endpoint")
    worktree = await ws.create_worktree(upstream.repo_id, "run-1", "main", branch)
    assert worktree == ws.root / "worktrees" / "run-1"
    assert git("symbolic-ref", "HEAD", cwd=worktree) == f"refs/heads/{branch}"

    (worktree / "src" / "app.py").write_text("print('hello, world')\n")
    (worktree / "src" / "greet.py").write_text("def greet() -> str:\n    return 'hi'\n")
    sha = await ws.commit_all(worktree, "PROJ-42: add a greeting endpoint\n\n# not a comment")
    assert git("log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", cwd=worktree).split("|") == [
        "Baton Bot <baton@example.test>",
        "Baton Bot <baton@example.test>",
        "PROJ-42: add a greeting endpoint\n\n# not a comment",
    ]

    await ws.push(worktree, served.url, branch, SecretStr(TOKEN), sha)
    assert upstream.ref(f"refs/heads/{branch}") == sha
    assert [(u.ref, u.old, u.new, u.user) for u in served.updates] == [
        (f"refs/heads/{branch}", ZERO, sha, "oauth2")
    ]


async def test_wrong_token_fails_clearly_and_never_shows_a_token(
    tmp_path: Path, upstream: Upstream, served: Served
) -> None:
    ws = workspace(tmp_path)
    await ws.ensure_mirror(upstream.repo_id, served.url, SecretStr(TOKEN))
    branch = branch_name("PROJ-1", "x")
    worktree = await ws.create_worktree(upstream.repo_id, "run-wrong", "main", branch)
    (worktree / "new.txt").write_text("x\n")
    sha = await ws.commit_all(worktree, "PROJ-1: x")
    wrong = "glpat-WRONG-secret-value-987"

    with pytest.raises(GitError) as caught:
        await ws.push(worktree, served.url, branch, SecretStr(wrong), sha)
    message = str(caught.value)
    assert caught.value.command == "push"
    assert "Authentication failed" in message
    assert wrong not in message
    assert TOKEN not in message
    assert upstream.ref(f"refs/heads/{branch}") is None
    assert served.updates == []


async def test_without_a_token_git_fails_instead_of_prompting(
    tmp_path: Path, upstream: Upstream, served: Served
) -> None:
    ws = workspace(tmp_path)
    with pytest.raises(GitError, match=r"terminal prompts disabled|could not read Username"):
        await ws.ensure_mirror(upstream.repo_id, served.url, None)


async def test_token_is_in_no_argv_and_in_no_file_left_behind(
    tmp_path: Path, upstream: Upstream, served: Served
) -> None:
    spawned: list[tuple[str, ...]] = []
    trace = (
        tmp_path / "git-trace.log"
    )  # GIT_TRACE logs the argv of every process git starts, askpass included
    runner = GitRunner(extra_env={"GIT_TRACE": str(trace)}, observer=lambda argv, cwd: spawned.append(argv))
    ws = workspace(tmp_path, runner)
    await ws.ensure_mirror(upstream.repo_id, served.url, SecretStr(TOKEN))
    branch = branch_name("PROJ-7", "secret handling")
    async with ws.run_worktree(upstream.repo_id, "run-7", "main", branch) as worktree:
        (worktree / "f.txt").write_text("content\n")
        sha = await ws.commit_all(worktree, "PROJ-7: f")
        await ws.push(worktree, served.url, branch, SecretStr(TOKEN), sha)

    assert upstream.ref(f"refs/heads/{branch}") == sha
    assert spawned
    assert not any(TOKEN in arg for argv in spawned for arg in argv)
    traced = trace.read_text()
    assert "askpass" in traced
    assert "git-remote-http" in traced
    assert TOKEN not in traced
    assert files_containing(ws.root, TOKEN.encode()) == []
    assert not any("@" in arg for argv in spawned for arg in argv if arg.startswith("http"))


async def test_push_refuses_when_head_moved_since_the_proposal(
    tmp_path: Path, upstream: Upstream, served: Served
) -> None:
    ws = workspace(tmp_path)
    await ws.ensure_mirror(upstream.repo_id, served.url, SecretStr(TOKEN))
    branch = branch_name("PROJ-9", "moving head")
    worktree = await ws.create_worktree(upstream.repo_id, "run-9", "main", branch)
    (worktree / "a.txt").write_text("1\n")
    proposed = await ws.commit_all(worktree, "PROJ-9: one")
    (worktree / "a.txt").write_text("2\n")
    await ws.commit_all(worktree, "PROJ-9: sneaky second commit")

    with pytest.raises(HeadMoved):
        await ws.push(worktree, served.url, branch, SecretStr(TOKEN), proposed)
    assert upstream.ref(f"refs/heads/{branch}") is None


async def test_nothing_to_commit_is_reported(tmp_path: Path, upstream: Upstream) -> None:
    ws = workspace(tmp_path)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    worktree = await ws.create_worktree(upstream.repo_id, "run-empty", "main", "baton/PROJ-3-noop")
    with pytest.raises(NothingToCommit):
        await ws.commit_all(worktree, "PROJ-3: nothing")


async def test_diff_covers_untracked_files_and_leaves_the_index_alone(
    tmp_path: Path, upstream: Upstream
) -> None:
    ws = workspace(tmp_path)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    worktree = await ws.create_worktree(upstream.repo_id, "run-diff", "main", "baton/PROJ-4-diff")
    (worktree / "README.md").write_text("# project\nmore\n")
    (worktree / "brand-new.py").write_text("x = 1\ny = 2\n")
    status_before = git("status", "--porcelain", cwd=worktree)

    patch = await ws.diff(worktree, "main")
    stat = await ws.diffstat(worktree, "main")

    assert "+++ b/brand-new.py" in patch
    assert "+more" in patch
    assert {(f.path, f.added, f.deleted) for f in stat.files} == {("README.md", 1, 0), ("brand-new.py", 2, 0)}
    assert stat.summary() == "2 files changed, 3 insertions(+), 0 deletions(-)"
    assert git("status", "--porcelain", cwd=worktree) == status_before

    upstream.commit("upstream-only.txt", "moved on\n")
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    assert "upstream-only" not in await ws.diff(worktree, "main")  # measured from the merge base


async def test_cleanup_after_success_and_after_failure(tmp_path: Path, upstream: Upstream) -> None:
    ws = workspace(tmp_path)
    mirror = await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    async with ws.run_worktree(upstream.repo_id, "ok-run", "main", "baton/PROJ-5-ok") as worktree:
        (worktree / "x").write_text("x\n")
        await ws.commit_all(worktree, "PROJ-5: ok")

    async def crashing_run() -> None:
        async with ws.run_worktree(upstream.repo_id, "bad-run", "main", "baton/PROJ-6-bad") as worktree:
            (worktree / "half-done").write_text("x\n")
            raise RuntimeError("agent crashed")

    with pytest.raises(RuntimeError, match="agent crashed"):
        await crashing_run()

    assert list((ws.root / "worktrees").iterdir()) == []
    listed = git("worktree", "list", "--porcelain", cwd=mirror)
    assert listed.count("worktree ") == 1 + 1  # the mirror, and one worktree both runs used in turn
    assert listed.count("detached") == 1 and str(ws.worktrees) not in listed
    assert "refs/heads/" not in git("for-each-ref", "--format=%(refname)", cwd=mirror)


async def test_remove_handles_a_worktree_whose_git_file_was_destroyed(
    tmp_path: Path, upstream: Upstream
) -> None:
    ws = workspace(tmp_path)
    mirror = await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    worktree = await ws.create_worktree(upstream.repo_id, "run-x", "main", "baton/PROJ-8-x")
    (worktree / ".git").unlink()
    await ws.remove_worktree("run-x")
    assert not worktree.exists()
    assert git("worktree", "list", "--porcelain", cwd=mirror).count("worktree ") == 1
    again = await ws.create_worktree(
        upstream.repo_id, "run-y", "main", "baton/PROJ-8-x"
    )  # stale branch dropped
    assert git("symbolic-ref", "HEAD", cwd=again) == "refs/heads/baton/PROJ-8-x"


async def test_retrying_a_run_recreates_its_worktree(tmp_path: Path, upstream: Upstream) -> None:
    ws = workspace(tmp_path)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    first = await ws.create_worktree(upstream.repo_id, "run-r", "main", "baton/PROJ-10-r")
    (first / "leftover").write_text("x\n")
    second = await ws.create_worktree(upstream.repo_id, "run-r", "main", "baton/PROJ-10-r")
    assert second == first
    assert not (second / "leftover").exists()


async def test_a_branch_in_use_by_another_run_is_refused(tmp_path: Path, upstream: Upstream) -> None:
    ws = workspace(tmp_path)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    await ws.create_worktree(upstream.repo_id, "run-a", "main", "baton/PROJ-11-same")
    with pytest.raises(GitError, match="checked out"):
        await ws.create_worktree(upstream.repo_id, "run-b", "main", "baton/PROJ-11-same")


async def test_concurrent_runs_share_one_mirror_safely(
    tmp_path: Path, upstream: Upstream, served: Served
) -> None:
    ws = workspace(tmp_path)
    token = SecretStr(TOKEN)
    mirror = await ws.ensure_mirror(upstream.repo_id, served.url, token)

    async def one_run(n: int) -> tuple[str, str]:
        branch = branch_name(f"PROJ-{100 + n}", f"parallel change {n}")
        async with ws.run_worktree(upstream.repo_id, f"par-{n}", "main", branch) as worktree:
            (worktree / f"file{n}.txt").write_text(f"{n}\n")
            await ws.ensure_mirror(upstream.repo_id, served.url, token)  # a fetch while others work
            sha = await ws.commit_all(worktree, f"PROJ-{100 + n}: change {n}")
            await ws.push(worktree, served.url, branch, token, sha)
            return branch, sha

    results = await asyncio.wait_for(asyncio.gather(*(one_run(n) for n in range(4))), 60)
    for branch, sha in results:
        assert upstream.ref(f"refs/heads/{branch}") == sha
    assert len({sha for _, sha in results}) == 4
    git("fsck", "--no-progress", "--strict", cwd=mirror)
    assert list((ws.root / "worktrees").iterdir()) == []


@pytest.mark.parametrize(
    ("repo_id", "run_id", "base_ref", "branch"),
    [
        ("group/project", "../escape", "main", "baton/PROJ-1-x"),
        ("group/project", "run/nested", "main", "baton/PROJ-1-x"),
        ("group/project", "run-ok", "main", "--upload-pack=touch /tmp/pwned"),
        ("group/project", "run-ok", "main", "baton/x..y"),
        ("group/project", "run-ok", "--output=/tmp/pwned", "baton/PROJ-1-x"),
        ("group/project", "run-ok", "main@{1}", "baton/PROJ-1-x"),
    ],
)
async def test_hostile_names_are_refused_before_git_runs(
    tmp_path: Path, upstream: Upstream, repo_id: str, run_id: str, base_ref: str, branch: str
) -> None:
    ws = workspace(tmp_path)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    with pytest.raises(UnsafeInput):
        await ws.create_worktree(repo_id, run_id, base_ref, branch)


async def test_unknown_base_ref_and_missing_mirror_are_workspace_errors(
    tmp_path: Path, upstream: Upstream
) -> None:
    ws = workspace(tmp_path)
    with pytest.raises(WorkspaceError, match="ensure_mirror"):
        await ws.create_worktree(upstream.repo_id, "run-1", "main", "baton/PROJ-1-x")
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    with pytest.raises(WorkspaceError, match="not a commit"):
        await ws.create_worktree(upstream.repo_id, "run-1", "no-such-branch", "baton/PROJ-1-x")


async def test_operations_refuse_paths_outside_the_workspace(tmp_path: Path, upstream: Upstream) -> None:
    ws = workspace(tmp_path)
    with pytest.raises(WorkspaceError, match="not a worktree"):
        await ws.commit_all(upstream.seed, "PROJ-1: x")
