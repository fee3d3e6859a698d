"""The webhook endpoints end to end in-process: real store (SQLite and PostgreSQL) and real Redis."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.store.tables import Delivery, Run
from shell.app import create_app
from shell.body import DRAIN_FACTOR
from shell.services import Services
from tests.support.deliveries import all_fixtures, fixture, gitlab_headers, label_added, signed


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services.settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton.test") as http:
        yield http


async def count(services: Services, table: type[Delivery] | type[Run]) -> int:
    async with services.sm() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


def source_of(name: str) -> str:
    return name.split("/")[0]


@pytest.mark.parametrize("name", all_fixtures())
async def test_every_recorded_fixture_is_accepted_with_valid_auth(
    client: httpx.AsyncClient, services: Services, name: str
) -> None:
    body, headers = signed(source_of(name), fixture(name))
    response = await client.post(f"/webhooks/{source_of(name)}", content=body, headers=headers)
    assert response.status_code in (200, 202), response.text
    assert await count(services, Delivery) == 1


@pytest.mark.parametrize("name", all_fixtures())
@pytest.mark.parametrize("credential", ["missing", "wrong", "prefix"])
async def test_bad_credentials_are_401_and_store_nothing(
    client: httpx.AsyncClient, services: Services, name: str, credential: str
) -> None:
    source = source_of(name)
    body, headers = signed(source, fixture(name))
    auth_header = "X-Gitlab-Token" if source == "gitlab" else "X-Hub-Signature"
    if credential == "missing":
        del headers[auth_header]
    elif credential == "wrong":
        headers[auth_header] = headers[auth_header][:-4] + "beef"
    else:  # a correct prefix of the real credential
        headers[auth_header] = headers[auth_header][: len(headers[auth_header]) // 2]
    response = await client.post(f"/webhooks/{source}", content=body, headers=headers)
    assert response.status_code == 401
    assert "secret-for-tests" not in response.text
    assert await count(services, Delivery) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"not json",
        b"\xff\xfe\x00garbage",
        b'{"a": NaN}',
        b'{"a": 1e999}',
        b"[" * 5000 + b"]" * 5000,
        b"",
    ],
)
@pytest.mark.parametrize("source", ["gitlab", "jira"])
async def test_bad_json_is_400_with_a_one_line_reason(
    client: httpx.AsyncClient, services: Services, source: str, body: bytes
) -> None:
    headers = gitlab_headers({}) if source == "gitlab" else signed("jira", {})[1]
    if source == "jira":
        from bot.verify import jira_signature

        headers["X-Hub-Signature"] = jira_signature("jira-webhook-secret-for-tests", body)
    response = await client.post(f"/webhooks/{source}", content=body, headers=headers)
    assert response.status_code == 400
    reason = response.json()["error"]
    assert "\n" not in reason and len(reason) < 300
    assert await count(services, Delivery) == 0


async def test_label_added_starts_one_run_and_a_repeat_starts_none(
    client: httpx.AsyncClient, services: Services
) -> None:
    body, headers = signed("jira", label_added("ai-implement"))
    first = await client.post("/webhooks/jira", content=body, headers=headers)
    second = await client.post("/webhooks/jira", content=body, headers=headers)
    assert first.status_code == 202 and first.json()["accepted"] == "enqueued"
    assert second.status_code == 200 and second.json() == {"duplicate": True, "run": first.json()["run"]}
    assert await count(services, Run) == 1
    assert await services.queue.has_job(first.json()["run"])


async def test_same_origin_under_a_new_delivery_key_joins_the_existing_run(
    client: httpx.AsyncClient, services: Services
) -> None:
    payload = label_added("ai-implement", changelog_id="4242")
    first = await client.post("/webhooks/jira", content=(b := signed("jira", payload))[0], headers=b[1])
    again = await client.post("/webhooks/jira", content=(c := signed("jira", payload))[0], headers=c[1])
    assert again.json() == {"duplicate": True, "run": first.json()["run"]}
    assert (await count(services, Run), await count(services, Delivery)) == (1, 2)


async def test_irrelevant_event_is_acknowledged_as_ignored(client: httpx.AsyncClient) -> None:
    body, headers = signed("gitlab", fixture("gitlab/push.json"))
    response = await client.post("/webhooks/gitlab", content=body, headers=headers)
    assert response.status_code == 200
    assert isinstance(response.json()["ignored"], str)


async def test_fifty_concurrent_duplicates_make_exactly_one_run(
    client: httpx.AsyncClient, services: Services
) -> None:
    body, headers = signed("jira", label_added("ai-implement"))
    responses = await asyncio.gather(
        *(client.post("/webhooks/jira", content=body, headers=headers) for _ in range(50))
    )
    assert sorted({r.status_code for r in responses}) in ([200, 202], [202])
    assert sum(r.status_code == 202 for r in responses) == 1
    assert len({r.json()["run"] for r in responses}) == 1
    assert await count(services, Run) == 1


class CountingBody:
    """A chunked request body that records how much of it the server pulled."""

    def __init__(self, chunk: bytes, chunks: int) -> None:
        self.chunk, self.chunks, self.sent = chunk, chunks, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.sent += len(self.chunk)
            yield self.chunk


async def test_oversized_chunked_body_is_cut_off_at_the_drain_bound(
    client: httpx.AsyncClient, services: Services
) -> None:
    cap = services.settings.max_body_bytes
    body = CountingBody(b"x" * 65536, chunks=(cap // 65536) * DRAIN_FACTOR * 2)
    headers = {**gitlab_headers({}), "Content-Type": "application/json"}
    response = await client.post("/webhooks/gitlab", content=body, headers=headers)
    assert response.status_code == 413
    assert body.sent <= cap * DRAIN_FACTOR + 2 * 65536  # stopped reading at the drain bound
    assert await count(services, Delivery) == 0


async def test_a_body_a_little_over_the_cap_is_read_to_its_end_before_the_413(
    client: httpx.AsyncClient, services: Services
) -> None:
    cap = services.settings.max_body_bytes
    chunks = cap // 65536 + 3
    body = CountingBody(b"x" * 65536, chunks=chunks)
    headers = {**gitlab_headers({}), "Content-Type": "application/json"}
    response = await client.post("/webhooks/gitlab", content=body, headers=headers)
    assert response.status_code == 413
    assert body.sent == chunks * 65536  # drained, so a real sender is not reset mid-request
    assert await count(services, Delivery) == 0


async def test_declared_oversized_length_is_refused_before_reading(client: httpx.AsyncClient) -> None:
    headers = {**gitlab_headers({}), "Content-Length": str(50 * 1024 * 1024)}
    body = CountingBody(b"{}", chunks=1)
    response = await client.post("/webhooks/gitlab", content=body, headers=headers)
    assert response.status_code == 413
    assert body.sent <= 2


async def test_readyz_and_metrics(client: httpx.AsyncClient) -> None:
    body, headers = signed("jira", label_added("ai-implement"))
    await client.post("/webhooks/jira", content=body, headers=headers)
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "database": "ok", "redis": "ok"}
    text = (await client.get("/metrics")).text
    assert 'baton_webhook_deliveries_total{outcome="enqueued",source="jira"} 1.0' in text
    assert "baton_webhook_ingest_seconds_bucket" in text
    assert "baton_queue_depth 1.0" in text


async def test_queue_down_after_commit_still_acknowledges(
    client: httpx.AsyncClient, services: Services, redis_server: Any
) -> None:
    redis_server.stop()
    body, headers = signed("jira", label_added("ai-implement"))
    response = await client.post("/webhooks/jira", content=body, headers=headers)
    assert response.status_code == 202
    assert await count(services, Run) == 1
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["redis"].startswith("unavailable")
    metrics = (await client.get("/metrics")).text
    assert "baton_enqueue_failures_total 1.0" in metrics


async def test_bot_marker_note_is_ignored(client: httpx.AsyncClient, services: Services) -> None:
    payload = fixture("gitlab/note_mr_comment.json")
    payload["object_attributes"]["note"] = "/approve\n\n<!-- baton:effect=proposal:1 -->"
    body, headers = signed("gitlab", payload)
    response = await client.post("/webhooks/gitlab", content=body, headers=headers)
    assert response.status_code == 200 and "ignored" in response.json()
    assert await count(services, Run) == 0


async def test_a_full_inbox_queue_is_a_503_with_retry_after_and_stores_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The inbox refuses a delivery when `max_queued` already wait (bot/store/group.py): the sender is
    told to retry at once, nothing is stored; with room again the same delivery is accepted."""
    services.inbox.max_queued = 0  # every delivery finds the queue full
    body, headers = signed("jira", label_added("ai-implement"))
    refused = await client.post("/webhooks/jira", content=body, headers=headers)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5", refused.text
    assert "queue full" in refused.json()["error"]
    assert await count(services, Delivery) == 0
    services.inbox.max_queued = 8
    accepted = await client.post("/webhooks/jira", content=body, headers=headers)
    assert accepted.status_code == 202 and await count(services, Run) == 1


async def test_a_202_is_sent_before_the_enqueue_and_the_job_follows(
    services: Services, redis_server: Any
) -> None:
    """The run is committed before the answer; arq's enqueue (several Redis round trips) runs after the
    202 is sent. With Redis frozen the sender already has its 202 while the enqueue waits; once Redis
    answers again the job is there (and, had the process died meanwhile, the sweeper enqueues the run)."""
    app = create_app(services.settings, services)
    body, headers = signed("jira", label_added("ai-implement"))
    sent: list[MutableMapping[str, Any]] = []
    answered = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # the client stays connected
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/webhooks/jira", "raw_path": b"/webhooks/jira", "query_string": b"",
        "root_path": "", "server": ("baton.test", 80), "client": ("127.0.0.1", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        call = asyncio.create_task(app(scope, receive, send))
        await asyncio.wait_for(answered.wait(), 30)
        assert sent[0]["status"] == 202
        run_id = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["run"]
        assert await count(services, Run) == 1
        assert not call.done()  # the enqueue still waits for Redis
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    await asyncio.wait_for(call, 30)
    assert await services.queue.has_job(run_id)
