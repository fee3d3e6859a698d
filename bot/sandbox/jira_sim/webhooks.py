"""Delivers the simulator's events like Jira Cloud: signed, one identifier per delivery, bounded retries."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable

import httpx

from bot.sandbox.jira_sim import jql
from bot.sandbox.jira_sim.model import Attempt, Change, Delivery, DeliveryState, Webhook
from bot.sandbox.jira_sim.render import webhook_payload
from bot.sandbox.jira_sim.state import JiraState

RETRY_STATUSES = frozenset({408, 409, 425, 429})
USER_AGENT = "Atlassian Webhook HTTP Client"
Sleep = Callable[[float], Awaitable[None]]


def signature(secret: str, body: bytes) -> str:
    """`X-Hub-Signature` value: `sha256=` + lowercase hex HMAC-SHA256(secret, raw body)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def should_retry(status: int | None) -> bool:
    """Jira Cloud retries 408, 409, 425, 429, any 5xx and connection failures (status None)."""
    return status is None or status in RETRY_STATUSES or status >= 500


def delivery_headers(hook: Webhook, delivery: Delivery, retry: int) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Atlassian-Webhook-Identifier": delivery.identifier,
        "X-Atlassian-Webhook-Flow": "Primary",
    }
    if retry:
        headers["X-Atlassian-Webhook-Retry"] = str(retry)
    if hook.secret:
        headers["X-Hub-Signature"] = signature(hook.secret, delivery.body)
    return headers


class WebhookSender:
    """Queues deliveries in event order; first attempts go out in order, retries run on their own schedule."""

    def __init__(
        self, state: JiraState, client: httpx.AsyncClient | None = None, *, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.state = state
        self._client = client
        self._own_client = client is None
        self._sleep = sleep
        self._queue: asyncio.Queue[tuple[Webhook, Delivery]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._client is None:
            policy = self.state.webhook_policy
            timeout = httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s)
            self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        for task in [*self._tasks, *([self._worker] if self._worker else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def emit(self, changes: list[Change], base: str) -> list[Delivery]:
        """Build each change's payload now (a snapshot) and queue one delivery per subscribed webhook."""
        out = []
        for change in changes:
            timestamp = int(self.state.clock().timestamp() * 1000)
            event, payload = webhook_payload(self.state, change, base, timestamp)
            body = json.dumps(payload).encode()
            issue = self.state.issue(change.issue_key)
            for hook in list(self.state.webhooks.values()):
                if hook.enabled and event in hook.events and jql.matches(hook.jql, issue):
                    sent = b"" if hook.exclude_body else body  # `excludeBody`: the POST carries no payload
                    delivery = Delivery(str(uuid.uuid4()), hook.id, event, sent)
                    self.state.record_delivery(delivery)
                    self._queue.put_nowait((hook, delivery))
                    out.append(delivery)
        return out

    async def _work(self) -> None:
        while True:
            hook, delivery = await self._queue.get()
            if not await self._attempt(hook, delivery, 0):
                task = asyncio.create_task(self._retry(hook, delivery))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _retry(self, hook: Webhook, delivery: Delivery) -> None:
        policy = self.state.webhook_policy
        for retry in range(1, policy.max_attempts):
            delays = policy.retry_delays_s or (1.0,)
            await self._sleep(delays[min(retry - 1, len(delays) - 1)])
            if await self._attempt(hook, delivery, retry):
                return
        self.state.settle(delivery, "failed")

    async def _attempt(self, hook: Webhook, delivery: Delivery, retry: int) -> bool:
        """One POST; True when the delivery is finished (delivered, or refused with a non-retried status)."""
        assert self._client is not None
        status: int | None = None
        error: str | None = None
        try:
            headers = delivery_headers(hook, delivery, retry)
            status = (await self._client.post(hook.url, content=delivery.body, headers=headers)).status_code
        except Exception as exc:  # any failure to get an answer counts as a connection failure, like Jira's
            error = type(exc).__name__
        outcome: DeliveryState = "pending"
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
        elif not should_retry(status):
            outcome = "failed"
        self.state.settle(delivery, outcome, Attempt(retry, status, error))
        return outcome != "pending"
