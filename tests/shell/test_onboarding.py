"""`baton doctor` and `baton hooks install` against the running sandbox (real clients, real servers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.stack import SandboxPorts, SandboxStack, baton_environment
from bot.store.effects import StoreEffectLedger
from config.settings import Settings, load_settings
from shell.onboarding import doctor, install_gitlab_hooks, jira_webhook_instructions
from shell.services import Services
from tests.support.servers import RedisServer


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[SandboxStack, dict[str, Any]]]:
    sandbox = SandboxStack(tmp_path / "state", "http://127.0.0.1:8080", SandboxPorts.from_base(0))
    config = sandbox.start()
    yield sandbox, config
    sandbox.stop()


def settings_for(services: Services, config: dict[str, Any], **extra: str) -> Settings:
    environ = {
        **baton_environment(config),
        "BATON_DATABASE_URL": services.settings.database_url,
        "BATON_REDIS_URL": services.settings.redis_url or "",
        **extra,
    }
    return load_settings(environ)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_doctor_passes_on_a_healthy_sandbox(
    services: Services, stack: tuple[SandboxStack, dict[str, Any]]
) -> None:
    settings = settings_for(services, stack[1])
    checks = await doctor(settings, StoreEffectLedger(services.sm))
    names = ["store", "redis", "agent", "sandbox", "skills", "projects", "gitlab", "jira"]
    assert [c.name for c in checks] == names
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    sandbox = next(c for c in checks if c.name == "sandbox")
    assert "bubblewrap at /" in sandbox.detail and "no network" in sandbox.detail
    gitlab = next(c for c in checks if c.name == "gitlab")
    assert "bot @baton-bot" in gitlab.detail and "demo/calculator" in gitlab.detail


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_doctor_says_what_to_fix(
    services: Services, stack: tuple[SandboxStack, dict[str, Any]], redis_server: RedisServer
) -> None:
    settings = settings_for(services, stack[1], BATON_GITLAB_TOKEN="glpat-wrong", BATON_ANTHROPIC_API_KEY="")
    redis_server.stop()
    checks = {c.name: c for c in await doctor(settings, StoreEffectLedger(services.sm))}
    assert not checks["redis"].ok and "redis-server" in checks["redis"].fix
    assert not checks["gitlab"].ok and "BATON_GITLAB_URL/TOKEN" in checks["gitlab"].fix
    assert "glpat-wrong" not in checks["gitlab"].detail
    assert checks["jira"].ok and checks["store"].ok


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ({"BATON_CONTAINMENT_BWRAP": "/nonexistent/bwrap"}, "bubblewrap) is not installed"),
        ({"BATON_ALLOW_UNCONTAINED": "1"}, "OFF: agent work runs without the OS sandbox"),
    ],
)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_doctor_fails_when_the_sandbox_is_missing_or_off(
    services: Services, stack: tuple[SandboxStack, dict[str, Any]], setting: dict[str, str], said: str
) -> None:
    settings = settings_for(services, stack[1], **setting)
    checks = {c.name: c for c in await doctor(settings, StoreEffectLedger(services.sm))}
    assert not checks["sandbox"].ok
    assert said in checks["sandbox"].detail
    assert "apt-get install bubblewrap" in checks["sandbox"].fix


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_hooks_install_registers_once(
    services: Services, stack: tuple[SandboxStack, dict[str, Any]]
) -> None:
    sandbox, config = stack
    sandbox.gitlab_state.hooks.clear()
    maintainer = config["gitlab"]["tokens"]["maintainer"]
    settings = settings_for(
        services, config, BATON_GITLAB_TOKEN=maintainer, BATON_PUBLIC_URL="https://baton.example.com"
    )
    ledger = StoreEffectLedger(services.sm)
    first = await install_gitlab_hooks(settings, ledger)
    # one hook per mapped project: demo/calculator and the four service repositories of DEMO's components
    paths = ["demo/calculator", "demo/catalog", "demo/pricing", "demo/inventory", "demo/storefront"]
    hooks = sandbox.gitlab_state.hooks
    assert sorted(first) == sorted(
        f"{path}: registered hook {hook_id} -> https://baton.example.com/webhooks/gitlab"
        for path, hook_id in zip(paths, hooks, strict=True)
    )
    again = await install_gitlab_hooks(settings, ledger)
    assert sorted(line.split(":")[0] for line in again) == sorted(paths)
    assert all(": already registered" in line for line in again)
    assert len(hooks) == len(paths)
    for hook in hooks.values():
        assert hook.token == config["gitlab"]["webhook_secret"] and hook.note_events
    text = jira_webhook_instructions(settings)
    assert "https://baton.example.com/webhooks/jira" in text
    assert config["jira"]["webhook_secret"] not in text
