"""The skill manifest is loaded once when Baton starts and checked against the workflow table then:
a team's manifest naming an unknown workflow stops `serve`, `worker`, `up` and fails `baton doctor`;
a team's new command naming a known workflow is parsed at ingress and run from the worker's table."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.store import inbox, runs, status
from bot.store.engine import create_engine
from bot.store.migrate import upgrade
from config.settings import Settings
from config.skills import SkillError, default_skills
from handlers import route
from handlers.actions import Enqueue
from orchestrators import Orchestrator, Outcome
from orchestrators.registry import WORKFLOWS
from orchestrators.resources import WorkerContext
from shell.app import create_app
from shell.cli import app
from shell.onboarding import _skills
from shell.services import handler_context
from shell.wiring import load_manifest
from shell.worker import create_worker, on_shutdown, run_job
from tests.conftest import make_settings
from tests.support.deliveries import fixture

UNKNOWN = (
    "skills:\n"
    "  - {name: help, orchestrator: help, help: list the commands}\n"
    "  - {name: deploy, orchestrator: deploy-preview, help: deploy a preview}\n"
)
TEAM = (
    "skills:\n"
    "  - {name: help, orchestrator: help, help: list the commands}\n"
    "  - {name: deploy-preview, aliases: [preview], orchestrator: status, help: show where the preview is}\n"
)
SAID = "the skill 'deploy' names the unknown workflow 'deploy-preview'"


def settings_with(tmp_path: Path, manifest: str | None) -> Settings:
    extra = {}
    if manifest is not None:
        (tmp_path / "skills.yaml").write_text(manifest)
        extra["skills_file"] = str(tmp_path / "skills.yaml")
    return make_settings(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", "redis://127.0.0.1:1/0", **extra)


def test_load_manifest_refuses_an_unknown_workflow_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(SkillError) as refused:
        load_manifest(settings_with(tmp_path, UNKNOWN))
    assert SAID in str(refused.value)
    known = str(refused.value).split("known workflows: ", 1)[1].split(", ")
    assert known == sorted(known) and {
        "approve",
        "cancel",
        "design",
        "help",
        "implement",
        "remediate",
    } <= set(known)


def test_the_packaged_manifest_is_loaded_when_no_file_is_set(tmp_path: Path) -> None:
    assert load_manifest(settings_with(tmp_path, None)) == default_skills()


@pytest.mark.parametrize("command", ["serve", "worker", "up"])
def test_baton_refuses_to_start_on_an_unknown_workflow(tmp_path: Path, command: str) -> None:
    (tmp_path / "skills.yaml").write_text(UNKNOWN)
    env = {
        "BATON_SANDBOX": "1",
        "BATON_STATE_DIR": str(tmp_path / "state"),
        "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}",
        "BATON_REDIS_URL": "redis://127.0.0.1:1/0",
        "BATON_SKILLS_FILE": str(tmp_path / "skills.yaml"),
    }
    result = CliRunner().invoke(app, [command], env=env)
    assert result.exit_code == 2, result.output
    assert SAID in " ".join(result.stderr.split())
    assert not (tmp_path / "baton.db").exists()  # refused before the store was touched


def test_baton_refuses_to_start_on_a_missing_manifest_file(tmp_path: Path) -> None:
    env = {"BATON_SANDBOX": "1", "BATON_SKILLS_FILE": str(tmp_path / "nowhere.yaml")}
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 2 and "nowhere.yaml" in result.stderr


def test_the_app_and_the_worker_refuse_an_unknown_workflow_when_created(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, UNKNOWN)
    with pytest.raises(SkillError, match=SAID):
        create_app(settings)
    with pytest.raises(SkillError, match=SAID):
        create_worker(settings, handle_signals=False)


def test_the_worker_checks_the_manifest_against_the_table_it_is_handed(tmp_path: Path) -> None:
    skills = load_manifest(settings_with(tmp_path, TEAM))
    create_worker(settings_with(tmp_path, TEAM), skills=skills, workflows=WORKFLOWS, handle_signals=False)
    with pytest.raises(SkillError, match="'deploy-preview' names the unknown workflow 'status'"):
        create_worker(settings_with(tmp_path, TEAM), skills=skills, workflows={"help": WORKFLOWS["help"]})


def test_doctor_names_the_unknown_workflow(tmp_path: Path) -> None:
    with pytest.raises(SkillError, match=SAID):
        _skills(settings_with(tmp_path, UNKNOWN))
    assert _skills(settings_with(tmp_path, TEAM)) == f"2 command(s) from {tmp_path / 'skills.yaml'}"
    missing = settings_with(tmp_path, None).model_copy(update={"skills_file": tmp_path / "nowhere.yaml"})
    with pytest.raises(SkillError, match="cannot read BATON_SKILLS_FILE"):
        _skills(missing)


async def test_a_team_command_is_parsed_at_ingress_and_run_from_the_worker_s_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_with(tmp_path, TEAM)
    engine = create_engine(settings.async_database_url)
    await upgrade(engine)
    await engine.dispose()
    skills = load_manifest(settings)  # once, as `baton serve` / `baton worker` do

    payload = fixture("jira/comment_created_cloud.json")
    payload["comment"]["body"] = "/preview for the demo"
    action = route("jira", payload, handler_context(settings, skills))
    assert isinstance(action, Enqueue) and action.kind == "status"

    seen: list[tuple[str, str]] = []

    async def preview(wctx: WorkerContext, run: runs.RunRow) -> Outcome:
        seen.append((run.id, run.kind))
        return Outcome(status.SUCCEEDED, "the preview is up")

    table: dict[str, Orchestrator] = {**WORKFLOWS, "status": preview}
    worker = create_worker(settings, skills=skills, workflows=table, handle_signals=False)
    ctx: dict[str, Any] = {"redis": None}
    with caplog.at_level(logging.WARNING):
        await worker.on_startup(ctx)  # type: ignore[misc]  # no model key here: jobs run without clients
    try:
        recorded = await inbox.record(
            ctx["baton"].sm, inbox.Incoming("jira", "k1", "comment_created", payload), action
        )
        assert recorded.run_id is not None
        await run_job(ctx, recorded.run_id)
        row = await runs.get(ctx["baton"].sm, recorded.run_id)
    finally:
        await on_shutdown(ctx)
    assert seen == [(recorded.run_id, "status")]
    assert (row.status, row.error) == (status.SUCCEEDED, None)
