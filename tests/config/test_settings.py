"""Settings: URL mapping, defaults, and start-up refusal that names variables, never values."""

from __future__ import annotations

import pytest

from config.settings import SettingsError, async_database_url, load_settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x/baton.db", "sqlite+aiosqlite:///x/baton.db"),
        ("sqlite+aiosqlite:///b.db", "sqlite+aiosqlite:///b.db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("POSTGRESQL://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_urls_map_to_async_drivers(url: str, expected: str) -> None:
    assert async_database_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite", "", "://", "file:///etc/passwd", "postgresql:/x"])
def test_unsupported_database_urls_are_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="BATON_DATABASE_URL"):
        async_database_url(url)


def test_defaults_are_embedded_and_sandboxed() -> None:
    settings = load_settings({})
    assert settings.sandbox_mode
    assert (settings.host, settings.port, settings.max_body_bytes) == ("127.0.0.1", 8080, 5 * 1024 * 1024)
    assert settings.async_database_url == "sqlite+aiosqlite:///.baton/baton.db"
    assert settings.redis_url is None


def test_only_baton_variables_are_read() -> None:
    settings = load_settings({"PORT": "1", "BATON_PORT": "9000", "GITLAB_TOKEN": "x"})
    assert settings.port == 9000 and settings.gitlab_token is None


@pytest.mark.parametrize("value", ["", "changeme", "CHANGETHIS", "  secret ", "<your token>"])
def test_placeholder_secret_fails_naming_the_variable_not_the_value(value: str) -> None:
    environ = {
        "BATON_GITLAB_URL": "https://gitlab.example.com",
        "BATON_GITLAB_TOKEN": "glpat-real-looking-token-123",
        "BATON_GITLAB_WEBHOOK_SECRET": value,
    }
    with pytest.raises(SettingsError) as info:
        load_settings(environ)
    assert "BATON_GITLAB_WEBHOOK_SECRET" in str(info.value)
    assert "glpat-real-looking-token-123" not in str(info.value)


def test_missing_jira_secrets_are_all_named() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"BATON_JIRA_URL": "https://jira.example.com"})
    assert "BATON_JIRA_TOKEN" in str(info.value) and "BATON_JIRA_WEBHOOK_SECRET" in str(info.value)


def test_sandbox_mode_allows_missing_secrets() -> None:
    assert load_settings({"BATON_SANDBOX": "1", "BATON_GITLAB_URL": "http://127.0.0.1:1"}).sandbox_mode


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BATON_PORT", "99999"),
        ("BATON_PORT", "http"),
        ("BATON_MAX_BODY_BYTES", "0"),
        ("BATON_WORKSPACE_POOL", "-1"),
        ("BATON_WORKSPACE_POOL", "65"),
        ("BATON_WORKSPACE_POOL", "two"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_secrets_do_not_appear_in_repr() -> None:
    settings = load_settings({"BATON_SANDBOX": "1", "BATON_JIRA_TOKEN": "very-secret-jira-token"})
    assert "very-secret-jira-token" not in repr(settings)
    assert settings.secrets() == ["very-secret-jira-token"]
