"""Sends webhooks the way GitLab does: GitLab's headers, recorded attempts, bounded retries, same key."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx

from bot.sandbox.gitlab_sim.model import Attempt, Delivery, Hook
from bot.sandbox.gitlab_sim.state import GitLabState

USER_AGENT = "GitLab/17.4.0"
HOOK_FLAGS = {
    "Note Hook": "note_events",
    "Merge Request Hook": "merge_requests_events",
    "Push Hook": "push_events",
    "Pipeline Hook": "pipeline_events",
    "Job Hook": "job_events",
}


def delivery_headers(state: GitLabState, hook: Hook, delivery: Delivery) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Gitlab-Event": delivery.event,
        "X-Gitlab-Event-UUID": delivery.event_uuid,
        "X-Gitlab-Webhook-UUID": hook.uuid,
        "X-Gitlab-Instance": state.instance_url,
        "Idempotency-Key": delivery.idempotency_key,
    }
    if hook.token:
        headers["X-Gitlab-Token"] = hook.token
    return headers


class WebhookSender:
    """Owns the HTTP client and the in-flight deliveries of one running simulator."""

    def __init__(self, state: GitLabState) -> None:
        self.state = state
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.state.webhook_timeout_s, follow_redirects=False)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def emit(self, project_id: int, event: str, payload: dict[str, Any]) -> list[Delivery]:
        """Queue one delivery per hook of the project that subscribes to `event` (e.g. `Note Hook`)."""
        event_uuid = str(uuid.uuid4())
        deliveries = []
        for hook in self.state.hooks_for(project_id, HOOK_FLAGS[event]):
            delivery = Delivery(hook.id, hook.url, event, str(uuid.uuid4()), event_uuid, payload)
            self.state.record_delivery(delivery)
            task = asyncio.get_running_loop().create_task(self._deliver(hook, delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            deliveries.append(delivery)
        return deliveries

    async def _deliver(self, hook: Hook, delivery: Delivery) -> None:
        body = json.dumps(delivery.payload).encode()
        delays = (0.0, *self.state.webhook_retry_delays_s)
        for delay in delays:
            await asyncio.sleep(delay)
            attempt = await self._attempt(hook, delivery, body)
            self.state.record_attempt(delivery, attempt)
            if attempt.status is not None and 200 <= attempt.status < 300:
                return

    async def _attempt(self, hook: Hook, delivery: Delivery, body: bytes) -> Attempt:
        assert self._client is not None, "WebhookSender.start() was not called"
        headers = delivery_headers(self.state, hook, delivery)
        try:
            response = await self._client.post(hook.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Attempt(None, type(exc).__name__, time.time())
        return Attempt(response.status_code, None, time.time())
