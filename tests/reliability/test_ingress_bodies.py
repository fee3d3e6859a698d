"""Hostile request bodies: oversized, chunked, slow, malformed; against real uvicorn and the ASGI app.

Raw sockets talk to a real `baton serve` (cap 256 KiB, body timeout 2 s) so the test controls every
byte and its timing. The malformed bodies are real recorded fixtures mutated by Hypothesis, correctly
signed: they must always get a 4xx or a 2xx, never a 5xx, and never leave the server unable to take
the next genuine delivery. Each case ends with `invariants.check` (a `baton worker` settles the runs).
"""

from __future__ import annotations

import asyncio
import copy
import http.client
import json
import re
import select
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlalchemy import select as sql_select

from bot.store.engine import create_engine
from bot.store.migrate import upgrade
from bot.store.tables import Delivery
from config.settings import Settings
from shell.app import create_app
from shell.services import Services, build
from shell.wiring import load_manifest
from tests.conftest import make_settings
from tests.reliability.test_ingress_auth import Secrets, Server, Stack, count_rows, encode
from tests.support.deliveries import GITLAB_EVENTS, all_fixtures, fixture, label_added
from tests.support.processes import CANARY
from tests.support.servers import RedisServer

CAP = 256 * 1024
BODY_TIMEOUT_S = 2.0
Headers = dict[str, str]


# --- raw HTTP/1.1 over a socket ------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def open_request(
    port: int, path: str, headers: Headers, framing: str, sndbuf: int | None = None
) -> socket.socket:
    """Connect and send the request head; `framing` is `chunked` or a Content-Length header line."""
    sock = socket.socket()
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    lines.append("Transfer-Encoding: chunked" if framing == "chunked" else framing)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


def parse_answer(raw: bytes) -> Answer | None:
    """The response in `raw` once it is complete (Content-Length framed, as Starlette answers)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    if len(rest) < length:
        return None
    return Answer(int(status_line.split()[1]), headers, rest[:length])


def read_answer(sock: socket.socket, timeout_s: float) -> Answer:
    deadline, raw = time.monotonic() + timeout_s, b""
    while (answer := parse_answer(raw)) is None:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a complete answer: {raw[:200]!r}")
        raw += data
    return answer


def post_raw(port: int, path: str, headers: Headers, body: bytes, framing: str, piece: int = 0) -> Answer:
    """The whole body at once with Content-Length, or chunked in pieces of `piece` bytes."""
    if framing == "chunked":
        with open_request(port, path, headers, "chunked") as sock:
            step = piece or len(body) or 1
            sock.sendall(b"".join(chunk(body[i : i + step]) for i in range(0, len(body), step)) + LAST_CHUNK)
            return read_answer(sock, 10)
    with open_request(port, path, headers, f"Content-Length: {len(body)}") as sock:
        sock.sendall(body)
        return read_answer(sock, 10)


def peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


def is_error(answer: Answer, status: int) -> bool:
    return answer.status == status and list(answer.json()) == ["error"] and "\n" not in answer.json()["error"]


# --- one capped server for the size and timing cases ---------------------------------------------


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Server]]:
    """`baton serve` with a 256 KiB cap and a 2 s body timeout over SQLite, and a worker."""
    tmp = tmp_path_factory.mktemp("capped")
    redis = RedisServer(tmp / "redis").start()
    stack = Stack(tmp, f"sqlite:///{tmp / 'baton.db'}", redis)
    try:
        server = stack.serve(max_body_bytes=str(CAP), body_timeout_s=str(BODY_TIMEOUT_S))
        stack.worker()
        yield stack, server
    finally:
        stack.close()
        redis.stop()


def deliveries(stack: Stack) -> int:
    return count_rows(stack.db_url)["deliveries"]


def label_delivery(stack: Stack) -> tuple[bytes, Headers]:
    body = encode(label_added())
    return body, stack.secrets.jira_headers(body)


@pytest.mark.timeout(60)
def test_declared_length_over_the_cap_is_413_before_a_byte_of_body_is_sent(
    capped: tuple[Stack, Server],
) -> None:
    stack, server = capped
    before = deliveries(stack)
    body, headers = label_delivery(stack)
    started = time.monotonic()
    with open_request(server.port, "/webhooks/jira", headers, f"Content-Length: {50 * 2**20}") as sock:
        answer = read_answer(sock, 5)  # nothing of the body was sent
    assert is_error(answer, 413) and time.monotonic() - started < 2
    padded = body + b" " * (CAP + 1 - len(body))  # valid JSON, correctly signed, one byte over
    over = post_raw(server.port, "/webhooks/jira", stack.secrets.jira_headers(padded), padded, "length")
    assert is_error(over, 413)
    assert deliveries(stack) == before
    stack.settle_and_check()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_sender_still_sending_an_oversized_body_reads_the_413_not_a_reset(
    capped: tuple[Stack, Server], framing: str
) -> None:
    """A sender that writes its whole body before it reads, on a `Connection: close` request: answered
    at once and closed, it got ECONNRESET/EPIPE instead of the 413 (seen before the fix for both
    framings). The server now drains an oversized body up to DRAIN_FACTOR times the cap first."""
    stack, server = capped
    before = deliveries(stack)
    body, _ = label_delivery(stack)
    over = body + b" " * (2 * CAP)  # three times the cap: over it, within what the server drains
    headers = {**stack.secrets.jira_headers(over), "Connection": "close"}
    head = "chunked" if framing == "chunked" else f"Content-Length: {len(over)}"
    with open_request(server.port, "/webhooks/jira", headers, head, sndbuf=16384) as sock:
        time.sleep(0.5)  # whatever the server does on the head alone, it has done it by now
        pieces = [over[i : i + 8192] for i in range(0, len(over), 8192)]
        for piece in pieces:
            sock.sendall(chunk(piece) if framing == "chunked" else piece)
        if framing == "chunked":
            sock.sendall(LAST_CHUNK)
        answer = read_answer(sock, 10)
    assert is_error(answer, 413), answer
    assert deliveries(stack) == before
    stack.settle_and_check()


class SmallBufferConnection(http.client.HTTPConnection):
    """http.client with a 16 KiB send buffer, so it is still writing the body when the server answers
    (with the kernel's default buffer a body a few times the cap fits in it and the race is rarer)."""

    def connect(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        sock.settimeout(self.timeout)
        sock.connect((self.host, self.port))
        self.sock = sock


@pytest.mark.timeout(60)
@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("times_the_cap", [1.5, 3])
def test_an_http_client_posting_an_oversized_body_reads_the_413(
    capped: tuple[Stack, Server], framing: str, times_the_cap: float
) -> None:
    """The same through Python's own HTTP client (http.client writes the whole body before it reads
    the answer, as most webhook senders do). Before the drain, its write failed with EPIPE/ECONNRESET
    instead of returning the 413 (in 4 runs of the old code, 14 of these 16 cases). httpx swallows
    the write error and reads an early answer, so it saw the 413 even then and cannot tell."""
    stack, server = capped
    before = deliveries(stack)
    body, _ = label_delivery(stack)
    over = body + b" " * (int(CAP * times_the_cap) - len(body))
    headers = {**stack.secrets.jira_headers(over), "Connection": "close"}
    pieces = [over[i : i + 8192] for i in range(0, len(over), 8192)]
    for _ in range(3):  # the reset is a race: give it a few chances
        conn = SmallBufferConnection("127.0.0.1", server.port, timeout=10)
        try:
            if framing == "length":
                conn.request("POST", "/webhooks/jira", body=over, headers=headers)
            else:
                conn.request(
                    "POST", "/webhooks/jira", body=iter(pieces), headers=headers, encode_chunked=True
                )
            answer = conn.getresponse()
            assert answer.status == 413
            assert "error" in json.loads(answer.read())
        finally:
            conn.close()
    assert deliveries(stack) == before
    stack.settle_and_check()


@pytest.mark.timeout(60)
def test_a_50_mb_chunked_stream_is_answered_413_at_the_cap_and_never_buffered(
    capped: tuple[Stack, Server],
) -> None:
    stack, server = capped
    before, peak_before = deliveries(stack), peak_rss_kib(server.process.process.pid)
    _, headers = label_delivery(stack)
    frame, total = chunk(b"x" * 65536), 50 * 2**20
    sent, sent_when_answered, raw, pending = 0, -1, b"", memoryview(b"")
    sock = open_request(server.port, "/webhooks/jira", headers, "chunked", sndbuf=65536)
    sock.setblocking(False)
    deadline = time.monotonic() + 30
    with sock:
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            if readable:
                data = sock.recv(65536)
                if sent_when_answered < 0:
                    sent_when_answered = sent
                raw += data
                if not data:
                    break  # the server closed the connection
            if writable:
                pending = pending or memoryview(frame)
                try:
                    written = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent, pending = sent + written, pending[written:]
    growth_kib = peak_rss_kib(server.process.process.pid) - peak_before
    seen = f"sent {sent} B, answered after {sent_when_answered} B, peak RSS +{growth_kib} KiB: {raw[:80]!r}"
    answer = parse_answer(raw)
    assert answer is not None and is_error(answer, 413), seen
    # Answered after the cap plus what socket buffers hold, long before the 50 MB were sent (uvicorn then
    # reads and discards the rest of the stream on the kept-alive connection).
    assert 0 < sent_when_answered <= 8 * 2**20, seen
    assert growth_kib < 16 * 1024, seen  # never buffered: 50 MB would show
    assert deliveries(stack) == before
    stack.settle_and_check()


@pytest.mark.timeout(60)
def test_chunked_and_exact_cap_bodies_are_accepted_and_one_byte_more_is_not(
    capped: tuple[Stack, Server],
) -> None:
    stack, server = capped
    runs_before = len(stack.runs())
    accepted = []
    body, headers = label_delivery(stack)
    accepted.append(post_raw(server.port, "/webhooks/jira", headers, body, "chunked", piece=97))
    for framing in ("chunked", "length"):
        exact = encode(label_added())
        exact += b" " * (CAP - len(exact))  # exactly at the cap: still accepted
        accepted.append(
            post_raw(
                server.port, "/webhooks/jira", stack.secrets.jira_headers(exact), exact, framing, piece=8192
            )
        )
        over = exact + b" "
        refused = post_raw(
            server.port, "/webhooks/jira", stack.secrets.jira_headers(over), over, framing, piece=8192
        )
        assert is_error(refused, 413), (framing, refused)
    assert [a.status for a in accepted] == [202, 202, 202], accepted
    assert {a.json()["accepted"] for a in accepted} == {"enqueued"}
    run_ids = {a.json()["run"] for a in accepted}
    assert len(run_ids) == 3 and run_ids <= {run["id"] for run in stack.runs()}
    assert len(stack.runs()) == runs_before + 3
    stack.settle_and_check()


class Drips:
    """Connections that send their body a byte a second (or nothing at all), and what they get back."""

    def __init__(self, port: int, headers: Headers, body: bytes, dripping: int, silent: int) -> None:
        self.started = time.monotonic()
        self.chunked = [i % 2 == 0 for i in range(dripping + silent)]
        self.dripping = dripping
        framings = ["chunked" if c else f"Content-Length: {len(body)}" for c in self.chunked]
        self.socks = [open_request(port, "/webhooks/jira", headers, framing) for framing in framings]
        self.raw = [b""] * len(self.socks)
        self.answers: dict[int, tuple[float, Answer]] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def open(self) -> list[int]:
        return [i for i in range(len(self.socks)) if i not in self.answers]

    def drip(self, byte: bytes) -> None:
        for i in self.open():
            if i < self.dripping:
                self.socks[i].sendall(chunk(byte) if self.chunked[i] else byte)

    def listen(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while self.open() and time.monotonic() < until:
            readable, _, _ = select.select([self.socks[i] for i in self.open()], [], [], 0.1)
            for sock in readable:
                i = self.socks.index(sock)
                self.raw[i] += sock.recv(65536)
                if (answer := parse_answer(self.raw[i])) is not None:
                    self.answers[i] = (self.elapsed(), answer)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


@pytest.mark.timeout(60)
def test_slow_drip_bodies_get_408_within_the_body_timeout_and_block_nobody(
    capped: tuple[Stack, Server],
) -> None:
    stack, server = capped
    before = deliveries(stack)
    body, headers = label_delivery(stack)
    drips = Drips(server.port, headers, body, dripping=6, silent=2)
    try:
        for position in range(int(BODY_TIMEOUT_S) + 4):
            if not drips.open():
                break
            drips.drip(body[position : position + 1])
            if position == 0:  # a genuine delivery meanwhile is answered at once
                fresh, fresh_headers = label_delivery(stack)
                sent = time.monotonic()
                genuine = httpx.post(
                    f"{server.url}/webhooks/jira", content=fresh, headers=fresh_headers, timeout=5
                )
                assert genuine.status_code == 202 and time.monotonic() - sent < 1.5, genuine.text
            drips.listen(1.0)
    finally:
        drips.close()
    assert not drips.open(), f"no answer on {drips.open()} after {drips.elapsed():.1f} s"
    for index, (after, answer) in drips.answers.items():
        assert is_error(answer, 408), (index, answer)
        assert BODY_TIMEOUT_S - 0.2 <= after <= BODY_TIMEOUT_S + 2.0, (index, after)
    assert deliveries(stack) == before + 1  # only the genuine delivery
    stack.settle_and_check()


# --- malformed payloads: real fixtures mutated by Hypothesis, correctly signed -------------------

HOLE = f"__hole_{uuid.uuid4().hex}__"
Path_ = tuple[str | int, ...]


def _triggers() -> dict[str, tuple[dict[str, Any], Path_]]:
    """Fixtures edited to start a run (so their payload is stored), with the path of their origin id."""
    note = fixture("gitlab/note_mr_comment.json")
    note["object_attributes"]["note"] = "/approve"
    comment = fixture("jira/comment_created_cloud.json")
    comment["comment"]["body"] = "/approve"
    return {
        "gitlab/note_mr_comment.json with /approve": (note, ("object_attributes", "id")),
        "jira/comment_created_cloud.json with /approve": (comment, ("comment", "id")),
        "jira/issue_updated_labels.json adding ai-implement": (
            label_added(changelog_id="1"),
            ("changelog", "id"),
        ),
    }


def _paths(value: Any, prefix: Path_ = ()) -> list[Path_]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


TRIGGERS = _triggers()
BASES: dict[str, dict[str, Any]] = {name: fixture(name) for name in all_fixtures()}
BASES |= {name: payload for name, (payload, _) in TRIGGERS.items()}
PATHS = {name: _paths(payload) for name, payload in BASES.items()}


def _nest(depth: int, kind: str) -> bytes:
    return b"[" * depth + b"]" * depth if kind == "list" else b'{"a":' * depth + b"1" + b"}" * depth


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
fragments = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"null", b"true", b"0", b"-1", b"1.5", b'""', b"[]", b"{}", b"[null]", b'{"":null}']),
    st.sampled_from(  # text the database or the logs may choke on
        [
            b'"\\u0000"',
            b'"a\\u0000b"',
            b'"\\ud800"',
            b'"\\udfff\\ud800"',
            b'"\\u2028\\u2029"',
            b'"\\u202e\\ufeff"',
        ]
    ),
    st.sampled_from(
        [b'"\xff"', b'"\xc0\xaf"', b'"\xed\xa0\x80"', b'"\xe2\x82"', b'"\xf4\x90\x80\x80"']
    ),  # bad UTF-8
    st.sampled_from(
        [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"1" * 5000, b"0x10", b"[1,]", b"{"]
    ),
    st.integers(1, 200_000).map(lambda n: json.dumps("é" * n).encode()),  # huge strings, under the cap
)
# Deep nesting, only against the real process: Hypothesis raises the recursion limit while it runs an
# example, so in-process the parser would accept depths the server never does. The band near the
# limit (≈ 900-960 levels) is test_nesting_near_the_recursion_limit_is_a_400_not_a_503's.
deep_fragments = st.builds(
    _nest, st.integers(2, 400) | st.integers(1500, 5000), st.sampled_from(["list", "dict"])
)


def _set(payload: Any, path: Path_, value: Any) -> Any:
    if not path:
        return value
    parent: Any = payload
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return payload


@st.composite
def mutated_deliveries(draw: st.DrawFn, deep: bool = False) -> tuple[str, dict[str, Any], bytes, str]:
    """(source, the original payload, the mutated body, what was done)."""
    name = draw(st.sampled_from(sorted(TRIGGERS)) | st.sampled_from(sorted(BASES)))
    original = copy.deepcopy(BASES[name])
    if name in TRIGGERS:  # a new origin, so that deliveries start runs rather than join one
        fresh = draw(st.integers(2, 10**9))
        id_path = TRIGGERS[name][1]
        _set(original, id_path, fresh if isinstance(_get(original, id_path), int) else str(fresh))
    path = draw(st.sampled_from(PATHS[name]))
    mutation = draw(st.sampled_from(["replace", "replace", "replace", "delete", "duplicate key", "trailing"]))
    payload, fragment = copy.deepcopy(original), draw(fragments | deep_fragments if deep else fragments)
    if mutation == "delete" and path:
        parent: Any = payload
        for part in path[:-1]:
            parent = parent[part]
        del parent[path[-1]]
        body = encode(payload)
    elif mutation == "duplicate key":
        node = _get(payload, path)
        if isinstance(node, dict) and node:
            key = json.dumps(draw(st.sampled_from(sorted(node)))).encode()
            raw = encode(node)[:-1] + b", " + key + b": " + fragment + b"}"
        else:
            raw = b'{"object_kind": "note", "object_kind": ' + fragment + b"}"
        body = encode(_set(payload, path, HOLE)).replace(json.dumps(HOLE).encode(), raw)
    elif mutation == "trailing":
        body = encode(payload) + draw(st.sampled_from([b" x", b"}", b"\x00", b"\n{}"]))
    else:
        body = encode(_set(payload, path, HOLE)).replace(json.dumps(HOLE).encode(), fragment)
    where = "/".join(map(str, path)) or "(root)"
    return name.split("/")[0], original, body, f"{name}: {mutation} at {where}"


def _get(payload: Any, path: Path_) -> Any:
    for part in path:
        payload = payload[part]
    return payload


def signed_headers(
    secrets: Secrets, source: str, original: dict[str, Any], body: bytes, keyed: bool
) -> Headers:
    if source == "jira":
        headers = secrets.jira_headers(body)
        if not keyed:  # the delivery key then comes from the (mutated) payload or the body hash
            del headers["X-Atlassian-Webhook-Identifier"]
        return headers
    headers = secrets.gitlab_token(original)
    headers["X-Gitlab-Event"] = GITLAB_EVENTS.get(str(original.get("object_kind")), "System Hook")
    if not keyed:
        del headers["Idempotency-Key"], headers["X-Gitlab-Event-UUID"]
    return headers


def verdict(status: int, answer: Any, stored_before: int, stored_after: int) -> str | None:
    """Why this answer breaks the contract for a correctly signed body under the cap, or None."""
    if status == 400:
        ok = list(answer) == ["error"] and "\n" not in answer["error"] and stored_after == stored_before
        return None if ok else f"400 must be one line and store nothing: {answer}"
    if status == 200:
        ok = answer.keys() == {"ignored"} or answer.get("duplicate") is True
        return None if ok else f"unexpected 200 body {answer}"
    if status == 202:
        return (
            None
            if answer.get("accepted") in ("enqueued", "replied") and answer.get("run")
            else f"202 {answer}"
        )
    return f"status {status}: {answer}"


# In-process: the ASGI app with the real store (SQLite and PostgreSQL) and real Redis.


@pytest.fixture
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, redis_server: RedisServer, secrets: Secrets) -> Settings:
    """conftest's settings, with canary secrets: none may reach a log, a reason, Redis or the store."""
    canaries = {"gitlab_token": CANARY + "-gitlab", "jira_token": CANARY + "-jira"}
    return make_settings(tmp_path, db_url, redis_server.url, **canaries, **secrets.settings())


@dataclass
class InProcess:
    """The ASGI app with the real store and Redis, on one event loop the sync test drives."""

    runner: asyncio.Runner
    services: Services
    client: httpx.AsyncClient

    def post(self, path: str, body: bytes, headers: Headers) -> httpx.Response:
        return self.runner.run(self.client.post(path, content=body, headers=headers))

    def stored(self) -> int:
        async def count() -> int:
            async with self.services.sm() as session:
                query = sql_select(func.count()).select_from(Delivery)
                return int((await session.execute(query)).scalar_one())

        return self.runner.run(count())


@pytest.fixture
def in_process(settings: Settings) -> Iterator[InProcess]:
    runner = asyncio.Runner()
    engine = create_engine(settings.async_database_url)
    runner.run(upgrade(engine))
    runner.run(engine.dispose())
    services = build(settings, load_manifest(settings))
    transport = httpx.ASGITransport(app=create_app(settings, services), raise_app_exceptions=False)
    app = InProcess(runner, services, httpx.AsyncClient(transport=transport, base_url="http://baton.test"))
    try:
        yield app
    finally:
        runner.run(app.client.aclose())
        runner.run(services.close())
        runner.close()


@pytest.mark.timeout(240)
def test_mutated_fixtures_never_get_a_5xx_in_process(
    in_process: InProcess,
    secrets: Secrets,
    tmp_path: Path,
    db_url: str,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    @hypothesis_settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
    @given(delivery=mutated_deliveries(), keyed=st.booleans())
    def one(delivery: tuple[str, dict[str, Any], bytes, str], keyed: bool) -> None:
        source, original, body, what = delivery
        before = in_process.stored()
        headers = signed_headers(secrets, source, original, body, keyed)
        answer = in_process.post(f"/webhooks/{source}", body, headers)
        event(f"{answer.status_code} {what.split(':')[1].split(' at ')[0].strip()}")
        problem = verdict(answer.status_code, _json(answer.content), before, in_process.stored())
        assert problem is None, f"{what}: {problem}"

    one()
    body = encode(label_added())
    genuine = in_process.post("/webhooks/jira", body, secrets.jira_headers(body))
    assert genuine.status_code == 202, genuine.text
    assert in_process.runner.run(in_process.services.queue.has_job(genuine.json()["run"]))
    stack = Stack(tmp_path, db_url, redis_server, secrets, migrate=False)
    try:
        stack.settle_and_check(extra_texts=[caplog.text])
    finally:
        stack.close()


def _hostile_text_deliveries(secrets: Secrets) -> list[tuple[str, str, bytes, Headers]]:
    """Payload fields that end up in text columns (the actor, Jira's event name), holding a NUL or a
    lone surrogate: valid JSON, correctly signed, each a new delivery that starts or ignores a run."""
    out = []
    for text in ('"a\\u0000b"', '"\\ud800"'):
        note = fixture("gitlab/note_mr_comment.json")
        note["object_attributes"]["note"], note["object_attributes"]["id"] = (
            "/approve",
            uuid.uuid4().int % 10**9,
        )
        note["user"]["username"] = HOLE
        body = encode(note).replace(json.dumps(HOLE).encode(), text.encode())
        out.append((f"gitlab user.username={text}", "gitlab", body, secrets.gitlab_token(note)))
        for field, path in (
            ("user.displayName", ("user", "displayName")),
            ("webhookEvent", ("webhookEvent",)),
        ):
            label = _set(label_added(), path, HOLE)
            body = encode(label).replace(json.dumps(HOLE).encode(), text.encode())
            out.append((f"jira {field}={text}", "jira", body, secrets.jira_headers(body)))
    return out


@pytest.mark.timeout(60)
def test_nul_and_lone_surrogates_in_stored_text_fields_are_never_a_5xx(
    in_process: InProcess, secrets: Secrets
) -> None:
    problems = []
    for what, source, body, headers in _hostile_text_deliveries(secrets):
        before = in_process.stored()
        answer = in_process.post(f"/webhooks/{source}", body, headers)
        if problem := verdict(answer.status_code, _json(answer.content), before, in_process.stored()):
            problems.append(f"{what}: {problem}")
    assert not problems, "\n".join(problems)


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return {"not json": content[:100].decode("latin-1")}


# Against the real process (uvicorn, PostgreSQL): a smaller sample.


@pytest.fixture
def live(tmp_path: Path, pg_url: str, redis_server: RedisServer) -> Iterator[tuple[Stack, Server]]:
    stack = Stack(tmp_path, pg_url, redis_server)
    try:
        yield stack, stack.serve()
    finally:
        stack.close()


@pytest.mark.timeout(180)
def test_mutated_fixtures_never_get_a_5xx_from_the_real_process(live: tuple[Stack, Server]) -> None:
    stack, server = live
    http = httpx.Client(base_url=server.url, timeout=10)

    @hypothesis_settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
    @given(delivery=mutated_deliveries(deep=True), keyed=st.booleans())
    def one(delivery: tuple[str, dict[str, Any], bytes, str], keyed: bool) -> None:
        source, original, body, what = delivery
        before = deliveries(stack)
        headers = signed_headers(stack.secrets, source, original, body, keyed)
        answer = http.post(f"/webhooks/{source}", content=body, headers=headers)
        problem = verdict(answer.status_code, _json(answer.content), before, deliveries(stack))
        assert problem is None, f"{what}: {problem}"

    with http:
        one()
        body, headers = label_delivery(stack)
        genuine = http.post("/webhooks/jira", content=body, headers=headers)
    assert genuine.status_code == 202, genuine.text
    assert genuine.json()["run"] in {run["id"] for run in stack.runs()}
    stack.settle_and_check()


@pytest.mark.timeout(120)
def test_nesting_near_the_recursion_limit_is_a_400_not_a_503(live: tuple[Stack, Server]) -> None:
    stack, server = live
    problems = []
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for depth in range(850, 1001, 10):
            payload = fixture("jira/comment_created_cloud.json")
            payload["comment"]["id"], payload["comment"]["body"] = str(depth), "/approve"
            body = encode(payload)[:-1] + b', "extra": ' + _nest(depth, "list") + b"}"
            headers = stack.secrets.jira_headers(body)
            first = http.post("/webhooks/jira", content=body, headers=headers)
            again = http.post("/webhooks/jira", content=body, headers=headers)
            if first.status_code not in (202, 400) or again.status_code != (200 if first.is_success else 400):
                problems.append(f"depth {depth}: {first.status_code} then {again.status_code} {again.text}")
    assert not problems, "\n".join(problems)
    stack.settle_and_check()  # reads every stored payload back
