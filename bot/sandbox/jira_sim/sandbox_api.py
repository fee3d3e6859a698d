"""Sandbox-only routes (`/_sandbox/…`, no auth): act as a user, add webhooks, set faults, see deliveries."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.sandbox.jira_sim import render
from bot.sandbox.jira_sim.http import base_url, json_body
from bot.sandbox.jira_sim.model import Delivery
from bot.sandbox.jira_sim.state import JiraState, SimError
from bot.sandbox.jira_sim.webhooks import WebhookSender


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    attempts = [{"retry": a.retry, "status": a.status, "error": a.error} for a in delivery.attempts]
    return {
        "identifier": delivery.identifier,
        "webhook": delivery.webhook_id,
        "event": delivery.event,
        "state": delivery.state,
        "attempts": attempts,
    }


class SandboxApi:
    """What a person would do in Jira's UI, so tests and `baton demo` can act as the approver or developer."""

    def __init__(self, state: JiraState, sender: WebhookSender) -> None:
        self.state = state
        self.sender = sender

    def routes(self) -> list[Route]:
        return [
            Route("/_sandbox/comments", self.comment, methods=["POST"]),
            Route("/_sandbox/labels", self.labels, methods=["POST"]),
            Route("/_sandbox/webhooks", self.webhook, methods=["POST"]),
            Route("/_sandbox/faults", self.faults, methods=["POST"]),
            Route("/_sandbox/deliveries", self.deliveries, methods=["GET"]),
        ]

    async def comment(self, request: Request) -> Response:
        """`{"user": <accountId|name|email>, "issue": "DEMO-1", "body": "/approve"}` → 201."""
        body = await json_body(request)
        user = self.state.user(body.get("user"))
        comment, changes = self.state.add_comment(str(body.get("issue")), user, str(body.get("body") or ""))
        self.sender.emit(changes, base_url(request))
        return JSONResponse(render.comment_json(self.state, comment, base_url(request)), 201)

    async def labels(self, request: Request) -> Response:
        """`{"user": …, "issue": "DEMO-1", "add": "ai-implement" | [...], "remove": …}` → the labels now."""
        body = await json_body(request)
        user, key = self.state.user(body.get("user")), str(body.get("issue"))
        changes = self.state.update_labels(
            key, user, add=_names(body.get("add")), remove=_names(body.get("remove"))
        )
        self.sender.emit(changes, base_url(request))
        return JSONResponse({"key": key, "labels": self.state.issue(key).labels, "changed": bool(changes)})

    async def webhook(self, request: Request) -> Response:
        """`{"url", "events"?, "secret"?, "jql"?}`; events default to the label/comment events."""
        body = await json_body(request)
        if not body.get("url"):
            raise SimError(400, "", {"url": "required"})
        events = _names(body.get("events")) or ["jira:issue_updated", "comment_created", "comment_updated"]
        hook = self.state.register_webhook(
            str(body.get("name") or "baton"),
            str(body["url"]),
            events,
            jql_filter=body.get("jql"),
            secret=body.get("secret"),
        )
        return JSONResponse({"id": hook.id, "url": hook.url, "events": hook.events}, 201)

    async def faults(self, request: Request) -> Response:
        try:
            self.state.faults.configure(**await json_body(request))
        except ValueError as exc:
            raise SimError(400, str(exc)) from None
        return JSONResponse({"ok": True})

    async def deliveries(self, request: Request) -> Response:
        with self.state.lock:
            return JSONResponse([delivery_json(d) for d in self.state.deliveries])
