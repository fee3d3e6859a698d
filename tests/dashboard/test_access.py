"""Who may see the dashboard: off by default, a token compared in constant time, a signed session cookie
(HttpOnly, SameSite=Strict, Secure over https), safe redirects, and nothing of the token echoed."""

from __future__ import annotations

import hmac
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from config.settings import SettingsError, load_settings
from shell.app import create_app
from shell.dashboard import access
from shell.services import Services
from tests.conftest import make_settings
from tests.dashboard.conftest import TOKEN, client_for, dashboard_settings

SECRET = SecretStr(TOKEN)


def test_the_dashboard_is_off_unless_asked_for(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", "redis://127.0.0.1:9/0")
    assert settings.dashboard is None
    paths = {getattr(route, "path", "") for route in create_app(settings).routes}
    assert "/dashboard" not in paths
    off = make_settings(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", "redis://127.0.0.1:9/0", dashboard="off")
    assert "/dashboard" not in {getattr(route, "path", "") for route in create_app(off).routes}


async def test_off_means_not_there(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", "redis://127.0.0.1:9/0")
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://baton.test") as http:
        for path in ("/dashboard/", f"/dashboard/?token={TOKEN}", "/dashboard/login", "/dashboard/costs"):
            assert (await http.get(path)).status_code == 404


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"BATON_DASHBOARD": "token"}, "BATON_DASHBOARD_TOKEN"),
        ({"BATON_DASHBOARD": "token", "BATON_DASHBOARD_TOKEN": "changeme"}, "placeholder"),
        ({"BATON_DASHBOARD": "token", "BATON_DASHBOARD_TOKEN": "<token>"}, "placeholder"),
        ({"BATON_DASHBOARD": "token", "BATON_DASHBOARD_TOKEN": "short-one"}, "16 characters"),
        ({"BATON_DASHBOARD": "on"}, "BATON_DASHBOARD"),
        ({"BATON_DASHBOARD": "TOKEN", "BATON_DASHBOARD_TOKEN": TOKEN}, "BATON_DASHBOARD"),
    ],
)
def test_start_up_refuses_a_dashboard_without_a_usable_token(environ: dict[str, str], problem: str) -> None:
    """Sandbox or not: a dashboard on a weak token is never served. The message names, never shows."""
    with pytest.raises(SettingsError) as refused:
        load_settings({"BATON_SANDBOX": "1", **environ})
    assert problem in str(refused.value)
    assert "short-one" not in str(refused.value) and "changeme" not in str(refused.value)


def test_the_token_check_and_the_session_check_go_through_constant_time_comparisons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With `==` in their place nothing is recorded and this fails."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)  # the module shell.dashboard.access calls through
    assert access.token_matches(SECRET, TOKEN) and not access.token_matches(SECRET, "nope")
    assert seen == [(TOKEN.encode(), TOKEN.encode()), (TOKEN.encode(), b"nope")]
    seen.clear()
    session = access.issue(SECRET)
    assert access.valid_session(SECRET, session) and len(seen) == 1


def test_sessions_are_signed_with_the_token_and_expire() -> None:
    now = time.time()
    session = access.issue(SECRET, now)
    assert access.valid_session(SECRET, session, now + access.SESSION_S - 1)
    assert not access.valid_session(SECRET, session, now + access.SESSION_S + 1)  # expired
    assert not access.valid_session(SecretStr(TOKEN + "-rotated"), session, now)  # the token changed
    version, expiry, signature = session.split(".")
    forged = [
        f"{version}.{int(expiry) + 10**6}.{signature}",  # a later expiry, the old signature
        f"{version}.{expiry}.{'0' * len(signature)}",
        f"v2.{expiry}.{signature}",
        f"{version}.{expiry}",
        f"{version}.-1.{signature}",
        f"{version}.{expiry}.{signature}.extra",
        "",
        "v1." + "9" * 300,
        TOKEN,
    ]
    assert not any(access.valid_session(SECRET, value, now) for value in forged)
    assert not access.valid_session(SECRET, None, now)


@pytest.mark.parametrize(
    ("body", "token"),
    [
        (f"token={TOKEN}".encode(), TOKEN),
        (f"token=%20{TOKEN}%20".encode(), TOKEN),
        (b"token=", ""),
        (b"", ""),
        (b"\xff\xfe", ""),
        (b"token=" + b"a" * 5000, ""),  # over the form cap
        (b"a=1&b=2&c=3&d=4&e=5&token=x", ""),  # too many fields
        (b"token=a&token=b", "a"),
    ],
)
def test_the_login_form_is_read_within_bounds(body: bytes, token: str) -> None:
    assert access.form_token(body) == token


async def test_without_a_session_every_page_sends_you_to_sign_in(services: Services) -> None:
    async with client_for(services) as http:
        for path in (
            "/dashboard/",
            "/dashboard/runs/abc",
            "/dashboard/proposals",
            "/dashboard/stopped",
            "/dashboard/costs?days=7",
        ):
            answer = await http.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/dashboard/login?next=")
        login = await http.get("/dashboard/login?next=/dashboard/costs%3Fdays%3D7")
        assert login.status_code == 200 and 'type="password"' in login.text and TOKEN not in login.text
        assert (
            await http.get("/dashboard/static/dashboard.css")
        ).status_code == 200  # the sign-in page's looks


async def test_the_token_exchange_sets_a_strict_http_only_cookie_and_drops_the_token(
    services: Services,
) -> None:
    async with client_for(services) as http:
        answer = await http.get(f"/dashboard/?status=waiting&token={TOKEN}&kind=implement")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard/?status=waiting&kind=implement"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
        assert "secure" not in cookie  # plain http (localhost): a Secure cookie would never come back
        assert TOKEN not in answer.headers["set-cookie"] and TOKEN not in answer.text
        http.cookies.set(access.COOKIE, answer.cookies[access.COOKIE], path="/dashboard")
        page = await http.get(answer.headers["location"])
        assert page.status_code == 200 and TOKEN not in page.text


@pytest.mark.parametrize("base", ["https://baton.test"])
async def test_over_https_the_cookie_is_secure(services: Services, base: str) -> None:
    async with client_for(services, base) as http:
        answer = await http.get(f"/dashboard/?token={TOKEN}")
        assert "secure" in answer.headers["set-cookie"].lower()


async def test_a_public_https_url_makes_the_cookie_secure_behind_a_tls_proxy(tmp_path: Path) -> None:
    settings = dashboard_settings(
        tmp_path, f"sqlite:///{tmp_path / 'x.db'}", public_url="https://baton.acme.io"
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.post("/dashboard/login", content=f"token={TOKEN}".encode())
        assert answer.status_code == 303 and "secure" in answer.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    "given",
    [
        "",
        "wrong",
        TOKEN[:-1],
        TOKEN + "x",
        TOKEN.upper(),
        f" {TOKEN}x",
        "<script>alert(1)</script>",
        "\u0660" * 36,
    ],
)
async def test_a_wrong_token_is_401_and_never_echoed(services: Services, given: str) -> None:
    async with client_for(services) as http:
        by_link = await http.get("/dashboard/", params={"token": given})
        by_form = await http.post("/dashboard/login", content=f"token={given}".encode())
        for answer in (by_link, by_form):
            assert answer.status_code == 401 and "set-cookie" not in answer.headers
            assert "not the dashboard token" in answer.text
            assert TOKEN not in answer.text and (not given or given not in answer.text)


async def test_signing_in_with_the_form_returns_to_the_page_asked_for(services: Services) -> None:
    async with client_for(services) as http:
        answer = await http.post(
            "/dashboard/login?next=/dashboard/costs%3Fdays%3D90", content=f"token={TOKEN}".encode()
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/costs?days=90"
        http.cookies.set(access.COOKIE, answer.cookies[access.COOKIE], path="/dashboard")
        assert (await http.get("/dashboard/costs?days=90")).status_code == 200
        out = await http.post("/dashboard/logout")
        assert out.status_code == 303 and 'baton_dashboard=""' in out.headers["set-cookie"]


@pytest.mark.parametrize(
    "wanted",
    [
        "https://evil.example/",
        "//evil.example/dashboard/",
        "/dashboard//evil.example",
        "/dashboard/\\evil",
        "/elsewhere",
        "/dashboard",
        "javascript:alert(1)",
        "/dashboard/\r\nSet-Cookie: x=1",
    ],
)
async def test_after_signing_in_you_only_land_on_a_dashboard_page(services: Services, wanted: str) -> None:
    async with client_for(services) as http:
        answer = await http.post(
            "/dashboard/login", params={"next": wanted}, content=f"token={TOKEN}".encode()
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/"


async def test_a_forged_or_expired_cookie_is_no_session(services: Services) -> None:
    async with client_for(services) as http:
        old = access.issue(SECRET, time.time() - access.SESSION_S - 5)
        for value in (old, "v1.9999999999." + "0" * 64, access.issue(SecretStr("another-token-0123456789"))):
            http.cookies.set(access.COOKIE, value, path="/dashboard")
            assert (await http.get("/dashboard/")).status_code == 303


async def test_every_dashboard_answer_carries_the_security_headers(signed_in: httpx.AsyncClient) -> None:
    for path in (
        "/dashboard/",
        "/dashboard/proposals",
        "/dashboard/stopped",
        "/dashboard/costs",
        "/dashboard/login",
    ):
        answer = await signed_in.get(path)
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert (
            answer.headers["referrer-policy"] == "no-referrer"
            and answer.headers["cache-control"] == "no-store"
        )
