"""Fixtures: real Redis per test, fresh PostgreSQL databases, migrated stores, app services."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from bot.store.engine import create_engine
from bot.store.migrate import upgrade
from config.settings import Settings, load_settings
from shell.services import Services, build
from shell.wiring import load_manifest
from tests.support.deliveries import GITLAB_SECRET, JIRA_SECRET
from tests.support.servers import RedisServer

PG_ADMIN_URL = os.environ.get("BATON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# The fast tier (`make test-fast`, `pytest -m "not slow"`) leaves out what starts real servers or processes.
SLOW_DIRS = ("e2e", "reliability", "agent", "sandbox", "clients", "containment", "dashboard")
SLOW_FIXTURES = frozenset({"services", "redis_server", "pg_url", "model_server", "stack", "sandbox"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark as `slow` every test under a real-server folder or using a real-server fixture."""
    tests = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(tests).parts
        fixtures = set(getattr(item, "fixturenames", ()))
        if parts[0] in SLOW_DIRS or fixtures & SLOW_FIXTURES or "postgresql" in item.name:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL.replace("postgresql://", "postgres://"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty database on the local PostgreSQL server (dropped afterwards)."""
    name = f"baton_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A plain database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'baton.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def make_settings(tmp_path: Path, db_url: str, redis_url: str, **extra: str) -> Settings:
    environ = {
        "BATON_STATE_DIR": str(tmp_path / "state"),
        "BATON_DATABASE_URL": db_url,
        "BATON_REDIS_URL": redis_url,
        "BATON_GITLAB_URL": "http://127.0.0.1:9",
        "BATON_GITLAB_TOKEN": "gitlab-api-token-for-tests",
        "BATON_GITLAB_WEBHOOK_SECRET": GITLAB_SECRET,
        "BATON_JIRA_URL": "http://127.0.0.1:9",
        "BATON_JIRA_TOKEN": "jira-api-token-for-tests",
        "BATON_JIRA_WEBHOOK_SECRET": JIRA_SECRET,
        **{f"BATON_{k.upper()}": v for k, v in extra.items()},
    }
    return load_settings(environ)


@pytest.fixture
def settings(tmp_path: Path, db_url: str, redis_server: RedisServer) -> Settings:
    return make_settings(tmp_path, db_url, redis_server.url)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    """Migrated store + real Redis queue + fresh metrics, as the app uses them."""
    engine = create_engine(settings.async_database_url)
    await upgrade(engine)
    await engine.dispose()
    built = build(settings, load_manifest(settings))
    yield built
    await built.close()
