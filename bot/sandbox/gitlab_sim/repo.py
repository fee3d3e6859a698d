"""Reading and writing the simulator's bare git repositories with the git CLI (argv only)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_S = 30
BRANCH_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<![./])$")
ISOLATED_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


class GitError(RuntimeError):
    """A git command failed."""


@dataclass(frozen=True)
class Commit:
    id: str
    parent_ids: tuple[str, ...]
    author_name: str
    author_email: str
    authored_date: str
    committer_name: str
    committer_email: str
    committed_date: str
    message: str

    @property
    def title(self) -> str:
        return self.message.split("\n", 1)[0]


@dataclass(frozen=True)
class FileChange:
    old_path: str
    new_path: str
    a_mode: str
    b_mode: str
    new_file: bool
    renamed_file: bool
    deleted_file: bool
    diff: str


def valid_branch(name: str) -> bool:
    return bool(BRANCH_RE.fullmatch(name)) and not name.endswith(".lock")


def git(repo: Path, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run `git --git-dir=<repo> <args>` and return stdout; raises GitError on failure."""
    full_env = {**os.environ, **ISOLATED_ENV, **(env or {})}
    proc = subprocess.run(
        ["git", f"--git-dir={repo}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=GIT_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {proc.stderr.strip()[:300]}")
    return proc.stdout


def init_bare(repo: Path, default_branch: str = "main") -> None:
    repo.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "init", "--quiet", "--bare", f"--initial-branch={default_branch}", "--", str(repo)],
        check=True,
        capture_output=True,
        env={**os.environ, **ISOLATED_ENV},
        timeout=GIT_TIMEOUT_S,
    )


def branch_head(repo: Path, branch: str) -> str | None:
    if not valid_branch(branch):
        return None
    try:
        return git(
            repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"refs/heads/{branch}^{{commit}}"
        ).strip()
    except GitError:
        return None


def commit_info(repo: Path, sha: str) -> Commit:
    fmt = "%H%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"
    fields = git(repo, "show", "--no-patch", f"--format={fmt}", "--end-of-options", sha).split("\x00")
    return Commit(
        id=fields[0],
        parent_ids=tuple(fields[1].split()),
        author_name=fields[2],
        author_email=fields[3],
        authored_date=fields[4],
        committer_name=fields[5],
        committer_email=fields[6],
        committed_date=fields[7],
        message=fields[8].rstrip("\n"),
    )


def merge_base(repo: Path, a: str, b: str) -> str | None:
    try:
        return git(repo, "merge-base", "--end-of-options", a, b).strip() or None
    except GitError:
        return None


def _patch(repo: Path, base: str, head: str, paths: list[str]) -> str:
    text = git(repo, "diff", "--no-color", "--no-ext-diff", "-M", base, head, "--", *paths)
    start = text.find("\n@@")
    return text[start + 1 :] if start >= 0 else ""


def changes(repo: Path, base: str, head: str) -> list[FileChange]:
    """The files changed between two commits, with GitLab-style per-file unified diffs."""
    raw = git(repo, "diff", "--raw", "-z", "-M", "--no-abbrev", base, head).split("\x00")
    found: list[FileChange] = []
    i = 0
    while i < len(raw) - 1:
        meta = raw[i].lstrip(":").split()
        status = meta[4]
        if status.startswith(("R", "C")):
            old, new, i = raw[i + 1], raw[i + 2], i + 3
        else:
            old = new = raw[i + 1]
            i += 2
        found.append(
            FileChange(
                old_path=old,
                new_path=new,
                a_mode=meta[0],
                b_mode=meta[1],
                new_file=status == "A",
                renamed_file=status.startswith("R"),
                deleted_file=status == "D",
                diff=_patch(repo, base, head, sorted({old, new})),
            )
        )
    return found


def commit_files(
    repo: Path,
    branch: str,
    files: Mapping[str, str | None],
    message: str,
    *,
    start_from: str | None = None,
    author: tuple[str, str] = ("Sandbox", "sandbox@example.com"),
) -> str:
    """Commit `files` (path -> text, None deletes) on `branch`, starting from its head or `start_from`."""
    if not valid_branch(branch):
        raise GitError(f"invalid branch name: {branch[:60]!r}")
    parent = branch_head(repo, branch) or (branch_head(repo, start_from) if start_from else None)
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "GIT_INDEX_FILE": str(Path(tmp) / "index"),
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_COMMITTER_NAME": author[0],
            "GIT_COMMITTER_EMAIL": author[1],
        }
        if parent:
            git(repo, "read-tree", parent, env=env)
        for path, text in files.items():
            if text is None:
                git(repo, "update-index", "--force-remove", "--", path, env=env)
                continue
            blob = git(repo, "hash-object", "-w", "--stdin", stdin=text, env=env).strip()
            git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = git(repo, "write-tree", env=env).strip()
        parents = ["-p", parent] if parent else []
        sha = git(repo, "commit-tree", tree, *parents, stdin=message + "\n", env=env).strip()
    git(repo, "update-ref", f"refs/heads/{branch}", sha)
    return sha


def import_files(
    repo: Path, branch: str, files: Mapping[str, str], message: str, *, author: tuple[str, str]
) -> str:
    """Make `files` one root commit on `branch` with a single `git fast-import` (a seed: one process
    however many files, where `commit_files` runs two per file); returns the commit id."""
    if not valid_branch(branch):
        raise GitError(f"invalid branch name: {branch[:60]!r}")
    if any("\n" in path or path.startswith('"') for path in files):
        raise GitError("a path with a newline or a leading quote cannot be imported")

    def data(text: str) -> bytes:
        raw = text.encode("utf-8")
        return b"data %d\n%s\n" % (len(raw), raw)

    who = f"{author[0]} <{author[1]}> {int(time.time())} +0000".encode()
    stream = [b"commit refs/heads/%s\nmark :1\n" % branch.encode(), b"author %s\ncommitter %s\n" % (who, who)]
    stream.append(data(message + "\n"))
    for path, text in files.items():
        stream += [b"M 100644 inline %s\n" % path.encode("utf-8"), data(text)]
    with tempfile.TemporaryDirectory() as tmp:
        marks = Path(tmp) / "marks"
        proc = subprocess.run(
            [
                "git",
                f"--git-dir={repo}",
                "fast-import",
                "--quiet",
                "--date-format=raw",
                f"--export-marks={marks}",
            ],
            input=b"".join(stream) + b"done\n",
            capture_output=True,
            env={**os.environ, **ISOLATED_ENV},
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise GitError(f"git fast-import failed: {proc.stderr.decode(errors='replace').strip()[:300]}")
        return marks.read_text().split()[1]  # ":1 <sha>"


def merge(repo: Path, target: str, source_head: str, message: str, author: tuple[str, str]) -> str:
    """Merge `source_head` into branch `target` with a merge commit (GitLab's default merge method) and
    move the branch by compare-and-set; GitError when the two conflict or the target moved meanwhile."""
    start = branch_head(repo, target)
    if start is None:
        raise GitError(f"target branch {target[:60]!r} does not exist")
    tree = (
        git(repo, "merge-tree", "--write-tree", "--no-messages", start, source_head).split("\n", 1)[0].strip()
    )
    env = {
        "GIT_AUTHOR_NAME": author[0],
        "GIT_AUTHOR_EMAIL": author[1],
        "GIT_COMMITTER_NAME": author[0],
        "GIT_COMMITTER_EMAIL": author[1],
    }
    sha = git(
        repo, "commit-tree", tree, "-p", start, "-p", source_head, stdin=message + "\n", env=env
    ).strip()
    git(repo, "update-ref", f"refs/heads/{target}", sha, start)
    return sha
