"""`GET /openapi.json` describes every route, and the live server keeps to it under schemathesis.

Schemathesis generates requests from the description (bodies, headers, credentials) and sends them to
a real `baton serve`; most webhook requests carry valid credentials computed over the exact bytes sent
(the Jira HMAC depends on the body), the rest the credentials schemathesis made up. Every answer must
be documented: no 5xx, a documented status, content type, headers and body shape, and authentication
enforced wherever it is declared.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_31
from starlette.routing import Route

from shell.app import create_app
from shell.openapi import document
from tests.conftest import make_settings
from tests.reliability.test_ingress_auth import Secrets, Server, Stack, jira_signature, standard_signature
from tests.support.servers import RedisServer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]
CREDENTIALS = ("X-Gitlab-Token", "webhook-signature", "webhook-id", "webhook-timestamp", "X-Hub-Signature")


async def _published(tmp_path: Path) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    app = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}", "redis://127.0.0.1:9/0"))
    transport = httpx.ASGITransport(app=app)  # no lifespan: /openapi.json needs no store
    async with httpx.AsyncClient(transport=transport, base_url="http://baton.test") as http:
        answer = await http.get("/openapi.json")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    routes = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"  # Starlette adds HEAD to every GET route
    }
    return json.loads(answer.content), routes


async def test_openapi_json_is_valid_openapi_3_1_and_lists_every_route(tmp_path: Path) -> None:
    published, routes = await _published(tmp_path)
    assert published == document()
    jsonschema_rs.validate(OPENAPI_31, published, draft=jsonschema_rs.Draft202012)
    for component in published["components"]["schemas"].values():
        jsonschema_rs.meta.validate(component)
    described = {(path, method) for path, item in published["paths"].items() for method in item}
    assert described == routes
    for path, method in routes:
        operation = published["paths"][path][method]
        assert operation["responses"] and operation["operationId"]
    for path in ("/webhooks/gitlab", "/webhooks/jira"):  # README "Webhook answers", every row
        answers = published["paths"][path]["post"]["responses"]
        assert sorted(answers) == ["200", "202", "400", "401", "404", "408", "413", "503"]
        assert answers["503"]["headers"]["Retry-After"]["required"] is True


# --- schemathesis against a live `baton serve` ---------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Server]]:
    tmp = tmp_path_factory.mktemp("openapi")
    redis = RedisServer(tmp / "redis").start()
    stack = Stack(tmp, f"sqlite:///{tmp / 'baton.db'}", redis)
    try:
        yield stack, stack.serve()
    finally:
        stack.close()
        redis.stop()


# The description the live server publishes is `document()` (the test above checks it). It is loaded
# here rather than fetched: schemathesis's lazy `from_fixture` breaks on pytest 9 (`Function._nodeid`).
schema = schemathesis.openapi.from_dict(document())


def credentials(source: str, secrets: Secrets, body: bytes) -> dict[str, str] | None:
    """Valid credentials for three bodies in four (by a hash of the body); None: keep the generated ones."""
    choice = zlib.crc32(body) % 4
    if choice == 0:
        return None
    if source == "jira":
        return {"X-Hub-Signature": jira_signature(secrets.jira, body)}
    if choice == 1:
        return {"X-Gitlab-Token": secrets.gitlab}
    msg_id, stamp = f"msg-{choice}-{zlib.adler32(body)}", str(int(time.time()))
    signature = standard_signature(secrets.signing, msg_id, stamp, body)
    return {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": signature}


@schema.parametrize()
@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@pytest.mark.timeout(180)
def test_the_live_server_keeps_to_its_openapi_description(
    case: schemathesis.Case[Any], live: tuple[Stack, Server]
) -> None:
    stack, server = live
    kwargs = case.as_transport_kwargs(base_url=server.url)
    explicit: dict[str, str] = {}
    if "json" in kwargs:  # send exact bytes, so the signature can cover them
        body = json.dumps(kwargs.pop("json")).encode()
        kwargs["data"] = body
        valid = credentials(case.path.rsplit("/", 1)[-1], stack.secrets, body)
        if valid is not None:
            for name in CREDENTIALS:
                kwargs["headers"].pop(name, None)
            kwargs["headers"].update(valid)
            explicit = valid
    response = requests.request(**kwargs, timeout=15)
    case.validate_response(response, checks=CHECKS, headers=explicit or None)


@pytest.mark.timeout(90)
def test_after_schemathesis_every_delivery_settles_and_nothing_leaked(live: tuple[Stack, Server]) -> None:
    stack, _ = live
    stack.settle_and_check()
