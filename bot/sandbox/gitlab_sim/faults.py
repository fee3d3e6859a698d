"""Fault knobs for the simulated GitLab: latency, 5xx bursts, 429s, hangs and lost responses."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FaultKind = Literal["status", "rate_limit", "lose"]
LoseMode = Literal["502", "drop"]
HANG_POLL_S = 0.02


@dataclass
class FaultRule:
    """Answer the next `remaining` matching API requests with a fault instead of (or after) the real work."""

    kind: FaultKind
    remaining: int
    status: int = 503
    retry_after: int | None = None
    lose_mode: LoseMode = "502"
    methods: frozenset[str] | None = None

    def matches(self, method: str) -> bool:
        return self.remaining > 0 and (self.methods is None or method.upper() in self.methods)


@dataclass(frozen=True)
class FaultHit:
    kind: FaultKind
    method: str
    path: str


def _methods(methods: Iterable[str] | None) -> frozenset[str] | None:
    return None if methods is None else frozenset(m.upper() for m in methods)


class FaultPlan:
    """What goes wrong next; thread-safe so tests can steer a server running in another thread."""

    def __init__(self) -> None:
        self.latency_s = 0.0
        self.hits: list[FaultHit] = []
        self._rules: list[FaultRule] = []
        self._hanging = threading.Event()
        self._lock = threading.Lock()

    def fail_next(self, count: int, status: int = 503, methods: Iterable[str] | None = None) -> None:
        self._add(FaultRule("status", count, status=status, methods=_methods(methods)))

    def rate_limit_next(
        self, count: int, retry_after: int | None = None, methods: Iterable[str] | None = None
    ) -> None:
        self._add(
            FaultRule("rate_limit", count, status=429, retry_after=retry_after, methods=_methods(methods))
        )

    def lose_next(self, count: int, mode: LoseMode = "502", methods: Iterable[str] | None = None) -> None:
        """The server performs the next write(s) but the client never learns it: 502 or a cut connection."""
        self._add(FaultRule("lose", count, lose_mode=mode, methods=_methods(methods)))

    def hang(self) -> None:
        """Hold every API request until `release()`."""
        self._hanging.set()

    def release(self) -> None:
        self._hanging.clear()

    @property
    def hanging(self) -> bool:
        return self._hanging.is_set()

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        self.latency_s = 0.0
        self.release()

    def take(self, method: str, path: str) -> FaultRule | None:
        """Consume one use of the first rule matching this request."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method):
                    rule.remaining -= 1
                    self.hits.append(FaultHit(rule.kind, method, path))
                    return rule
        return None

    def apply(self, spec: dict[str, Any]) -> None:
        """Set faults from the JSON body of `POST /_sandbox/faults`."""
        if spec.get("clear"):
            self.clear()
        if "latency_ms" in spec:
            self.latency_s = float(spec["latency_ms"]) / 1000
        methods = spec.get("methods")
        if "fail_next" in spec:
            self.fail_next(int(spec["fail_next"]), int(spec.get("status", 503)), methods)
        if "rate_limit_next" in spec:
            self.rate_limit_next(int(spec["rate_limit_next"]), spec.get("retry_after"), methods)
        if "lose_next" in spec:
            mode = spec.get("mode", "502")
            if mode not in ("502", "drop"):
                raise ValueError("mode must be 502 or drop")
            self.lose_next(int(spec["lose_next"]), mode, methods)
        if "hang" in spec:
            (self.hang if spec["hang"] else self.release)()

    def _add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)


async def _send_json(send: Send, status: int, body: object, headers: list[tuple[bytes, bytes]]) -> None:
    data = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})


async def _drop(send: Send) -> None:
    """Start a response and stop half-way; the server then closes the connection."""
    head = [(b"content-type", b"application/json"), (b"content-length", b"64")]
    await send({"type": "http.response.start", "status": 201, "headers": head})
    await send({"type": "http.response.body", "body": b'{"id":', "more_body": True})


class FaultMiddleware:
    """Applies the plan to requests under `prefix` (the REST API), never to sandbox endpoints."""

    def __init__(self, app: ASGIApp, plan: FaultPlan, prefix: str = "/api/") -> None:
        self.app = app
        self.plan = plan
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if self.plan.latency_s:
            await asyncio.sleep(self.plan.latency_s)
        while self.plan.hanging:  # noqa: ASYNC110 - released from another thread, so poll
            await asyncio.sleep(HANG_POLL_S)
        rule = self.plan.take(scope["method"], scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
        elif rule.kind == "status":
            await _send_json(send, rule.status, {"message": f"{rule.status} Service Unavailable"}, [])
        elif rule.kind == "rate_limit":
            headers = [] if rule.retry_after is None else [(b"retry-after", str(rule.retry_after).encode())]
            await _send_json(send, 429, {"message": "429 Too Many Requests - Retry later"}, headers)
        else:
            await self._lose(rule, scope, receive, send)

    async def _lose(self, rule: FaultRule, scope: Scope, receive: Receive, send: Send) -> None:
        async def discard(message: Message) -> None:
            return None

        await self.app(scope, receive, discard)
        if rule.lose_mode == "drop":
            await _drop(send)
        else:
            await _send_json(send, 502, {"message": "502 Bad Gateway"}, [])
