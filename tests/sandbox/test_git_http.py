"""The sandbox's smart-HTTP git server: Basic auth like GitLab, real git clients, pushes recorded."""

from __future__ import annotations

import base64
import gzip
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from bot.git.askpass import askpass_env, install_script
from bot.sandbox.git_http import (
    CommandSniffer,
    GitHttpBackend,
    GitRequest,
    RefUpdate,
    basic_auth_user,
    parse_cgi_headers,
    parse_git_request,
)
from tests.git.repos import PLAIN_ENV, TOKEN, Upstream, git, make_upstream, serve

ZERO = "0" * 40
UPLOAD = "service=git-upload-pack"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Site:
    def __init__(self, upstream: Upstream, backend: GitHttpBackend, base: str, seen: list[RefUpdate]) -> None:
        self.upstream = upstream
        self.backend = backend
        self.base = base
        self.url = f"{base}/group/project.git"
        self.seen = seen

    def client_git(self, tmp: Path, *args: str, token: str = TOKEN, cwd: Path | None = None) -> str:
        """A stock git client authenticating through an askpass helper, as a developer's would."""
        env = {**PLAIN_ENV, **askpass_env(install_script(tmp / "bin"), self.url, token, "someone")}
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        return done.stdout.strip()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    upstream = make_upstream(tmp_path)
    seen: list[RefUpdate] = []

    async def on_push(update: RefUpdate) -> None:
        seen.append(update)

    backend = GitHttpBackend(upstream.root, TOKEN, on_push=on_push)
    with serve(backend) as base:
        yield Site(upstream, backend, base, seen)


# -- pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/g/p.git/info/refs", UPLOAD, GitRequest("g/p.git", "git-upload-pack")),
        ("GET", "/g/sub/p/info/refs", "service=git-receive-pack", GitRequest("g/sub/p", "git-receive-pack")),
        ("POST", "/g/p.git/git-upload-pack", "", GitRequest("g/p.git", "git-upload-pack")),
        ("POST", "/g/p.git/git-receive-pack", "", GitRequest("g/p.git", "git-receive-pack")),
        ("GET", "/g/p.git/info/refs", "", None),
        ("GET", "/g/p.git/info/refs", "service=git-upload-archive", None),
        ("POST", "/g/p.git/info/refs", UPLOAD, None),
        ("GET", "/g/p.git/git-upload-pack", "", None),
        ("GET", "/g/p.git/HEAD", "", None),
        ("GET", "/g/p.git/objects/info/packs", "", None),
        ("GET", "/../etc/info/refs", UPLOAD, None),
        ("GET", "/g/../../etc/info/refs", UPLOAD, None),
        ("GET", "/g/.hidden/info/refs", UPLOAD, None),
        ("GET", "/-x/info/refs", UPLOAD, None),
        ("GET", "//info/refs", UPLOAD, None),
        ("GET", "/g/p.git/info/refs\n", UPLOAD, None),
    ],
)
def test_only_smart_http_requests_are_served(
    method: str, path: str, query: str, expected: GitRequest | None
) -> None:
    assert parse_git_request(method, path, query) == expected


@pytest.mark.parametrize(
    ("header", "user"),
    [
        (basic("oauth2", TOKEN)["Authorization"], "oauth2"),
        (basic("alice", TOKEN)["Authorization"], "alice"),
        ("basic " + base64.b64encode(f"bob:{TOKEN}".encode()).decode(), "bob"),
        (basic("oauth2", TOKEN + "x")["Authorization"], None),
        (basic("oauth2", "")["Authorization"], None),
        (basic("", TOKEN)["Authorization"], None),
        (basic("a\nb", TOKEN)["Authorization"], None),
        ("Basic " + base64.b64encode(TOKEN.encode()).decode(), None),
        ("Basic !!!not-base64!!!", None),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), None),
        (f"Bearer {TOKEN}", None),
        ("", None),
        (None, None),
    ],
)
def test_basic_auth_accepts_any_username_with_the_token(header: str | None, user: str | None) -> None:
    assert basic_auth_user(header, TOKEN) == user


def test_an_empty_configured_token_admits_nobody() -> None:
    assert basic_auth_user(basic("oauth2", "")["Authorization"], "") is None


def test_cgi_headers() -> None:
    block = (
        b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nExpires: Fri, 01 Jan 1980 00:00:00 GMT\r\n\r\n"
    )
    status, headers = parse_cgi_headers(block)
    assert status == 404
    assert headers == [(b"content-type", b"text/plain"), (b"expires", b"Fri, 01 Jan 1980 00:00:00 GMT")]
    assert parse_cgi_headers(b"Content-Type: x\r\n\r\n")[0] == 200


def test_command_sniffer_reads_gzip_bodies_in_pieces() -> None:
    line = f"{ZERO} {'a' * 40} refs/heads/x\0report-status side-band-64k\n".encode()
    body = gzip.compress(f"{len(line) + 4:04x}".encode() + line + b"0000PACK" + os.urandom(2000))
    sniffer = CommandSniffer("gzip")
    for start in range(0, len(body), 7):
        sniffer.feed(body[start : start + 7])
    assert sniffer.done
    assert [(c.old, c.new, c.ref) for c in sniffer.commands] == [(ZERO, "a" * 40, "refs/heads/x")]
    assert "side-band-64k" in sniffer.capabilities


# -- over HTTP -----------------------------------------------------------------------------------


def test_no_or_wrong_credentials_get_a_basic_challenge(site: Site) -> None:
    for headers in ({}, basic("oauth2", "wrong-token")):
        response = httpx.get(f"{site.url}/info/refs?{UPLOAD}", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="Baton sandbox git"'
        assert TOKEN not in response.text


def test_advertisement_with_the_token(site: Site) -> None:
    response = httpx.get(f"{site.url}/info/refs?{UPLOAD}", headers=basic("oauth2", TOKEN), timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-git-upload-pack-advertisement"
    assert response.content.startswith(b"001e# service=git-upload-pack\n")
    assert git("rev-parse", "main", cwd=site.upstream.bare) in response.text


def test_protocol_v2_is_passed_through(site: Site) -> None:
    headers = {**basic("oauth2", TOKEN), "Git-Protocol": "version=2"}
    response = httpx.get(f"{site.url}/info/refs?{UPLOAD}", headers=headers, timeout=10)
    assert b"version 2\n" in response.content


def test_gzip_request_bodies_are_inflated(site: Site) -> None:
    want = site.upstream.ref("refs/heads/main")
    line = f"want {want}\n".encode()
    request = f"{len(line) + 4:04x}".encode() + line + b"0000" + b"0009done\n"
    headers = {
        **basic("oauth2", TOKEN),
        "Content-Type": "application/x-git-upload-pack-request",
        "Content-Encoding": "gzip",
    }
    response = httpx.post(
        f"{site.url}/git-upload-pack", content=gzip.compress(request), headers=headers, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-git-upload-pack-result"
    assert b"NAK" in response.content
    assert b"PACK" in response.content


def test_unknown_repositories_and_paths_are_404(site: Site, tmp_path: Path) -> None:
    auth = basic("oauth2", TOKEN)
    outside = tmp_path / "outside.git"
    git("init", "--quiet", "--bare", str(outside))
    (site.upstream.root / "escape.git").symlink_to(outside)
    for path in (
        f"/group/nope.git/info/refs?{UPLOAD}",
        "/group/project.git/HEAD",
        f"/escape.git/info/refs?{UPLOAD}",
    ):
        assert httpx.get(f"{site.base}{path}?{UPLOAD}", headers=auth, timeout=10).status_code == 404


def test_clone_and_push_with_a_stock_git_client_are_recorded(site: Site, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    site.client_git(tmp_path, "clone", "--quiet", site.url, str(clone))
    assert (clone / "README.md").read_text() == "# project\n"
    old = git("rev-parse", "HEAD", cwd=clone)

    (clone / "new.txt").write_text("new\n")
    git("add", "new.txt", cwd=clone)
    git("commit", "--quiet", "-m", "add new", cwd=clone)
    new = git("rev-parse", "HEAD", cwd=clone)
    site.client_git(
        tmp_path, "push", "--quiet", "origin", "HEAD:refs/heads/main", "HEAD:refs/heads/topic", cwd=clone
    )
    # The hook ran before `git push` returned: nothing to wait for.
    pushed = {(u.repo, u.ref, u.old, u.new, u.user) for u in site.seen}
    assert pushed == {
        ("group/project", "refs/heads/main", old, new, "someone"),
        ("group/project", "refs/heads/topic", ZERO, new, "someone"),
    }
    assert site.backend.pushes == site.seen
    assert site.upstream.ref("refs/heads/topic") == new

    site.seen.clear()
    site.client_git(tmp_path, "push", "--quiet", "origin", "--delete", "topic", cwd=clone)
    assert [(u.ref, u.old, u.new) for u in site.seen] == [("refs/heads/topic", new, ZERO)]


def test_rejected_pushes_are_not_recorded(site: Site, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    site.client_git(tmp_path, "clone", "--quiet", site.url, str(clone))
    git("config", "receive.denyNonFastForwards", "true", cwd=site.upstream.bare)
    before = site.upstream.ref("refs/heads/main")
    git("commit", "--quiet", "--amend", "-m", "rewritten history", cwd=clone)
    (clone / "ok.txt").write_text("fine\n")
    git("add", "ok.txt", cwd=clone)
    git("commit", "--quiet", "-m", "a fine change", cwd=clone)
    # Forced, so the client sends it; receive-pack then refuses main but accepts the new branch.
    with pytest.raises(RuntimeError, match=r"\[remote rejected\] HEAD -> main"):
        site.client_git(
            tmp_path, "push", "--quiet", "origin", "+HEAD:refs/heads/main", "HEAD:refs/heads/ok", cwd=clone
        )
    assert site.upstream.ref("refs/heads/main") == before
    assert [u.ref for u in site.seen] == ["refs/heads/ok"]


def test_wrong_token_push_fails_and_changes_nothing(site: Site, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    site.client_git(tmp_path, "clone", "--quiet", site.url, str(clone))
    with pytest.raises(RuntimeError, match="Authentication failed"):
        site.client_git(tmp_path, "push", "--quiet", "origin", "HEAD:refs/heads/x", token="nope", cwd=clone)
    assert site.upstream.ref("refs/heads/x") is None
    assert site.seen == []


def test_large_chunked_push_streams_through(site: Site, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    site.client_git(tmp_path, "clone", "--quiet", site.url, str(clone))
    (clone / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # beyond http.postBuffer: chunked upload
    git("add", "blob.bin", cwd=clone)
    git("commit", "--quiet", "-m", "big", cwd=clone)
    site.client_git(tmp_path, "push", "--quiet", "origin", "HEAD:refs/heads/big", cwd=clone)
    assert site.upstream.ref("refs/heads/big") == git("rev-parse", "HEAD", cwd=clone)
    assert [u.ref for u in site.seen] == ["refs/heads/big"]


def test_mounted_under_a_prefix(tmp_path: Path) -> None:
    upstream = make_upstream(tmp_path)
    backend = GitHttpBackend(upstream.root, TOKEN)
    with serve(Starlette(routes=[Mount("/git", app=backend)])) as base:
        response = httpx.get(
            f"{base}/git/group/project.git/info/refs?{UPLOAD}", headers=basic("oauth2", TOKEN), timeout=10
        )
    assert response.status_code == 200
    assert git("rev-parse", "main", cwd=upstream.bare) in response.text


def test_a_hung_backend_is_killed_at_the_time_limit(tmp_path: Path) -> None:
    upstream = make_upstream(tmp_path)
    hung = tmp_path / "hung-git"
    hung.write_text("#!/bin/sh\nsleep 30\n")
    hung.chmod(0o755)
    backend = GitHttpBackend(upstream.root, TOKEN, git=str(hung), time_limit=0.5)
    with serve(backend) as base:
        started = time.monotonic()
        response = httpx.get(
            f"{base}/group/project.git/info/refs?{UPLOAD}", headers=basic("x", TOKEN), timeout=10
        )
    assert response.status_code == 502
    assert time.monotonic() - started < 5
