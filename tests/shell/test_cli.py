"""`baton runs` and `baton show`, as a person and as a script would read them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.store import inbox, runs
from bot.triggers import TicketLabelled
from handlers.actions import Enqueue
from shell.cli import app
from shell.services import Services

runner = CliRunner()


def env_for(services: Services) -> dict[str, str]:
    settings = services.settings
    return {
        "BATON_DATABASE_URL": settings.database_url,
        "BATON_SANDBOX": "1",
        "BATON_REDIS_URL": "redis://127.0.0.1:1",
    }


async def seed(services: Services, n: int) -> list[str]:
    ids = []
    for i in range(n):
        action = Enqueue(
            kind="implement",
            subject=f"jira:DEMO-{i}",
            origin=f"o-{i}",
            input=TicketLabelled(issue_key=f"DEMO-{i}", issue_id=str(i)),
        )
        recorded = await inbox.record(
            services.sm, inbox.Incoming("jira", f"k{i}", "jira:issue_updated", {}), action
        )
        assert recorded.run_id
        ids.append(recorded.run_id)
    return ids


@pytest.fixture
async def three(services: Services) -> list[str]:
    return await seed(services, 3)


@pytest.fixture
async def claimed(services: Services) -> str:
    (run_id,) = await seed(services, 1)
    await runs.claim(services.sm, run_id, "worker-a")
    return run_id


def test_runs_json_lists_every_field(services: Services, three: list[str]) -> None:
    ids = three
    result = runner.invoke(app, ["runs", "--json"], env=env_for(services))
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert sorted(r["id"] for r in listed) == sorted(ids)
    assert set(listed[0]) == {"id", "kind", "subject", "status", "created", "updated"}


def test_runs_table_and_status_filter(services: Services, three: list[str]) -> None:
    table = runner.invoke(app, ["runs"], env=env_for(services))
    assert table.exit_code == 0 and "jira:DEMO-1" in table.stdout and "queued" in table.stdout
    none = runner.invoke(app, ["runs", "--status", "succeeded"], env=env_for(services))
    assert "no runs yet" in none.stdout


def test_show_by_prefix_with_activity(services: Services, claimed: str) -> None:
    run_id = claimed
    result = runner.invoke(app, ["show", run_id[:6], "--json"], env=env_for(services))
    assert result.exit_code == 0, result.output
    detail = json.loads(result.stdout)
    assert detail["id"] == run_id and detail["status"] == "running" and detail["attempts"] == 1
    assert [a["action"] for a in detail["activity"]] == ["received", "claimed"]
    human = runner.invoke(app, ["show", run_id], env={**env_for(services), "COLUMNS": "200"})
    assert "picked up by worker worker-a" in human.stdout and "no phases recorded" in human.stdout
    assert "[running]" in human.stdout  # data is never read as rich markup


@pytest.mark.parametrize("ref", ["zz", "nothere0", "--version", "'; drop table runs; --"])
def test_show_unknown_or_hostile_ref_fails_cleanly(services: Services, claimed: str, ref: str) -> None:
    result = runner.invoke(app, ["show", "--", ref], env=env_for(services))
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_unmigrated_store_says_what_to_do(tmp_path: Path) -> None:
    env = {"BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}", "BATON_SANDBOX": "1"}
    result = runner.invoke(app, ["runs"], env=env)
    assert result.exit_code == 2 and "baton migrate" in result.output


def test_bad_configuration_names_the_variable(tmp_path: Path) -> None:
    result = runner.invoke(app, ["runs"], env={"BATON_DATABASE_URL": "mysql://x/y"})
    assert result.exit_code == 2 and "BATON_DATABASE_URL" in result.output


@pytest.fixture
async def failed_at_validate(services: Services) -> str:
    from sqlalchemy import update

    from bot.store import status
    from bot.store.tables import Phase
    from orchestrators.engine import prepare
    from orchestrators.implement import WORKFLOW

    (run_id,) = await seed(services, 1)
    await runs.claim(services.sm, run_id, "worker-a")
    await prepare(services.sm, WORKFLOW, run_id)
    async with services.sm.begin() as session:
        done = ("triage", "assemble", "implement")
        await session.execute(
            update(Phase).where(Phase.run_id == run_id, Phase.name.in_(done)).values(status="done")
        )
        await session.execute(
            update(Phase).where(Phase.run_id == run_id, Phase.name == "validate").values(status="failed")
        )
    await runs.finish(services.sm, run_id, status.FAILED, "worker-a", "validate failed")
    return run_id


def test_retry_requeues_a_failed_run_from_its_failed_phase(
    services: Services, failed_at_validate: str
) -> None:
    env = {**env_for(services), "BATON_REDIS_URL": services.settings.redis_url or ""}
    result = runner.invoke(app, ["retry", failed_at_validate[:8]], env=env)
    assert result.exit_code == 0, result.output
    assert "queued again from validate" in result.stdout
    again = runner.invoke(app, ["retry", failed_at_validate], env=env)
    assert again.exit_code == 1 and "only a stopped run can be retried" in again.output
    detail = json.loads(runner.invoke(app, ["show", failed_at_validate, "--json"], env=env).stdout)
    assert detail["status"] == "queued"
    assert [p["status"] for p in detail["phases"]] == [
        "done",
        "done",
        "done",
        "pending",
        "pending",
        "pending",
    ]


@pytest.fixture
async def timed(services: Services, claimed: str) -> str:
    """A run whose phases stored their mechanical steps (and some that are not well formed)."""
    from datetime import timedelta

    from bot.store.engine import utcnow
    from bot.store.tables import Phase

    start = utcnow()
    stored = {
        "assemble": {"mechanics_ms": {"brief": 40, "fetch": 120, "workspace": 310}},
        "propose": {"mechanics_ms": {"post": 90, "commit": 55, "odd": "x", "neg": -1, "flag": True}},
        "implement": {"agent_ms": 2500, "mechanics_ms": "not a mapping"},
    }
    async with services.sm.begin() as session:
        for position, (name, output) in enumerate(stored.items()):
            session.add(
                Phase(run_id=claimed, name=name, position=position, status="done", attempts=1, output=output,
                      started_at=start, finished_at=start + timedelta(seconds=1))
            )  # fmt: skip
    return claimed


def test_show_prints_the_mechanical_time_of_each_phase(services: Services, timed: str) -> None:
    result = runner.invoke(app, ["show", timed, "--json"], env=env_for(services))
    phases = {p["name"]: p for p in json.loads(result.stdout)["phases"]}
    assert phases["assemble"]["mechanics_s"] == {"fetch": 0.12, "workspace": 0.31, "brief": 0.04}
    assert list(phases["propose"]["mechanics_s"]) == ["commit", "post"]  # malformed steps left out
    assert phases["implement"]["mechanics_s"] == {} and phases["implement"]["agent_s"] == 2.5
    human = runner.invoke(app, ["show", timed], env={**env_for(services), "COLUMNS": "250"})
    assert "fetch 0.12 · workspace 0.31 · brief 0.04" in human.stdout
    assert "commit 0.06 · post 0.09" in human.stdout and "2.50s" in human.stdout
