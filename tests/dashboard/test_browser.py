"""The dashboard in a real browser: Debian's headless Chromium, driven by Selenium, against Baton's real
`serve` and `worker` processes and the sandbox — what a person sees while a ticket moves through its
phases, and hostile text that stays text. Screenshots go under each test's temp dir."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from bot.effects import find_jira_marker
from bot.store.engine import create_engine, sessionmaker
from config.settings import async_database_url
from tests.dashboard.conftest import TOKEN
from tests.dashboard.seed import HOSTILE, PHASES, Batch, command_run, ticket_run
from tests.support.processes import BatonProcess, baton_env, cli
from tests.support.sandbox import Running, running_sandbox
from tests.support.servers import free_port

T = TypeVar("T")
LIFECYCLE = Path(__file__).resolve().parent.parent / "fixtures" / "demo" / "lifecycle.yaml"
TITLE_PROBE = (
    "Add multiply <img src=x onerror=\"window.__baton_xss='title';document.title='pwned'\"> "
    "<script>window.__baton_xss='script'</script>"
)
COMMENT_PROBE = "<img src=x onerror=\"window.__baton_xss='comment';document.title='pwned'\"> not like this"
FLAKY = (NoSuchElementException, StaleElementReferenceException)  # a meta refresh swaps the page under us


def until(
    driver: webdriver.Chrome, probe: Callable[[webdriver.Chrome], T | None], timeout_s: float, what: str
) -> T:
    found = WebDriverWait(driver, timeout_s, poll_frequency=0.25, ignored_exceptions=FLAKY).until(
        probe, f"waited {timeout_s:g} s for {what}"
    )
    assert found is not None  # WebDriverWait returns the first truthy answer or raises
    return found


def phase_states(driver: webdriver.Chrome) -> tuple[tuple[str, str], ...]:
    """The run page's checklist as a person reads it: (phase, status) per row, read in one go (the page
    refreshes itself, so element by element could straddle two documents)."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('table.phases tbody tr'))"
        ".map(row => [row.cells[1].innerText, row.cells[2].innerText]);"
    )
    return tuple((str(name), str(state)) for name, state in rows or ())


def heading(driver: webdriver.Chrome) -> str:
    return str(driver.execute_script("const h = document.querySelector('h1'); return h ? h.innerText : '';"))


def not_executed(driver: webdriver.Chrome) -> None:
    """No probe ran: no flag set, the title is ours, no image element made of the text."""
    assert driver.execute_script("return window.__baton_xss === undefined") is True
    assert "pwned" not in driver.title and driver.title.endswith("· Baton")
    assert (
        driver.find_elements(By.CSS_SELECTOR, "img") == []
        and driver.find_elements(By.CSS_SELECTOR, "main script") == []
    )


def shoot(driver: webdriver.Chrome, path: Path) -> None:
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, path  # a real picture of a page, not an empty one


def scenario(tmp_path: Path) -> Path:
    """The lifecycle scenario with a hostile ticket title, and an implementer slow enough to watch."""
    data = yaml.safe_load(LIFECYCLE.read_text())
    data["ticket"]["summary"] = TITLE_PROBE
    implement = next(s for s in data["model"]["scripts"] if s["match"] == "[baton:implement] DEMO-1")
    implement["delay_s"] = 1.5  # each of its turns: the phase runs for several seconds
    path = tmp_path / "dashboard-lifecycle.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Running]:
    db = f"sqlite:///{tmp_path / 'baton.db'}"
    with running_sandbox(
        tmp_path, db, scenario(tmp_path), dashboard="token", dashboard_token=TOKEN
    ) as running:
        yield running


def proposal_comment_id(sandbox: Running) -> str:
    for comment in sandbox.stack.jira_state.issue("DEMO-1").comments:
        if ":proposal:" in (find_jira_marker(comment.body) or ""):
            return comment.id
    raise AssertionError("no proposal comment on DEMO-1")


def sign_in(driver: webdriver.Chrome, base: str) -> None:
    driver.get(f"{base}/dashboard/?token={TOKEN}")
    assert driver.current_url == f"{base}/dashboard/"  # the token is gone from the address bar
    (cookie,) = driver.get_cookies()
    assert (
        cookie["name"] == "baton_dashboard" and cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    )
    assert cookie["secure"] is False  # plain http on localhost; over https it is Secure
    assert driver.execute_script("return document.cookie") == ""  # HttpOnly: no script can read it


def test_a_person_watches_a_ticket_move_through_its_phases(
    sandbox: Running, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{sandbox.port}"
    sign_in(browser, base)
    sandbox.label("dan", "DEMO-1")

    def implement_run_link(driver: webdriver.Chrome) -> str | None:
        driver.get(f"{base}/dashboard/?kind=implement")
        links = driver.find_elements(By.CSS_SELECTOR, "table.runs tbody a[href*='/dashboard/runs/']")
        return links[0].get_attribute("href") if links else None

    run_url = until(browser, implement_run_link, 60, "the run in the runs list")
    row = browser.find_element(By.CSS_SELECTOR, "table.runs tbody tr")
    assert "DEMO-1" in row.text and "<img src=x onerror=" in row.text  # the title, as text
    not_executed(browser)
    browser.get(run_url)  # from here on the page refreshes itself; the test only reads it

    seen: list[tuple[tuple[str, str], ...]] = []

    def implement_running(driver: webdriver.Chrome) -> bool:
        states = phase_states(driver)
        if states and (not seen or seen[-1] != states):
            seen.append(states)
        return dict(states).get("implement") == "running"

    until(browser, implement_running, 90, "the checklist to show implement running")
    running = dict(seen[-1])
    assert running["triage"] == "done" and running["assemble"] == "done" and running["propose"] == "pending"
    shoot(browser, tmp_path / "dashboard-run-implementing.png")
    assert browser.find_element(By.CSS_SELECTOR, "meta[http-equiv='refresh']").get_attribute("content") == "2"

    def all_done(driver: webdriver.Chrome) -> bool:
        states = phase_states(driver)
        if states and seen[-1] != states:
            seen.append(states)
        return (
            bool(states) and all(state == "done" for _name, state in states) and "waiting" in heading(driver)
        )

    until(browser, all_done, 120, "every phase done and the run waiting")
    assert len(seen) >= 2 and tuple(name for name, _ in seen[-1]) == PHASES  # the workflow's, in order
    cost = browser.find_element(By.ID, "cost").text
    assert re.fullmatch(r"\$\d+\.\d{4}", cost) and float(cost[1:]) > 0, cost
    assert int(browser.find_element(By.ID, "tokens").text.split(" / ")[0].replace(",", "")) > 0
    standing = browser.find_element(By.ID, "standing").text
    assert "Waiting for approval" in standing and "/approve" in standing
    comment = proposal_comment_id(sandbox)
    reply = browser.find_element(By.LINK_TEXT, "the proposal comment").get_attribute("href") or ""
    assert reply.endswith(f"/browse/DEMO-1?focusedCommentId={comment}#comment-{comment}")
    assert TITLE_PROBE in browser.find_element(By.CSS_SELECTOR, "p.lead .title").text
    assert browser.find_elements(By.CSS_SELECTOR, "meta[http-equiv='refresh']") == []  # nothing moves now
    not_executed(browser)
    shoot(browser, tmp_path / "dashboard-run-waiting.png")

    browser.find_element(By.PARTIAL_LINK_TEXT, "Awaiting approval").click()
    waiting = browser.find_element(By.CSS_SELECTOR, "table.waiting tbody tr")
    assert "jira:DEMO-1" in waiting.text and "/approve" in waiting.text and "<script>" in waiting.text
    assert re.match(r"(\d+\.\d s|\d+ s|\d+ min)", waiting.find_element(By.TAG_NAME, "td").text)
    assert waiting.find_element(By.CSS_SELECTOR, "a.reply").get_attribute("href") == reply
    not_executed(browser)
    shoot(browser, tmp_path / "dashboard-awaiting-approval.png")

    browser.find_element(By.LINK_TEXT, "Cost and outcomes").click()
    total = browser.find_element(By.ID, "total-cost").text
    assert total.startswith("$") and float(total[1:].replace(",", "")) > 0
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")) >= 31
    shoot(browser, tmp_path / "dashboard-cost.png")

    sandbox.as_person("alice", "DEMO-1", f"/reject {COMMENT_PROBE}")  # a hostile comment body

    def reject_run(driver: webdriver.Chrome) -> str | None:
        driver.get(f"{base}/dashboard/?kind=reject")
        cells = driver.find_elements(By.CSS_SELECTOR, "table.runs tbody td.title")
        return cells[0].text if cells else None

    assert COMMENT_PROBE in until(browser, reject_run, 60, "the /reject run in the runs list")
    not_executed(browser)

    def nothing_waits(driver: webdriver.Chrome) -> bool:
        driver.get(f"{base}/dashboard/proposals")
        return "Nothing waits for approval" in driver.find_element(By.TAG_NAME, "main").text

    until(browser, nothing_waits, 60, "the rejected proposal to leave the list")
    shoot(browser, tmp_path / "dashboard-after-reject.png")


@pytest.fixture
def seeded_server(tmp_path: Path) -> Iterator[str]:
    """`baton serve` with the dashboard on, over a store holding runs whose every text is a probe."""
    db = f"sqlite:///{tmp_path / 'baton.db'}"
    port = free_port()
    env = baton_env(
        tmp_path / "state", db, "redis://127.0.0.1:9/0", port, dashboard="token", dashboard_token=TOKEN
    )
    assert cli(env, "migrate").returncode == 0
    batch, rng, now = Batch(), random.Random(14), datetime.now(UTC)
    for i, outcome in enumerate(("proposed", "needs_info", "needs_human", "failed", "running", "shipped")):
        ticket_run(
            batch,
            rng,
            key=f"EVIL-{i}",
            outcome=outcome,
            created=now - timedelta(hours=i),
            summary="Probe",
            text=HOSTILE,
        )
    command_run(batch, rng, key="EVIL-9", kind="revise", args=HOSTILE, created=now)
    asyncio.run(write(db, batch))
    server = BatonProcess("serve", env, tmp_path / "logs")
    try:
        server.wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def write(db: str, batch: Batch) -> None:
    engine = create_engine(async_database_url(db))
    try:
        await batch.write(sessionmaker(engine))
    finally:
        await engine.dispose()


def test_hostile_text_in_every_field_stays_text_in_the_browser(
    seeded_server: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    base = seeded_server
    browser.get(f"{base}/dashboard/costs")
    assert "/dashboard/login" in browser.current_url  # not signed in yet: the login form
    field = browser.find_element(By.NAME, "token")
    field.send_keys("not-the-token")
    field.submit()
    assert "That is not the dashboard token" in browser.find_element(By.TAG_NAME, "main").text
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    assert (
        browser.current_url == f"{base}/dashboard/costs"
        and browser.find_element(By.ID, "total-runs").text == "7"
    )

    browser.get(f"{base}/dashboard/")
    run_pages = [
        a.get_attribute("href") or ""
        for a in browser.find_elements(By.CSS_SELECTOR, "table.runs tbody a[href*='/dashboard/runs/']")
    ]
    assert len(run_pages) == 7
    pages = [
        f"{base}/dashboard/",
        f"{base}/dashboard/proposals",
        f"{base}/dashboard/stopped",
        f"{base}/dashboard/costs",
        *run_pages,
    ]
    for number, url in enumerate(pages):
        browser.get(url)
        time.sleep(0.2)  # an onerror handler would have run by now
        not_executed(browser)
        if "/costs" not in url:
            assert "<img src=x onerror=" in browser.find_element(By.TAG_NAME, "main").text, url
        shoot(browser, tmp_path / f"dashboard-hostile-{number}.png")
