"""Test helpers for git: real bare repositories, and uvicorn serving an ASGI app on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from bot.git.workspace import GitAuthor
from bot.sandbox.git_http import GitHttpBackend, RefUpdate

TOKEN = "glpat-Sandbox-Token-0123456789"
BOT = GitAuthor("Baton Bot", "baton@example.test")
PLAIN_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "LC_ALL": "C",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Up Stream",
    "GIT_AUTHOR_EMAIL": "upstream@example.test",
    "GIT_COMMITTER_NAME": "Up Stream",
    "GIT_COMMITTER_EMAIL": "upstream@example.test",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Plain git for setting up and inspecting test repositories (not Baton's runner)."""
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=PLAIN_ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


@dataclass
class Upstream:
    """A bare repository `<root>/group/project.git` plus a clone used to add commits to it."""

    root: Path
    bare: Path
    seed: Path
    repo_id: str = "group/project"

    def commit(self, name: str, content: str, *, branch: str = "main") -> str:
        (self.seed / name).write_text(content)
        git("add", "--all", cwd=self.seed)
        git("commit", "--quiet", "-m", f"upstream: {name}", cwd=self.seed)
        git("push", "--quiet", str(self.bare), f"HEAD:refs/heads/{branch}", cwd=self.seed)
        return git("rev-parse", "HEAD", cwd=self.seed)

    def ref(self, ref: str) -> str | None:
        try:
            return git("rev-parse", "--verify", "--quiet", ref, cwd=self.bare)
        except subprocess.CalledProcessError:
            return None


@dataclass
class Served:
    url: str  # the repository's URL
    base: str
    backend: GitHttpBackend
    updates: list[RefUpdate] = field(default_factory=list)


def make_upstream(base: Path) -> Upstream:
    root = base / "served"
    bare = root / "group" / "project.git"
    bare.parent.mkdir(parents=True)
    git("init", "--quiet", "--bare", str(bare))
    seed = base / "seed"
    git("init", "--quiet", str(seed))
    upstream = Upstream(root, bare, seed)
    (seed / "src").mkdir()
    (seed / "src" / "app.py").write_text("print('hello')\n")
    upstream.commit("README.md", "# project\n")
    return upstream


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Run `app` under uvicorn in a thread on a free 127.0.0.1 port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def deep_chain(base: Path, levels: int, name: str = "d", *, leaf_mode: int = 0o644) -> None:
    """`levels` nested directories under `base` and a file `leaf` at the bottom, made relative to
    descriptors (the path may pass PATH_MAX)."""
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, leaf_mode, dir_fd=fd), "w") as leaf:
            leaf.write("bottom\n")
    finally:
        os.close(fd)
