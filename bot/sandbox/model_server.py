"""A scripted Anthropic-compatible Messages API server for driving the real Claude Code CLI in tests."""

from __future__ import annotations

import argparse
import asyncio
import hmac
import itertools
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bot.sandbox.scenario import Block, Reply, Scenario, load_scenario, plan_reply
from bot.sandbox.serve import ServerThread

REDACTED_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie"})
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; credentials are replaced by `[redacted]`."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    note: str


class RequestLog:
    """Every request the server received, in order; safe to read from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def add(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def all(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def messages(self) -> list[RecordedRequest]:
        """Only the `POST /v1/messages` calls."""
        return [r for r in self.all() if r.path == "/v1/messages" and r.method == "POST"]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _headers(request: Request) -> dict[str, str]:
    return {k: ("[redacted]" if k in REDACTED_HEADERS else v) for k, v in request.headers.items()}


async def _read(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", errors="replace")


def _record(request: Request, log: RequestLog, body: Any, note: str) -> None:
    log.add(
        RecordedRequest(request.method, request.url.path, request.url.query, _headers(request), body, note)
    )


def _usage(reply: Reply) -> dict[str, int]:
    return reply.usage.model_dump()


def _block_json(block: Block) -> dict[str, Any]:
    if block.type == "text":
        return {"type": "text", "text": block.text}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}


def message_json(reply: Reply, model: str, message_id: str) -> dict[str, Any]:
    """The non-streaming Messages API response for a reply."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [_block_json(b) for b in reply.blocks],
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": _usage(reply),
    }


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event in the Messages API stream format."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _block_events(index: int, block: Block) -> Iterator[str]:
    if block.type == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        delta: dict[str, Any] = {"type": "text_delta", "text": block.text}
    else:
        start = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block.input)}
    yield sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
    yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
    yield sse("content_block_stop", {"type": "content_block_stop", "index": index})


def _message_start(reply: Reply, model: str, message_id: str) -> str:
    usage = {**_usage(reply), "output_tokens": 1}
    message = {**message_json(reply, model, message_id), "content": [], "stop_reason": None, "usage": usage}
    return sse("message_start", {"type": "message_start", "message": message})


def _message_end(stop_reason: str, reply: Reply) -> Iterator[str]:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    yield sse("message_delta", {"type": "message_delta", "delta": delta, "usage": _usage(reply)})
    yield sse("message_stop", {"type": "message_stop"})


def sse_events(reply: Reply, model: str, message_id: str) -> Iterator[str]:
    """The full event stream for a reply: message_start, each block, message_delta, message_stop."""
    yield _message_start(reply, model, message_id)
    for index, block in enumerate(reply.blocks):
        yield from _block_events(index, block)
    yield from _message_end(reply.stop_reason, reply)


async def _runaway_events(reply: Reply, model: str, message_id: str) -> AsyncIterator[str]:
    assert reply.runaway is not None
    runaway = reply.runaway
    yield _message_start(reply, model, message_id)
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    yield sse("content_block_start", start)
    sent = 0
    while sent < runaway.chars:
        piece = ("runaway " * (runaway.chunk // 8 + 1))[: min(runaway.chunk, runaway.chars - sent)]
        sent += len(piece)
        delta = {"type": "text_delta", "text": piece}
        yield sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        await asyncio.sleep(runaway.chunk_delay_s)
    yield sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    for event in _message_end("end_turn", reply):
        yield event


def _error_payload(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def _error_response(reply: Reply) -> Response:
    assert reply.error is not None
    error = reply.error
    payload = _error_payload(error.status, error.message)
    headers = {} if error.retry_after is None else {"retry-after": f"{error.retry_after:g}"}
    return JSONResponse(payload, status_code=error.status, headers=headers)


async def _wait_forever(stopping: threading.Event) -> None:
    await asyncio.to_thread(stopping.wait)


def _authorized(request: Request, api_key: str) -> bool:
    offered = [
        request.headers.get("x-api-key", ""),
        request.headers.get("authorization", "").removeprefix("Bearer "),
    ]
    return any(hmac.compare_digest(value.encode(), api_key.encode()) for value in offered if value)


class _ModelApp:
    """The route handlers, holding the scenario, the log and the shutdown signal."""

    def __init__(
        self,
        scenario: Scenario,
        log: RequestLog,
        stop: threading.Event,
        placeholders: Mapping[str, str],
        api_key: str | None,
    ) -> None:
        self.scenario, self.log, self.stop = scenario, log, stop
        self.placeholders, self.api_key = placeholders, api_key
        self._ids = itertools.count(1)
        self._errors: Counter[tuple[str, str]] = Counter()

    def _fails(self, request: Request, reply: Reply) -> bool:
        """Whether this attempt gets the scripted error (`times` counts per session and step)."""
        if reply.error is None:
            return False
        key = (request.headers.get("x-claude-code-session-id", ""), reply.note)
        self._errors[key] += 1
        return reply.error.times is None or self._errors[key] <= reply.error.times

    def _refusal(self, request: Request, body: Any) -> Response | None:
        if not isinstance(body, dict):
            _record(request, self.log, body, "invalid")
            return JSONResponse(_error_payload(400, "body must be a JSON object"), status_code=400)
        if self.api_key is not None and not _authorized(request, self.api_key):
            _record(request, self.log, body, "unauthorized")
            return JSONResponse(_error_payload(401, "invalid x-api-key"), status_code=401)
        return None

    async def messages(self, request: Request) -> Response:
        body = await _read(request)
        refusal = self._refusal(request, body)
        if refusal is not None:
            return refusal
        reply = plan_reply(self.scenario, body, placeholders=self.placeholders)
        _record(request, self.log, body, reply.note)
        await asyncio.sleep(reply.delay_s)
        if reply.hang:
            await _wait_forever(self.stop)
            return JSONResponse(_error_payload(500, "server stopping"), status_code=500)
        if self._fails(request, reply):
            return _error_response(reply)
        return self._answer(reply, str(body.get("model") or self.scenario.model), bool(body.get("stream")))

    def _answer(self, reply: Reply, model: str, stream: bool) -> Response:
        message_id = f"msg_sandbox_{next(self._ids):06d}"
        if not stream:
            return JSONResponse(message_json(reply, model, message_id))
        if reply.runaway:
            return StreamingResponse(
                _runaway_events(reply, model, message_id), media_type="text/event-stream"
            )
        return StreamingResponse(sse_events(reply, model, message_id), media_type="text/event-stream")

    async def count_tokens(self, request: Request) -> Response:
        body = await _read(request)
        _record(request, self.log, body, "count_tokens")
        return JSONResponse({"input_tokens": max(1, len(json.dumps(body)) // 4)})

    async def requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.log.clear()
            return Response(status_code=204)
        return JSONResponse([asdict(item) for item in self.log.all()])

    async def other(self, request: Request) -> Response:
        _record(request, self.log, await _read(request), "not found")
        return JSONResponse(_error_payload(404, f"no route {request.url.path}"), status_code=404)


def create_model_app(
    scenario: Scenario,
    log: RequestLog,
    stopping: threading.Event | None = None,
    placeholders: Mapping[str, str] | None = None,
    api_key: str | None = None,
) -> Starlette:
    """The app: `/v1/messages`, `/v1/messages/count_tokens`, `GET|DELETE /_sandbox/requests`, else 404.

    `stopping` releases hanging replies when the server shuts down; `placeholders` fill `{name}`
    in scripted turns besides `{cwd}`; with `api_key` set, `/v1/messages` answers 401 to any other key.
    """
    app = _ModelApp(scenario, log, stopping or threading.Event(), placeholders or {}, api_key)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/v1/messages", app.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", app.count_tokens, methods=["POST"]),
            Route("/_sandbox/requests", app.requests, methods=["GET", "DELETE"]),
            Route("/{path:path}", app.other, methods=methods),
        ]
    )


class ModelServer(ServerThread):
    """The scripted model app served with uvicorn in a background thread on a loopback port."""

    def __init__(
        self,
        scenario: Scenario,
        log: RequestLog | None = None,
        placeholders: Mapping[str, str] | None = None,
        api_key: str | None = None,
        port: int = 0,
    ) -> None:
        self.log = log or RequestLog()
        self._stopping = threading.Event()
        super().__init__(
            create_model_app(scenario, self.log, self._stopping, placeholders, api_key), port=port
        )

    def stop(self) -> None:
        self._stopping.set()  # releases scripted hangs so the server can shut down
        super().stop()


def main(argv: list[str] | None = None) -> None:
    """Serve a scenario file: `python -m bot.sandbox.model_server SCENARIO [--port N]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    app = create_model_app(load_scenario(args.scenario), RequestLog())
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
