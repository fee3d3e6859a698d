"""`baton up` says where the dashboard is: in sandbox mode it turns it on with a token of its own and
prints a link that signs in; configured, it prints the URL; otherwise it says it is off."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import pytest
from rich.console import Console

from config.settings import load_settings
from shell.dashboard.access import token_matches
from shell.up import _banner, dashboard_access

REAL = {"BATON_GITLAB_URL": "https://gitlab.acme.io", "BATON_GITLAB_TOKEN": "t" * 20,
        "BATON_GITLAB_WEBHOOK_SECRET": "s" * 20}  # fmt: skip


def printed(environ: dict[str, str]) -> tuple[dict[str, str], str]:
    settings = load_settings(environ, check=False)
    extra, url = dashboard_access(settings)
    out = io.StringIO()
    _banner(Console(file=out, width=300), settings, url)
    return extra, out.getvalue()


def test_sandbox_mode_turns_the_dashboard_on_with_a_fresh_token_and_a_link_that_signs_in() -> None:
    extra, out = printed({"BATON_PORT": "8090"})
    assert extra["BATON_DASHBOARD"] == "token" and len(extra["BATON_DASHBOARD_TOKEN"]) >= 32
    line = next(line for line in out.splitlines() if "dashboard" in line)
    url = urlsplit(line.split()[-1])
    assert (url.scheme, url.netloc, url.path) == ("http", "127.0.0.1:8090", "/dashboard/")
    token = parse_qs(url.query)["token"][0]
    assert token == extra["BATON_DASHBOARD_TOKEN"]
    settings = load_settings({"BATON_SANDBOX": "1", **extra})  # what the children get starts cleanly
    assert settings.dashboard_token is not None and token_matches(settings.dashboard_token, token)
    assert printed({})[0]["BATON_DASHBOARD_TOKEN"] != token  # a new one every start


def test_a_token_of_ones_own_is_kept_and_not_printed() -> None:
    own = "my-own-dashboard-token-0123"
    extra, out = printed({"BATON_DASHBOARD_TOKEN": own})
    assert extra == {"BATON_DASHBOARD": "token"} and own not in out and "/dashboard/" in out


@pytest.mark.parametrize(
    ("environ", "shown"),
    [
        (
            {**REAL, "BATON_DASHBOARD": "token", "BATON_DASHBOARD_TOKEN": "x" * 20},
            "http://127.0.0.1:8080/dashboard/",
        ),
        (REAL, "dashboard  off"),
        ({"BATON_DASHBOARD": "off"}, "dashboard  off"),
    ],
)
def test_outside_the_sandbox_the_url_without_a_token_or_off(environ: dict[str, str], shown: str) -> None:
    extra, out = printed(environ)
    assert extra == {} and shown in out and "token=" not in out
