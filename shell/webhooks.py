"""The webhook endpoints: cap, verify, parse, route, commit to the inbox, enqueue, answer."""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Literal

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from bot import verify
from bot.dedup import clean, delivery_key
from bot.errors import BadRequest, BatonError, NotConfigured, StoreUnavailable
from bot.logs import bind
from bot.store import inbox
from handlers import PayloadInvalid, route
from handlers.actions import Ignore
from shell.body import read_capped
from shell.services import Services

Source = Literal["gitlab", "jira"]
# System hooks (instance-wide) carry no notes and lack ids Baton needs (no project.id, no user.id);
# Baton acts on the project hooks `baton hooks install` registers. Never a 4xx for them.
SYSTEM_HOOKS_IGNORED = "GitLab system hooks are not used: Baton acts on its project hooks"
log = logging.getLogger("baton.webhooks")
MAX_DEPTH = 64


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest (iteratively: a hostile payload cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json(body: bytes) -> Any:
    """Strict JSON: bad UTF-8, NaN/Infinity, out-of-range numbers and absurd nesting are 400s."""
    try:
        value = json.loads(body, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise BadRequest("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise BadRequest(f"invalid JSON: {reason}") from None
    if _depth(value) > MAX_DEPTH:  # real payloads nest about 8 deep; storing 900 levels would fail later
        raise BadRequest(f"invalid JSON: nested more than {MAX_DEPTH} levels")
    return value


def _authenticate(services: Services, source: Source, request: Request, body: bytes) -> None:
    settings = services.settings
    if source == "gitlab":
        secret, signing = settings.gitlab_webhook_secret, settings.gitlab_signing_token
        if secret is None and signing is None:
            raise NotConfigured("GitLab webhooks are not configured (set BATON_GITLAB_WEBHOOK_SECRET)")
        verify.verify_gitlab(
            request.headers,
            body,
            secret.get_secret_value() if secret else None,
            signing.get_secret_value() if signing else None,
            time.time(),
        )
        return
    if settings.jira_webhook_secret is None:
        raise NotConfigured("Jira webhooks are not configured (set BATON_JIRA_WEBHOOK_SECRET)")
    verify.verify_jira(request.headers, body, settings.jira_webhook_secret.get_secret_value())


def _event_name(source: Source, request: Request, payload: dict[str, Any]) -> str:
    if source == "gitlab":
        name = str(request.headers.get("x-gitlab-event") or payload.get("object_kind") or "unknown")
    else:
        name = str(payload.get("webhookEvent") or "unknown")
    return clean(name)[:64] or "unknown"  # stored text: no NUL, no lone surrogates


def _actor(source: Source, payload: dict[str, Any]) -> str:
    user = payload.get("user")
    names = (
        [user.get(f) for f in ("username", "displayName", "accountId", "name")]
        if isinstance(user, dict)
        else []
    )
    names.append(payload.get("user_username") if source == "gitlab" else None)
    for name in names:
        if isinstance(name, str) and clean(name):
            return f"{source}:{clean(name)[:200]}"  # stored text: no NUL, no lone surrogates
    return f"{source}:unknown"


def _answer(recorded: inbox.Recorded) -> JSONResponse:
    if recorded.outcome == inbox.IGNORED:
        return JSONResponse({"ignored": recorded.reason}, status_code=200)
    if recorded.outcome in (inbox.DUPLICATE, inbox.JOINED):
        return JSONResponse({"duplicate": True, "run": recorded.run_id}, status_code=200)
    return JSONResponse({"accepted": recorded.outcome, "run": recorded.run_id}, status_code=202)


async def _enqueue(services: Services, recorded: inbox.Recorded, key: str) -> None:
    """Best effort, after the answer is sent (the response's background task): the run is committed
    before the 202, and the sweeper enqueues it if this fails or never happens (a crash in between).
    arq's enqueue is several Redis round trips; the sender does not wait for them."""
    if not (recorded.new_run and recorded.run_id):
        return
    with bind(delivery_key=key, delivery_id=recorded.delivery_id, run_id=recorded.run_id):
        await _enqueue_run(services, recorded.run_id)


async def _enqueue_run(services: Services, run_id: str) -> None:
    try:
        await services.queue.enqueue_run(run_id)
    except (RedisError, OSError, TimeoutError) as exc:
        services.metrics.enqueue_failures.inc()
        log.warning(
            "queue unavailable; the sweeper will enqueue the run", extra={"error": type(exc).__name__}
        )


async def _ingest(services: Services, source: Source, request: Request) -> tuple[inbox.Recorded, str]:
    settings = services.settings
    body = await read_capped(request, settings.max_body_bytes, settings.body_timeout_s)
    _authenticate(services, source, request, body)
    payload = parse_json(body)
    try:
        action = (
            Ignore(SYSTEM_HOOKS_IGNORED)
            if source == "gitlab" and request.headers.get("x-gitlab-event") == "System Hook"
            else route(source, payload, services.handler_context)
        )
    except PayloadInvalid as exc:
        raise BadRequest(f"invalid {source} payload: {exc}") from None
    key = delivery_key(source, request.headers, payload, body)
    incoming = inbox.Incoming(
        source, key, _event_name(source, request, payload), payload, _actor(source, payload)
    )
    with bind(delivery_key=key):
        try:
            recorded = await services.inbox.record(incoming, action)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise StoreUnavailable("state store unavailable; retry later") from exc
        with bind(delivery_id=recorded.delivery_id, run_id=recorded.run_id):
            log.info(
                "delivery %s", recorded.outcome, extra={"event": incoming.event, "reason": recorded.reason}
            )
    return recorded, key


def _error_response(exc: BatonError) -> JSONResponse:
    headers = {"Retry-After": "5"} if isinstance(exc, StoreUnavailable) else None
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)


async def receive(request: Request, source: Source) -> Response:
    services: Services = request.app.state.services
    started = time.perf_counter()
    try:
        recorded, key = await _ingest(services, source, request)
        response: Response = _answer(recorded)
        if recorded.new_run:  # enqueued once the answer is sent (see _enqueue)
            response.background = BackgroundTask(_enqueue, services, recorded, key)
        outcome = recorded.outcome
    except BatonError as exc:
        level = logging.ERROR if exc.status >= 500 else logging.INFO
        log.log(level, "delivery rejected: %s", exc, extra={"status": exc.status, "source": source})
        response, outcome = _error_response(exc), f"rejected_{exc.status}"
    except ClientDisconnect:
        response, outcome = Response(status_code=400), "rejected_400"
    services.metrics.deliveries.labels(source, outcome).inc()
    services.metrics.ingest_seconds.labels(source).observe(time.perf_counter() - started)
    return response


async def gitlab(request: Request) -> Response:
    return await receive(request, "gitlab")


async def jira(request: Request) -> Response:
    return await receive(request, "jira")
