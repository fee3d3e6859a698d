"""The dashboard's fixtures: a migrated store (SQLite and PostgreSQL), the app with the dashboard on, and a
signed-in HTTP client; a headless Chromium (Debian's, driven by Selenium, never downloaded) for the browser
tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.engine import create_engine, sessionmaker
from bot.store.migrate import upgrade
from config.settings import Settings, async_database_url
from shell.app import create_app
from shell.services import Services
from tests.conftest import make_settings

TOKEN = "dashboard-token-for-tests-0123456789"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def dashboard_settings(tmp_path: Path, db_url: str, **extra: str) -> Settings:
    """Settings with the dashboard on (Redis is never reached by the dashboard: a closed port)."""
    values = {"dashboard": "token", "dashboard_token": TOKEN, **extra}
    return make_settings(tmp_path, db_url, "redis://127.0.0.1:9/0", **values)


@pytest.fixture
async def sm(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A migrated store (SQLite and PostgreSQL), written to without the redactor, as the seed does."""
    engine = create_engine(async_database_url(db_url))
    await upgrade(engine)
    yield sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'baton.db'}"


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    """The root conftest's `services` get these: a SQLite store, the dashboard on."""
    return dashboard_settings(tmp_path, sqlite_url)


def client_for(services: Services, base_url: str = "http://baton.test") -> httpx.AsyncClient:
    app = create_app(services.settings, services)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def signed_in(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A client that exchanged the token for a session cookie."""
    async with client_for(services) as http:
        answer = await http.get(f"/dashboard/?token={TOKEN}")
        assert answer.status_code == 303, answer.text
        http.cookies.set("baton_dashboard", answer.cookies["baton_dashboard"], path="/dashboard")
        yield http


def chromium_missing() -> str | None:
    """Why the browser cannot run here (None: it can)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver (`make deps`)"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile; fails (never skips) when Debian's packages are missing."""
    problem = chromium_missing()
    if problem is not None:
        pytest.fail(
            f"the dashboard's browser tests need Chromium: {problem}"
            + (" (CI)" if os.environ.get("CI") else "")
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
