"""The model relay: a real unix socket in front of a real recording HTTP server on 127.0.0.1.

The sandbox holds only a per-run placeholder token; the relay must be the only thing that ever
sends the real key, only to `/v1/…`, and only for a request carrying that placeholder.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.containment import model_proxy
from bot.containment.model_proxy import DROPPED, Head, ModelRelay, Refused, check_request, offered_token

KEY = "sk-ant-real-key-canary-7f3a"
TOKEN = "baton-relay-placeholder-token-0123456789"
EVENTS = [
    b'event: message_start\ndata: {"type": "message_start"}\n\n',
    b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {"text": "Hel"}}\n\n',
    b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {"text": "lo"}}\n\n',
    b'event: message_stop\ndata: {"type": "message_stop"}\n\n',
]


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Upstream:
    """A recording HTTP/1.1 server on 127.0.0.1 standing in for the model endpoint."""

    server: ThreadingHTTPServer
    requests: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def make_handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = [(k.lower(), v) for k, v in self.headers.items()]
            upstream.requests.append(Seen(self.command, self.path, headers, body))
            if self.path.startswith("/v1/stream"):
                self._stream()
                return
            payload = json.dumps({"id": "msg_1", "path": self.path}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("set-cookie", "session=upstream-cookie")
            self.send_header("x-upstream", "yes")
            self.end_headers()
            self.wfile.write(payload)

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i, event in enumerate(EVENTS):
                if i == 1:  # the rest only once the client has the first event
                    upstream.release.wait(5)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        do_POST = do_GET = do_PUT = do_DELETE = _serve

    return Handler


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    recorder = Upstream(server)
    server.RequestHandlerClass = make_handler(recorder)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield recorder
    recorder.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
async def relay(tmp_path: Path, upstream: Upstream) -> AsyncIterator[ModelRelay]:
    async with ModelRelay(tmp_path / "relay.sock", upstream.url + "/", SecretStr(KEY)) as running:
        yield running


def client(relay: ModelRelay) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(uds=str(relay.socket))
    return httpx.AsyncClient(transport=transport, base_url="http://relay.invalid", timeout=10)


async def raw(relay: ModelRelay, data: bytes) -> tuple[int, bytes]:
    """Send bytes as they are; the status and the whole answer (the relay closes after one)."""
    reader, writer = await asyncio.open_unix_connection(str(relay.socket))
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    return int(answer.split(b" ", 2)[1]), answer


def request_bytes(target: str, *, method: str = "POST", token: str = TOKEN) -> bytes:
    return (
        f"{method} {target} HTTP/1.1\r\nHost: relay\r\nx-api-key: {token}\r\n"
        "content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    ).encode("latin-1")


def assert_relay_error(answer: httpx.Response | bytes, status: int) -> None:
    body = answer.content if isinstance(answer, httpx.Response) else answer.split(b"\r\n\r\n", 1)[1]
    assert json.loads(body)["error"]["type"] == "relay_error"
    if isinstance(answer, httpx.Response):
        assert answer.status_code == status
    for secret in (KEY, TOKEN):
        assert secret.encode() not in body


# --- what passes, and what the upstream sees -------------------------------------------------------

CLIENT_HEADERS = {
    "anthropic-version": "2023-06-01",
    "cookie": "sid=client-cookie",
    "proxy-authorization": "Basic cHJveHk6c2VjcmV0",
    "proxy-connection": "keep-alive",
}


@pytest.mark.parametrize("presented", ["x-api-key", "authorization"])
async def test_the_placeholder_is_swapped_for_the_real_key_and_credentials_are_dropped(
    relay: ModelRelay, upstream: Upstream, presented: str
) -> None:
    offered = (
        {"x-api-key": relay.token} if presented == "x-api-key" else {"authorization": f"Bearer {relay.token}"}
    )
    async with client(relay) as http:
        answer = await http.post(
            "/v1/messages?beta=true", json={"model": "m"}, headers={**CLIENT_HEADERS, **offered}
        )

    assert answer.status_code == 200
    assert answer.json() == {"id": "msg_1", "path": "/v1/messages?beta=true"}
    assert answer.headers["x-upstream"] == "yes"
    assert "set-cookie" not in answer.headers
    [seen] = upstream.requests
    names = [name for name, _ in seen.headers]
    assert (seen.method, seen.path, json.loads(seen.body)) == (
        "POST",
        "/v1/messages?beta=true",
        {"model": "m"},
    )
    assert [v for n, v in seen.headers if n == "x-api-key"] == [KEY]
    assert relay.token not in json.dumps(seen.headers)
    for dropped in ("authorization", "cookie", "proxy-authorization", "proxy-connection"):
        assert dropped not in names
    assert dict(seen.headers)["anthropic-version"] == "2023-06-01"
    assert dict(seen.headers)["host"] == upstream.url.removeprefix("http://")
    assert relay.requests == 1


async def test_get_requests_are_relayed_too(relay: ModelRelay, upstream: Upstream) -> None:
    async with client(relay) as http:
        answer = await http.get("/v1/models", headers={"x-api-key": relay.token})

    assert answer.status_code == 200
    assert [(s.method, s.path) for s in upstream.requests] == [("GET", "/v1/models")]


async def test_the_relay_socket_is_open_to_the_sandbox_and_removed_afterwards(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "r.sock"
    async with (
        ModelRelay(path, upstream.url, SecretStr(KEY)) as one,
        ModelRelay(tmp_path / "s.sock", upstream.url, SecretStr(KEY)) as two,
    ):
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
        assert one.token.startswith("baton-relay-") and one.token != two.token
        assert len(one.token) > 30
    assert not path.exists()


async def test_a_streamed_answer_is_relayed_as_it_comes_and_arrives_complete(
    relay: ModelRelay, upstream: Upstream
) -> None:
    received = b""
    async with (
        client(relay) as http,
        http.stream(
            "POST", "/v1/stream", json={"stream": True}, headers={"x-api-key": relay.token}
        ) as answer,
    ):
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/event-stream"
        chunks = answer.aiter_raw()
        while len(received) < len(EVENTS[0]):  # before the upstream has sent the rest
            received += await asyncio.wait_for(chunks.__anext__(), 5)
        assert not upstream.release.is_set()
        upstream.release.set()
        async for chunk in chunks:
            received += chunk

    assert received == b"".join(EVENTS)


# --- what is refused -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "wrong"},
        {"x-api-key": "PREFIX"},
        {"x-api-key": "TOKENx"},
        {"x-api-key": ""},
        {"authorization": "Bearer PREFIX"},
        {"authorization": "Basic TOKEN"},
        {"authorization": "TOKEN"},
        {"x-api-key": KEY},
        {"cookie": "x-api-key=TOKEN"},
        {"x-api-key": "wrong", "authorization": "Bearer TOKEN"},
    ],
    ids=lambda h: repr(h)[:40],
)
async def test_a_request_without_the_exact_placeholder_is_refused_and_not_forwarded(
    relay: ModelRelay, upstream: Upstream, headers: dict[str, str]
) -> None:
    concrete = {
        k: v.replace("PREFIX", relay.token[:-1]).replace("TOKEN", relay.token) for k, v in headers.items()
    }
    async with client(relay) as http:
        answer = await http.post("/v1/messages", json={}, headers=concrete)

    assert_relay_error(answer, 401)
    assert upstream.requests == []
    assert relay.requests == 0


@pytest.mark.parametrize(
    "target",
    [
        "/v2/messages",
        "/admin",
        "/v1",
        "/v1?x=/v1/",
        "/",
        "/v1/../admin",
        "/v1/messages/../../admin",
        "/v1//messages",
        "//v1/messages",
        "/v1/a\\b",
        "/v1/%2e%2e/admin",
        "/v1/%2E%2E/%2e%2E/admin",
        "/v1/..%2fadmin",
        "/v1/%2f%2fevil",
        "/v1/a%5cb",
        "http://evil.invalid/v1/messages",
        "*",
    ],
)
async def test_only_plain_v1_paths_are_relayed(relay: ModelRelay, upstream: Upstream, target: str) -> None:
    status, answer = await raw(relay, request_bytes(target, token=relay.token))

    assert status == 404
    assert_relay_error(answer, 404)
    assert upstream.requests == []


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "post"])
async def test_other_methods_are_refused(relay: ModelRelay, upstream: Upstream, method: str) -> None:
    status, _ = await raw(relay, request_bytes("/v1/messages", method=method, token=relay.token))

    assert status == 405
    assert upstream.requests == []


async def test_a_body_over_the_cap_is_refused(
    relay: ModelRelay, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_proxy, "MAX_BODY_BYTES", 1000)
    async with client(relay) as http:
        at_cap = await http.post("/v1/messages", content=b"a" * 1000, headers={"x-api-key": relay.token})
        over = await http.post("/v1/messages", content=b"a" * 5000, headers={"x-api-key": relay.token})

    assert at_cap.status_code == 200
    assert_relay_error(over, 413)
    assert [len(s.body) for s in upstream.requests] == [1000]


async def test_a_chunked_body_over_the_cap_is_refused(
    relay: ModelRelay, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_proxy, "MAX_BODY_BYTES", 1000)
    chunk = b"a" * 600
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: r\r\nx-api-key: {relay.token}\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    )
    body = b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n"

    status, _ = await raw(relay, head.encode() + body)

    assert status == 413
    assert upstream.requests == []


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nbad header line\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nHost: r\r\ncontent-length: nope\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nHost: r\r\nx-pad: " + b"a" * (200 * 1024) + b"\r\n\r\n",
    ],
    ids=["garbage", "tls", "bad-header", "bad-length", "huge-head"],
)
async def test_a_malformed_request_gets_400_and_the_relay_keeps_serving(
    relay: ModelRelay, upstream: Upstream, data: bytes
) -> None:
    status, answer = await raw(relay, data)

    assert status == 400
    assert_relay_error(answer, 400)
    assert upstream.requests == []
    async with client(relay) as http:
        assert (await http.get("/v1/models", headers={"x-api-key": relay.token})).status_code == 200


async def test_a_client_that_hangs_up_mid_request_does_not_break_the_relay(
    relay: ModelRelay, upstream: Upstream
) -> None:
    _, writer = await asyncio.open_unix_connection(str(relay.socket))
    writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: r\r\ncontent-length: 100\r\n\r\n{")
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async with client(relay) as http:
        assert (await http.get("/v1/models", headers={"x-api-key": relay.token})).status_code == 200
    assert len(upstream.requests) == 1


async def test_an_unreachable_upstream_is_a_502_that_names_neither_key_nor_token(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with (
        ModelRelay(tmp_path / "r.sock", f"http://127.0.0.1:{port}", SecretStr(KEY)) as down,
        client(down) as http,
    ):
        answer = await http.post("/v1/messages", json={}, headers={"x-api-key": down.token})

        assert_relay_error(answer, 502)
        assert down.token.encode() not in answer.content
        assert KEY not in json.dumps(dict(answer.headers))


# --- the pure checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "offered"),
    [
        ([], ""),
        ([("x-api-key", "abc")], "abc"),
        ([("authorization", "Bearer abc")], "abc"),
        ([("authorization", "bearer abc")], "abc"),
        ([("authorization", "BEARER abc")], "abc"),
        ([("authorization", "Bearer  abc")], " abc"),
        ([("authorization", "Bearer")], ""),
        ([("authorization", "Bearerabc")], ""),
        ([("authorization", "Basic abc")], ""),
        ([("authorization", "abc")], ""),
        ([("proxy-authorization", "Bearer abc")], ""),
        ([("cookie", "x-api-key=abc")], ""),
        ([("x-api-key", "a"), ("authorization", "Bearer b")], "a"),
        ([("authorization", "Bearer b"), ("x-api-key", "a")], "b"),
        ([("x-api-key", "a"), ("x-api-key", "b")], "a"),
    ],
)
def test_offered_token(headers: list[tuple[str, str]], offered: str) -> None:
    assert offered_token(headers) == offered


HOSTILE_TOKENS = [
    "",
    TOKEN[:-1],
    TOKEN + "x",
    TOKEN + " ",
    " " + TOKEN,
    TOKEN + "\x00",
    TOKEN.upper(),
    TOKEN[::-1],
    "\xff\xfe" + TOKEN[2:],
    "é" * len(TOKEN),
    "\U0001f600",
    TOKEN * 2,
    KEY,
]


@pytest.mark.parametrize("offered", HOSTILE_TOKENS)
@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
def test_check_request_refuses_any_other_token(offered: str, header: str) -> None:
    value = offered if header == "x-api-key" else f"Bearer {offered}"

    with pytest.raises(Refused) as refused:
        check_request(Head("POST", "/v1/messages", [(header, value)]), TOKEN)

    assert refused.value.status == 401


def test_check_request_forwards_everything_but_the_dropped_headers() -> None:
    headers = [("x-api-key", TOKEN), *((name, f"value-of-{name}") for name in sorted(DROPPED))]
    headers += [("anthropic-version", "2023-06-01"), ("anthropic-beta", "x")]

    forwarded = check_request(Head("POST", "/v1/messages", headers), TOKEN)

    assert forwarded == [("anthropic-version", "2023-06-01"), ("anthropic-beta", "x")]
    assert {"x-api-key", "authorization", "proxy-authorization", "cookie", "host"} <= DROPPED


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("PUT", "/v1/messages", 405),
        ("POST", "/v1/../x", 404),
        ("POST", "/v1/%2e%2e/x", 404),
        ("GET", "/v1//x", 404),
        ("GET", "/v1/x\\y", 404),
        ("GET", "/v10/x", 404),
        ("PUT", "/admin", 405),  # the method is checked first
    ],
)
def test_check_request_refusals(method: str, target: str, status: int) -> None:
    with pytest.raises(Refused) as refused:
        check_request(Head(method, target, [("x-api-key", TOKEN)]), TOKEN)

    assert refused.value.status == status


@pytest.mark.parametrize(
    "target", ["/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens", "/v1/models?q=a%2Fb"]
)
def test_check_request_passes_the_model_api(target: str) -> None:
    assert check_request(Head("POST", target, [("x-api-key", TOKEN)]), TOKEN) == []


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("bot.containment.model_proxy.hmac.compare_digest", recording)
    check_request(Head("POST", "/v1/messages", [("x-api-key", TOKEN)]), TOKEN)
    with pytest.raises(Refused):
        check_request(Head("POST", "/v1/messages", [("authorization", "Bearer nope")]), TOKEN)

    assert calls == [(TOKEN.encode(), TOKEN.encode()), (b"nope", TOKEN.encode())]

    # and its verdict is the one that counts: the right token is refused when it says no
    monkeypatch.setattr("bot.containment.model_proxy.hmac.compare_digest", lambda a, b: False)
    with pytest.raises(Refused):
        check_request(Head("POST", "/v1/messages", [("x-api-key", TOKEN)]), TOKEN)
