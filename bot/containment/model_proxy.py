"""The sandbox's only way out: a per-run relay on a unix socket that adds the model key.

The confined Claude Code CLI has no network and no key. It talks HTTP over a unix socket
(`ANTHROPIC_UNIX_SOCKET`) to this relay in the worker, presenting a per-run placeholder token; the
relay checks it in constant time, drops every credential header, adds the real `x-api-key` and
forwards `/v1/…` requests to the configured model endpoint, streaming the answer back. The key never
enters the sandbox, not even as a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import os
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote

import h11
import httpx
from pydantic import SecretStr

log = logging.getLogger("baton.model_proxy")

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024
READ_CHUNK = 64 * 1024
HEAD_TIMEOUT_S = 30.0
UPSTREAM_TIMEOUT_S = 600.0
# Never forwarded: credentials (the relay adds its own), hop-by-hop headers, and what httpx sets.
DROPPED = frozenset(
    {
        "x-api-key",
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "proxy-connection",
    }
)
ANSWER_DROPPED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "set-cookie"})


class Refused(Exception):
    """A request the relay answers itself, with this status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Head:
    method: str
    target: str
    headers: list[tuple[str, str]]


def offered_token(headers: list[tuple[str, str]]) -> str:
    """The token the client presented in `x-api-key` or `Authorization: Bearer`."""
    for name, value in headers:
        if name == "x-api-key":
            return value
        if name == "authorization" and value[:7].lower() == "bearer ":
            return value[7:]
    return ""


def check_request(head: Head, token: str) -> list[tuple[str, str]]:
    """The headers to forward, or Refused: only authenticated POST/GET to `/v1/…` paths pass."""
    if head.method not in ("POST", "GET"):
        raise Refused(405, f"method {head.method[:16]!r} is not relayed")
    path = head.target.split("?", 1)[0]
    decoded = unquote(path)  # the upstream decodes %2e%2e, %2f and %5c before it routes
    if not path.startswith("/v1/") or ".." in decoded.split("/") or "//" in decoded or "\\" in decoded:
        raise Refused(404, "only the model API's /v1/ paths are relayed")
    if not hmac.compare_digest(offered_token(head.headers).encode(), token.encode()):
        raise Refused(401, "wrong or missing relay token")
    return [(n, v) for n, v in head.headers if n not in DROPPED]


def _lower(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in headers]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once per process: building it (reading the CA bundle) was
    20-70 ms of every agent call's start."""
    return httpx.create_ssl_context()


class ModelRelay:
    """One run's relay: `async with ModelRelay(socket, upstream, key) as relay:` then use
    `relay.socket` and `relay.token` in the sandbox's environment."""

    def __init__(self, socket_path: Path, upstream: str, api_key: SecretStr) -> None:
        self.socket = socket_path
        self.upstream = upstream.rstrip("/")
        self.token = "baton-relay-" + secrets.token_urlsafe(24)
        self._key = api_key
        self._server: asyncio.AbstractServer | None = None
        self._client: httpx.AsyncClient | None = None
        self.requests = 0

    async def __aenter__(self) -> ModelRelay:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(UPSTREAM_TIMEOUT_S, connect=30.0), verify=tls_context()
        )
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket))
        os.chmod(self.socket, 0o666)  # noqa: S103 - the sandbox's uid must be able to connect; the token guards it
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
        if self._client is not None:
            await self._client.aclose()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            head, body = await asyncio.wait_for(_read_request(conn, reader), HEAD_TIMEOUT_S)
            headers = check_request(head, self.token)
            self.requests += 1
            await self._forward(conn, writer, head, headers, body)
        except Refused as refusal:
            await _answer(conn, writer, refusal.status, refusal.reason)
        except (h11.RemoteProtocolError, TimeoutError):
            await _answer(conn, writer, 400, "malformed request")
        except (ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _forward(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        head: Head,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        assert self._client is not None
        outgoing = httpx.Headers(headers)
        outgoing["x-api-key"] = self._key.get_secret_value()
        request = self._client.build_request(
            head.method, self.upstream + head.target, headers=outgoing, content=body
        )
        try:
            upstream = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            log.warning("model relay: the model endpoint failed: %s", type(exc).__name__)
            raise Refused(502, f"the model endpoint failed: {type(exc).__name__}") from None
        try:
            answer = [
                (n, v) for n, v in upstream.headers.raw if n.decode("latin-1").lower() not in ANSWER_DROPPED
            ]
            writer.write(conn.send(h11.Response(status_code=upstream.status_code, headers=answer)) or b"")
            async for chunk in _chunks(upstream):
                writer.write(conn.send(h11.Data(data=chunk)) or b"")
                await writer.drain()
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
        finally:
            await upstream.aclose()


async def _chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            if chunk:
                yield chunk
    except httpx.HTTPError as exc:
        log.warning("model relay: the answer broke off: %s", type(exc).__name__)


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> tuple[Head, bytes]:
    """One request's head and body, within the size limits (h11 does the parsing)."""
    head: Head | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = await reader.read(READ_CHUNK)
            conn.receive_data(chunk)
            continue
        if isinstance(event, h11.Request):
            head = Head(
                event.method.decode("latin-1"), event.target.decode("latin-1"), _lower(list(event.headers))
            )
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY_BYTES:
                raise Refused(413, "request body too large")
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            return head, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("the client closed the connection mid-request")


async def _answer(conn: h11.Connection, writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    """A small JSON error in the Messages API's shape, if a response can still be sent."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    payload = json.dumps({"type": "error", "error": {"type": "relay_error", "message": reason}}).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
    headers.append(("connection", "close"))
    with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
        writer.write(conn.send(h11.Data(data=payload)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
