"""Ingress under attack, against real `baton serve` processes: forged credentials, replays, duplicates.

Every case ends with `invariants.check`: a `baton worker` process settles the runs (kind `implement`
and `approve` fail fast here: the GitLab/Jira URLs point at a closed port), and no configured secret,
no presented credential and no API-token canary appears in the logs, Redis or the database.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets as random_secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.store.engine import create_engine
from bot.store.tables import Base
from config.settings import async_database_url
from tests.reliability.invariants import World, check
from tests.support.deliveries import fixture, gitlab_headers, label_added
from tests.support.processes import CANARY, BatonProcess, baton_env, cli, cli_json
from tests.support.servers import RedisServer, free_port

Headers = dict[str, str]
TABLES = list(Base.metadata.sorted_tables)


# --- credentials, computed here independently of bot/verify.py -----------------------------------


def jira_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_signature(token: str, msg_id: str, stamp: str, body: bytes) -> str:
    """Standard Webhooks v1: base64 HMAC-SHA256 over "{id}.{timestamp}.{body}" keyed by whsec_ bytes."""
    key = base64.b64decode(token.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Secrets:
    """Webhook secrets unique to one test, planted as canaries: none may ever be echoed or stored."""

    gitlab: str = field(default_factory=lambda: f"canary-gitlab-hook-{uuid.uuid4().hex}")
    jira: str = field(default_factory=lambda: f"canary-jira-hook-{uuid.uuid4().hex}")
    signing: str = field(
        default_factory=lambda: "whsec_" + base64.b64encode(random_secrets.token_bytes(32)).decode()
    )

    def settings(self) -> dict[str, str]:
        return {
            "gitlab_webhook_secret": self.gitlab,
            "jira_webhook_secret": self.jira,
            "gitlab_signing_token": self.signing,
        }

    def canaries(self) -> list[str]:
        return [self.gitlab, self.jira, self.signing, self.signing.removeprefix("whsec_"), CANARY]

    def gitlab_token(self, payload: dict[str, Any], key: str | None = None) -> Headers:
        return gitlab_headers(payload, token=self.gitlab, key=key)

    def gitlab_signed(self, payload: dict[str, Any], body: bytes, msg_id: str | None = None) -> Headers:
        """Only the HMAC credential (no X-Gitlab-Token), as GitLab sends with a signing token."""
        headers = gitlab_headers(payload, key=msg_id)
        del headers["X-Gitlab-Token"]
        msg_id, stamp = headers["Idempotency-Key"], str(int(time.time()))
        signature = standard_signature(self.signing, msg_id, stamp, body)
        return {**headers, "webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": signature}

    def jira_headers(self, body: bytes, key: str | None = None) -> Headers:
        return {
            "Content-Type": "application/json",
            "X-Atlassian-Webhook-Identifier": key or str(uuid.uuid4()),
            "X-Hub-Signature": jira_signature(self.jira, body),
        }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


# --- the stack: a migrated store, one Redis, Baton processes -------------------------------------


async def _count_rows(db_url: str) -> dict[str, int]:
    engine = create_engine(async_database_url(db_url))
    try:
        async with engine.connect() as conn:
            return {
                t.name: int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
                for t in TABLES
            }
    finally:
        await engine.dispose()


def count_rows(db_url: str) -> dict[str, int]:
    return asyncio.run(_count_rows(db_url))


@dataclass
class Server:
    process: BatonProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Stack:
    """Baton's processes over one database and one Redis, with canary secrets in their environment."""

    def __init__(
        self, tmp: Path, db_url: str, redis: RedisServer, secrets: Secrets | None = None, migrate: bool = True
    ) -> None:
        self.tmp, self.db_url, self.redis = tmp, db_url, redis
        self.secrets = secrets or Secrets()
        self.processes: list[BatonProcess] = []
        self.workers: list[BatonProcess] = []
        if migrate:
            migrated = cli(self.env(), "migrate")
            assert migrated.returncode == 0, migrated.stderr

    def env(self, port: int = 0, **extra: str) -> dict[str, str]:
        return baton_env(
            self.tmp / "state", self.db_url, self.redis.url, port, **self.secrets.settings(), **extra
        )

    def serve(self, **extra: str) -> Server:
        port = free_port()
        process = BatonProcess("serve", self.env(port, **extra), self.tmp / "logs")
        self.processes.append(process)
        process.wait_http(f"http://127.0.0.1:{port}/healthz")
        return Server(process, port)

    def worker(self) -> BatonProcess:
        process = BatonProcess("worker", self.env(), self.tmp / "logs")
        self.processes.append(process)
        self.workers.append(process)
        return process

    def runs(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = cli_json(self.env(), "runs", "--limit", "1000")
        return runs

    def logs(self) -> str:
        return "\n".join(process.logs() for process in self.processes)

    def world(self, *presented: str, extra_texts: list[str] | None = None) -> World:
        return World(
            db_url=self.db_url,
            redis_url=self.redis.url,
            logs=[process.log_path for process in self.processes],
            canaries=[*self.secrets.canaries(), *presented],
            extra_texts=extra_texts or [],
        )

    def settle_and_check(self, *presented: str, extra_texts: list[str] | None = None) -> None:
        """A worker (unless one runs), then the three invariants: the worker settles every run."""
        if not any(worker.process.poll() is None for worker in self.workers):
            self.worker()
        check(self.world(*presented, extra_texts=extra_texts), settle_timeout_s=45)

    def close(self) -> None:
        for process in self.processes:
            process.stop()


@pytest.fixture
def stack_factory(tmp_path: Path, redis_server: RedisServer) -> Iterator[Callable[[str], Stack]]:
    stacks: list[Stack] = []

    def make(db_url: str) -> Stack:
        stacks.append(Stack(tmp_path, db_url, redis_server))
        return stacks[-1]

    yield make
    for stack in stacks:
        stack.close()


# --- 1. forged, missing and correct-prefix credentials -------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One unauthenticated delivery: its headers and the credential values it presents."""

    name: str
    source: str
    headers: Headers
    presented: tuple[str, ...] = ()


def _gitlab_attempts(s: Secrets, payload: dict[str, Any], body: bytes) -> list[Attempt]:
    forged = f"forged-gitlab-{uuid.uuid4().hex}"
    base = s.gitlab_token(payload)
    del base["X-Gitlab-Token"]
    signed = s.gitlab_signed(payload, body)
    msg_id, now = signed["webhook-id"], int(time.time())
    wrong_key = "whsec_" + base64.b64encode(random_secrets.token_bytes(32)).decode()

    def token(value: str) -> Attempt:
        return Attempt(f"gitlab token {value[:14]}…", "gitlab", {**base, "X-Gitlab-Token": value}, (value,))

    def signature(name: str, stamp: int, sig: str, **extra: str) -> Attempt:
        headers = {**signed, "webhook-timestamp": str(stamp), "webhook-signature": sig, **extra}
        return Attempt(f"gitlab signature {name}", "gitlab", headers, (sig,))

    good_sig = signed["webhook-signature"]
    return [
        Attempt("gitlab no credential", "gitlab", base),
        Attempt("gitlab empty token", "gitlab", {**base, "X-Gitlab-Token": ""}),
        token(forged),
        token(s.gitlab[: len(s.gitlab) // 2]),  # a correct prefix
        token(s.gitlab[:-1]),  # all but the last character
        token(s.gitlab + "0"),  # the secret and one more character
        token(s.gitlab.upper()),
        token(s.jira),  # the other source's secret
        token(s.signing),  # the signing token presented as the plain token
        signature("by another key", now, standard_signature(wrong_key, msg_id, str(now), body)),
        signature("correct prefix", now, good_sig[: len(good_sig) // 2]),
        signature("without v1,", now, good_sig.removeprefix("v1,")),
        signature(
            "stale (a replay 10 min later)",
            now - 600,
            standard_signature(s.signing, msg_id, str(now - 600), body),
        ),
        signature("from the future", now + 600, standard_signature(s.signing, msg_id, str(now + 600), body)),
        signature("over another body", now, standard_signature(s.signing, msg_id, str(now), body + b" ")),
        signature("for another webhook-id", now, good_sig, **{"webhook-id": f"{msg_id}-other"}),
        Attempt(  # every credential presented must hold: a good token does not excuse a bad signature
            "gitlab good token, bad signature",
            "gitlab",
            {**signed, "X-Gitlab-Token": s.gitlab, "webhook-signature": "v1," + good_sig[3:][::-1]},
        ),
        Attempt(
            "gitlab good signature, bad token", "gitlab", {**signed, "X-Gitlab-Token": forged}, (forged,)
        ),
    ]


def _jira_attempts(s: Secrets, body: bytes) -> list[Attempt]:
    good = s.jira_headers(body)
    right = good["X-Hub-Signature"]
    forged_key = f"forged-jira-{uuid.uuid4().hex}"
    sha1 = "sha1=" + hmac.new(s.jira.encode(), body, hashlib.sha1).hexdigest()

    def sig(name: str, value: str) -> Attempt:
        return Attempt(f"jira {name}", "jira", {**good, "X-Hub-Signature": value}, (value,) if value else ())

    without = dict(good)
    del without["X-Hub-Signature"]
    return [
        Attempt("jira no signature", "jira", without),
        sig("empty", ""),
        sig("prefix only", "sha256="),
        sig("correct prefix", right[: len(right) // 2]),
        sig("all but the last digit", right[:-1]),
        sig("one digit more", right + "0"),
        sig("forged key", jira_signature(forged_key, body)),
        sig("the GitLab secret as key", jira_signature(s.gitlab, body)),
        sig("over another body", jira_signature(s.jira, body + b" ")),
        sig("sha1 of the right key", sha1),
        sig("the plain secret", s.jira),
    ]


@pytest.mark.timeout(90)
def test_forged_missing_and_prefix_credentials_are_401_and_leave_no_trace(
    stack_factory: Callable[[str], Stack], pg_url: str
) -> None:
    stack = stack_factory(pg_url)
    server = stack.serve()
    s = stack.secrets
    note = fixture("gitlab/note_mr_comment.json")
    note["object_attributes"]["note"] = "/approve"
    label = label_added()
    attempts = _gitlab_attempts(s, note, encode(note)) + _jira_attempts(s, encode(label))
    answers: list[str] = []
    wrong: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for attempt in attempts:
            body = encode(note if attempt.source == "gitlab" else label)
            answer = http.post(f"/webhooks/{attempt.source}", content=body, headers=attempt.headers)
            answers.append(answer.text)
            if answer.status_code != 401 or list(answer.json()) != ["error"]:
                wrong.append(f"{attempt.name}: {answer.status_code} {answer.text[:120]}")
            for credential in (*attempt.presented, *s.canaries()):
                if credential and credential in answer.text:
                    wrong.append(f"{attempt.name}: the answer echoes a credential")
    assert not wrong, "\n".join(wrong)

    assert count_rows(stack.db_url) == {t.name: 0 for t in TABLES}, "a refused delivery was stored"
    with stack.redis.client() as redis:
        assert redis.dbsize() == 0, f"a refused delivery reached Redis: {redis.keys()}"
    presented = {value for attempt in attempts for value in attempt.presented if len(value) >= 8}
    logs = server.process.logs()
    assert logs.count("delivery rejected") == len(attempts)
    assert [value for value in presented if value in logs] == [], "a presented credential was logged"

    # The same server accepts the genuine deliveries, by token, by signature alone, and from Jira.
    with httpx.Client(base_url=server.url, timeout=10) as http:
        by_token = http.post("/webhooks/gitlab", content=encode(note), headers=s.gitlab_token(note))
        push = fixture("gitlab/push.json")
        by_signature = http.post(
            "/webhooks/gitlab", content=encode(push), headers=s.gitlab_signed(push, encode(push))
        )
        jira = http.post("/webhooks/jira", content=encode(label), headers=s.jira_headers(encode(label)))
    assert (by_token.status_code, by_signature.status_code, jira.status_code) == (202, 200, 202)
    assert "ignored" in by_signature.json()
    assert sorted(run["kind"] for run in stack.runs()) == ["approve", "implement"]
    stack.settle_and_check(*presented, extra_texts=answers)


# --- 2. replays: the same delivery key, or the same origin under a new key ----------------------


def _comment_pair() -> tuple[dict[str, Any], dict[str, Any]]:
    """One new Jira comment as Jira sends it twice: `comment_created` and `issue_updated/issue_commented`."""
    created = fixture("jira/comment_created_cloud.json")
    created["comment"]["body"] = "/approve"
    commented = fixture("jira/issue_updated_commented_dc.json")
    commented["comment"]["id"], commented["comment"]["body"] = created["comment"]["id"], "/approve"
    commented["issue"]["key"], commented["issue"]["id"] = created["issue"]["key"], created["issue"]["id"]
    return created, commented


@pytest.mark.timeout(120)
def test_replays_by_delivery_key_or_by_origin_start_one_run_even_after_it_settled(
    stack_factory: Callable[[str], Stack], db_url: str
) -> None:
    stack = stack_factory(db_url)
    server = stack.serve()
    s = stack.secrets
    label = label_added()
    created, commented = _comment_pair()
    note = fixture("gitlab/note_mr_comment.json")
    note["object_attributes"]["note"] = "/approve"
    jira_key, gitlab_key = str(uuid.uuid4()), str(uuid.uuid4())

    def deliveries() -> list[tuple[str, bytes, Headers]]:
        """Each origin: once under a fixed key (a retry), once under a fresh key (a new delivery)."""
        out = []
        for index, payload in enumerate((label, created, commented)):
            body = encode(payload)
            out.append(("jira", body, s.jira_headers(body, key=f"{jira_key}-{index}")))
            out.append(("jira", body, s.jira_headers(body)))
        out.append(("gitlab", encode(note), s.gitlab_token(note, key=gitlab_key)))
        out.append(("gitlab", encode(note), s.gitlab_token(note)))  # new Idempotency-Key and Event-UUID
        out.append(("gitlab", encode(note), s.gitlab_signed(note, encode(note), msg_id=gitlab_key)))
        return out

    def send_all() -> list[httpx.Response]:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            return [http.post(f"/webhooks/{src}", content=body, headers=h) for src, body, h in deliveries()]

    first = send_all()
    assert [r.status_code for r in first] == [202, 200, 202, 200, 200, 200, 202, 200, 200]
    label_run, comment_run, note_run = (first[i].json()["run"] for i in (0, 2, 6))
    expected = [label_run] * 2 + [comment_run] * 4 + [note_run] * 3
    assert [r.json()["run"] for r in first] == expected
    assert all(r.json()["duplicate"] for r in first if r.status_code == 200)
    runs = set(expected)
    assert len(runs) == 3
    assert count_rows(stack.db_url)["deliveries"] == 8  # a retried key is not stored twice; a new key is
    stack.worker()
    check(stack.world(), settle_timeout_s=45)  # all three runs finished (failed: no GitLab/Jira here)

    again = send_all()  # the same deliveries after their runs settled, and a new copy of each
    assert {r.status_code for r in again} == {200}
    assert [r.json()["run"] for r in again] == expected
    assert count_rows(stack.db_url)["deliveries"] == 12  # the four fresh keys only
    listed = stack.runs()
    assert sorted((run["kind"], run["id"] in runs) for run in listed) == [
        ("approve", True),
        ("approve", True),
        ("implement", True),
    ]
    check(stack.world(), settle_timeout_s=45)


# --- 3. fifty concurrent duplicates spread over two server processes ----------------------------


async def _burst(urls: list[str], body: bytes, headers: list[Headers]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as http:
        return await asyncio.gather(
            *(http.post(urls[i % len(urls)], content=body, headers=h) for i, h in enumerate(headers))
        )


@pytest.mark.timeout(120)
def test_fifty_concurrent_duplicates_over_two_servers_make_exactly_one_run(
    stack_factory: Callable[[str], Stack], db_url: str
) -> None:
    stack = stack_factory(db_url)
    servers = [stack.serve(), stack.serve()]
    label = label_added()
    body = encode(label)
    retried = stack.secrets.jira_headers(body)  # 25 retries of one delivery (one key) ...
    headers = [retried if i % 2 else stack.secrets.jira_headers(body) for i in range(50)]  # ... 25 new keys
    answers = asyncio.run(_burst([f"{srv.url}/webhooks/jira" for srv in servers], body, headers))

    codes = [a.status_code for a in answers]
    assert codes.count(202) == 1 and codes.count(200) == 49, codes
    assert len({a.json()["run"] for a in answers}) == 1
    assert all(
        a.json() == {"duplicate": True, "run": answers[codes.index(202)].json()["run"]}
        for a in answers
        if a.status_code == 200
    )
    assert len(stack.runs()) == 1
    rows = count_rows(stack.db_url)
    assert (rows["runs"], rows["deliveries"]) == (1, 26)  # one per delivery key: 25 new + the retried one
    with stack.redis.client() as redis:
        assert redis.zcard("arq:queue") == 1
    stack.settle_and_check()
