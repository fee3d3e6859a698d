"""Fault knobs for the simulated Jira REST API (ASGI middleware): latency, 5xx, 429, hang, lost responses."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LostMode = Literal["502", "hang"]
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})


@dataclass
class Faults:
    """Knobs for the next requests whose path contains `path_contains` (default: every REST call).

    - `latency_s`: added to every matching request;
    - `error_next` requests answer `error_status` (a 5xx) without doing anything;
    - `throttle_next` requests answer 429, with `Retry-After: retry_after` unless it is None;
    - `hang_next` requests stall for `hang_s` before answering 504 (a client timeout, not a commit);
    - `lose_next` writes are committed, then the response is lost: a 502, or (mode "hang") a stall.
    """

    latency_s: float = 0.0
    error_next: int = 0
    error_status: int = 503
    throttle_next: int = 0
    retry_after: float | None = 1.0
    hang_next: int = 0
    hang_s: float = 30.0
    lose_next: int = 0
    lose_mode: LostMode = "502"
    path_contains: str = "/rest/"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def configure(self, **knobs: Any) -> None:
        """Set knobs by name (unknown names raise ValueError); used by tests and `POST /_sandbox/faults`."""
        known = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(knobs) - known
        if unknown:
            raise ValueError(f"unknown fault knobs: {sorted(unknown)}")
        with self._lock:
            for name, value in knobs.items():
                setattr(self, name, value)

    def take(self, counter: str) -> bool:
        """Consume one unit of `counter` (e.g. "error_next"); True when the fault fires."""
        with self._lock:
            left: int = getattr(self, counter)
            if left <= 0:
                return False
            setattr(self, counter, left - 1)
            return True


def _json_message(
    status: int, message: str, headers: dict[str, str] | None = None
) -> tuple[Message, Message]:
    body = json.dumps({"errorMessages": [message], "errors": {}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http.response.start", "status": status, "headers": raw}, {
        "type": "http.response.body",
        "body": body,
    }


async def _answer(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    start, body = _json_message(status, message, headers)
    await send(start)
    await send(body)


class FaultMiddleware:
    """Injects the configured faults in front of the simulator's REST routes."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        f = self.faults
        if scope["type"] != "http" or f.path_contains not in scope["path"]:
            await self.app(scope, receive, send)
            return
        if f.latency_s > 0:
            await asyncio.sleep(f.latency_s)
        if await self._before(scope, send):
            return
        if scope["method"] in WRITE_METHODS and f.take("lose_next"):
            await self._commit_then_lose(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _before(self, scope: Scope, send: Send) -> bool:
        f = self.faults
        if f.take("hang_next"):
            await asyncio.sleep(f.hang_s)
            await _answer(send, 504, "Gateway timeout (simulated hang)")
            return True
        if f.take("throttle_next"):
            headers = {} if f.retry_after is None else {"Retry-After": f"{f.retry_after:g}"}
            await _answer(send, 429, "Rate limit exceeded (simulated)", headers)
            return True
        if f.take("error_next"):
            await _answer(send, f.error_status, "Service unavailable (simulated)")
            return True
        return False

    async def _commit_then_lose(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def swallow(message: Message) -> None:
            return None

        await self.app(scope, receive, swallow)
        if self.faults.lose_mode == "hang":
            await asyncio.sleep(self.faults.hang_s)
        await _answer(send, 502, "Bad gateway (simulated lost response; the write was committed)")
