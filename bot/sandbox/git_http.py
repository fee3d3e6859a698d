"""Git smart HTTP for the sandbox: `git http-backend` behind Basic auth, recording every ref a push moves."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import os
import re
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from bot.git.pktline import Incomplete, PushCommand, parse_push_commands, parse_report_status
from bot.git.runner import kill_process_group

log = logging.getLogger(__name__)

SERVICES = frozenset({"git-upload-pack", "git-receive-pack"})
DEFAULT_REALM = "Baton sandbox git"
CHUNK = 64 * 1024
SNIFF_LIMIT = 1024 * 1024  # a push's command list is far smaller; the pack that follows is not read
REPORT_LIMIT = 4 * 1024 * 1024
_PATH_RE = re.compile(
    r"/(?P<repo>[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*)"
    r"/(?P<action>info/refs|git-upload-pack|git-receive-pack)"
)
_USER_RE = re.compile(r"[^\x00-\x1f\x7f:]{1,255}")
_PROTOCOL_RE = re.compile(r"[A-Za-z0-9=:._-]{1,200}")
_SIDEBAND = frozenset({"side-band", "side-band-64k"})


@dataclass(frozen=True)
class RefUpdate:
    """One ref a push moved: `old` is all zeros for a new ref, `new` all zeros for a deletion."""

    repo: str  # the project path as in the URL, without `.git` (e.g. `group/project`)
    ref: str
    old: str
    new: str
    user: str


PushHook = Callable[[RefUpdate], Awaitable[None]]


@dataclass(frozen=True)
class GitRequest:
    repo: str
    service: str  # git-upload-pack or git-receive-pack


# -- pure helpers ------------------------------------------------------------------------------------


def parse_git_request(method: str, path: str, query: str) -> GitRequest | None:
    """The repository and service of a smart-HTTP request; None for anything else (dumb HTTP included)."""
    match = _PATH_RE.fullmatch(path)
    if match is None:
        return None
    action = match["action"]
    if action == "info/refs":
        service = parse_qs(query).get("service", [""])[0]
        ok = method == "GET" and service in SERVICES
    else:
        service = action
        ok = method == "POST"
    return GitRequest(match["repo"], service) if ok else None


def basic_auth_user(header: str | None, token: str) -> str | None:
    """The username when the Basic credentials carry `token` as password (any username, as GitLab)."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep or not _USER_RE.fullmatch(user):
        return None
    return user if hmac.compare_digest(password.encode(), token.encode()) else None


def cgi_env(
    request: GitRequest,
    *,
    root: Path,
    method: str,
    query: str,
    headers: Mapping[str, str],
    user: str,
    path: str,
) -> dict[str, str]:
    """The CGI environment for one `git http-backend` call; nothing inherited but PATH."""
    env = {
        "PATH": path,
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": method,
        "PATH_INFO": f"/{request.repo}/{request.service if method == 'POST' else 'info/refs'}",
        "QUERY_STRING": query,
        "CONTENT_TYPE": headers.get("content-type", ""),
        "REMOTE_USER": user,
        "REMOTE_ADDR": "127.0.0.1",
    }
    length = headers.get("content-length", "")
    if length.isdigit():
        env["CONTENT_LENGTH"] = length
    encoding = headers.get("content-encoding", "")
    if encoding:
        env["HTTP_CONTENT_ENCODING"] = encoding
    protocol = headers.get("git-protocol", "")
    if _PROTOCOL_RE.fullmatch(protocol):
        env["GIT_PROTOCOL"] = protocol
    return {key: value for key, value in env.items() if "\x00" not in value}


def parse_cgi_headers(block: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Status and headers from a CGI header block (`Status: 404 Not Found` sets the status)."""
    status = 200
    headers: list[tuple[bytes, bytes]] = []
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        if name.strip().lower() == b"status":
            status = int(value.split()[0])
        else:
            headers.append((name.strip().lower(), value.strip()))
    return status, headers


def record_updates(
    repo: str, user: str, commands: list[PushCommand], capabilities: frozenset[str], report: bytes
) -> list[RefUpdate]:
    """The commands that receive-pack reported `ok` for."""
    try:
        status = parse_report_status(report, sideband=bool(capabilities & _SIDEBAND))
    except ValueError:
        return []
    accepted = [c for c in commands if c.ref in status and status[c.ref] is None]
    project = repo.removesuffix(".git")
    return [RefUpdate(project, c.ref, c.old, c.new, user) for c in accepted]


class CommandSniffer:
    """Collects the start of a receive-pack request body (inflating gzip) until its command list parses."""

    def __init__(self, content_encoding: str) -> None:
        gzip = content_encoding.lower() in {"gzip", "x-gzip"}
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self._data = bytearray()
        self.done = False
        self.commands: list[PushCommand] = []
        self.capabilities: frozenset[str] = frozenset()

    def feed(self, chunk: bytes) -> None:
        if self.done or not chunk:
            return
        try:
            self._data += self._inflater.decompress(chunk, SNIFF_LIMIT) if self._inflater else chunk
            self.commands, self.capabilities = parse_push_commands(bytes(self._data))
            self.done = True
        except Incomplete:
            self.done = len(self._data) > SNIFF_LIMIT
        except (ValueError, zlib.error):
            self.done = True


# -- the ASGI app ------------------------------------------------------------------------------------


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class GitHttpBackend:
    """ASGI app serving the bare repositories under `root`; mount it anywhere (e.g. `Mount("/git", …)`)."""

    def __init__(
        self,
        root: Path,
        token: str,
        *,
        on_push: PushHook | None = None,
        realm: str = DEFAULT_REALM,
        time_limit: float = 120.0,
        git: str = "git",
        path: str | None = None,
    ) -> None:
        self.root = root.resolve()
        self.pushes: list[RefUpdate] = []
        self._token = token
        self._on_push = on_push
        self._realm = realm.replace('"', "'")
        self._time_limit = time_limit
        self._git = git
        self._path = path if path is not None else os.environ.get("PATH", os.defpath)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        request = Request(scope, receive)
        admitted = self._admit(request)
        if isinstance(admitted, Response):
            await admitted(scope, receive, send)
            return
        await self._serve(request, *admitted, send)

    def _admit(self, request: Request) -> tuple[GitRequest, str] | Response:
        """404 for what is not a smart-HTTP request on a repository under root, 401 without the token."""
        git_request = parse_git_request(request.method, _route_path(request.scope), request.url.query)
        if git_request is None or not self._inside_root(git_request.repo):
            return PlainTextResponse("Not found\n", status_code=404)
        user = basic_auth_user(request.headers.get("authorization"), self._token)
        if user is None:
            challenge = {"WWW-Authenticate": f'Basic realm="{self._realm}"'}
            return PlainTextResponse("HTTP Basic: Access denied\n", status_code=401, headers=challenge)
        return git_request, user

    def _inside_root(self, repo: str) -> bool:
        """`repo` and `repo.git` (http-backend tries both) resolve inside root, symlinks followed."""
        targets = [(self.root / name).resolve() for name in (repo, f"{repo}.git")]
        return all(t != self.root and t.is_relative_to(self.root) for t in targets)

    async def _serve(self, request: Request, git_request: GitRequest, user: str, send: Send) -> None:
        env = cgi_env(
            git_request,
            root=self.root,
            method=request.method,
            query=request.url.query,
            headers=request.headers,
            user=user,
            path=self._path,
        )
        proc = await asyncio.create_subprocess_exec(
            self._git,
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        watchdog = asyncio.get_running_loop().call_later(self._time_limit, kill_process_group, proc)
        pushing = request.method == "POST" and git_request.service == "git-receive-pack"
        sniffer = CommandSniffer(request.headers.get("content-encoding", "")) if pushing else None
        pump = asyncio.create_task(_pump(request, proc, sniffer))
        errors = asyncio.create_task(_drain(proc))
        finished = False
        try:
            await self._respond(proc, send, git_request, user, sniffer, pump)
            finished = True
        finally:
            watchdog.cancel()
            await _reap(proc, grace=5.0 if finished else 0.0)
            pump.cancel()
            await asyncio.gather(pump, errors, return_exceptions=True)
            _log_failure(proc, errors)

    async def _respond(
        self,
        proc: asyncio.subprocess.Process,
        send: Send,
        git_request: GitRequest,
        user: str,
        sniffer: CommandSniffer | None,
        pump: asyncio.Task[None],
    ) -> None:
        assert proc.stdout is not None
        try:
            block = await proc.stdout.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b"git http-backend failed\n"})
            return
        status, headers = parse_cgi_headers(block)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        held, report = await _stream_all_but_last(proc.stdout, send, keep=sniffer is not None)
        if sniffer is not None:
            await self._record(proc, git_request, user, sniffer, pump, report)
        await send({"type": "http.response.body", "body": held, "more_body": False})

    async def _record(
        self,
        proc: asyncio.subprocess.Process,
        git_request: GitRequest,
        user: str,
        sniffer: CommandSniffer,
        pump: asyncio.Task[None],
        report: bytes,
    ) -> None:
        """Runs before the response's last bytes go out, so a client's `git push` returns after it."""
        await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pump), 5.0)
        updates = record_updates(git_request.repo, user, sniffer.commands, sniffer.capabilities, report)
        for update in updates:
            self.pushes.append(update)
            if self._on_push is not None:
                await self._on_push(update)


async def _stream_all_but_last(
    stdout: asyncio.StreamReader, send: Send, *, keep: bool
) -> tuple[bytes, bytes]:
    """Send stdout as it comes, holding back the last chunk; also return a copy when `keep`."""
    held = b""
    copy = bytearray()
    while chunk := await stdout.read(CHUNK):
        if keep and len(copy) < REPORT_LIMIT:
            copy += chunk
        if held:
            await send({"type": "http.response.body", "body": held, "more_body": True})
        held = chunk
    return held, bytes(copy)


async def _pump(request: Request, proc: asyncio.subprocess.Process, sniffer: CommandSniffer | None) -> None:
    """Stream the request body into http-backend's stdin (it inflates gzip bodies itself)."""
    assert proc.stdin is not None
    try:
        async for chunk in request.stream():
            if sniffer is not None:
                sniffer.feed(chunk)
            if chunk:
                proc.stdin.write(chunk)
                await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError, ClientDisconnect):
        pass
    finally:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.close()


async def _drain(proc: asyncio.subprocess.Process) -> bytes:
    assert proc.stderr is not None
    return await proc.stderr.read()


async def _reap(proc: asyncio.subprocess.Process, grace: float) -> None:
    """Let http-backend exit on its own for `grace` seconds, then kill its process group."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), grace)
    kill_process_group(proc)
    await proc.wait()


def _log_failure(proc: asyncio.subprocess.Process, errors: asyncio.Task[bytes]) -> None:
    if proc.returncode and errors.done() and not errors.cancelled() and errors.exception() is None:
        detail = errors.result()[-500:].decode("utf-8", "replace")
        log.warning("git http-backend exited %s: %s", proc.returncode, detail)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message: dict[str, Any] = dict(await receive())
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
