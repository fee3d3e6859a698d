"""Typed phase outputs: each model round-trips through JSON, outputs stored by the untyped version still
validate, malformed ones are refused with the field named, and the engine carries them between phases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import BaseModel

from bot.repo_config import RepoConfig, parse_repo_config, read_repo_config
from orchestrators.engine import PhaseContext, PhaseOutputError, PhaseResult, Workflow, execute, read_output
from orchestrators.outputs import (
    Assembled,
    Check,
    Denial,
    Implemented,
    Proposed,
    Refused,
    Reviewed,
    StoredThread,
    ThreadAssembled,
    ThreadCommit,
    ThreadsImplemented,
    TicketAssembled,
    Triaged,
    Validated,
    reviewed,
    sent_back,
    thread_assembled,
    ticket_assembled,
    validated,
)
from orchestrators.resources import WorkerContext
from orchestrators.threads import DiffPosition, Thread, ThreadNote
from orchestrators.validate import CommandResult
from orchestrators.verdicts import Finding, Verdict
from shell.services import Services
from tests.orchestrators.test_engine import claimed_run

CONFIG_TEXT = (
    "commands: {format: [ruff format .], lint: ruff check ., test: [pytest -q]}\n"
    "protected_paths: [db/**]\nmodules: {api: src/api/}\ntimeout_s: 120\n"
)
THREAD = Thread(
    "d1",
    (ThreadNote("reviewer", "2024-01-01T00:00:00Z", "multiply should reject None"),),
    DiffPosition(None, "calc.py", None, 12, "b" * 40),
    resolvable=True,
)
VERDICT = Verdict(
    approve=False,
    blockers=[Finding(file="calc.py", line=3, text="None is accepted")],
    summary="One blocker.",
)

# What the untyped version stored (same keys, the raw `.baton.yml` text and no parsed config).
OLD_TICKET_ASSEMBLE: dict[str, Any] = {
    "worktree": "/srv/baton/worktrees/r1", "branch": "baton/DEMO-1-fix", "base_sha": "a" * 40,
    "target_branch": "main", "project_id": 7, "project_path": "demo/calculator",
    "remote_url": "http://gitlab/demo/calculator.git", "repo_config": CONFIG_TEXT, "brief": "# DEMO-1",
    "brief_tokens": 120, "summary": "Multiply rejects None",
}  # fmt: skip
OLD_THREAD_ASSEMBLE: dict[str, Any] = {
    "worktree": "/srv/baton/worktrees/r2", "branch": "baton/mr-3-r2", "base_sha": "c" * 40,
    "source_branch": "feature", "target_branch": "main", "project_id": 7, "project_path": "demo/calculator",
    "remote_url": "http://gitlab/demo/calculator.git", "web_url": "http://gitlab/demo/calculator",
    "repo_config": None, "all": False, "discussion_id": "d1",
    "threads": [{"id": "d1", "notes": [{"author": "reviewer", "created": "2024-01-01T00:00:00Z",
                 "body": "multiply should reject None", "by_bot": False}],
                 "position": {"old_path": None, "new_path": "calc.py", "old_line": None, "new_line": 12,
                              "head_sha": "b" * 40},
                 "resolvable": True, "resolved": False}],
    "briefs": ["# thread d1"], "brief": "# thread d1", "brief_tokens": 30, "title": "Calculator fixes",
    "ticket": None,
}  # fmt: skip
OLD_VALIDATE: dict[str, Any] = {
    "passed": False,
    "feedback": "$ pytest -q\n(test) failed with exit status 1:\nE assert 1 == 2",
    "checks": [
        {"stage": "lint", "command": "ruff check .", "status": "passed", "exit_code": 0, "duration_s": 0.5},
        {"stage": "test", "command": "pytest -q", "status": "failed", "exit_code": 1, "duration_s": 2.0},
    ],
    "ci_changes": [".gitlab-ci.yml"],
    "changed": ["calc.py", ".gitlab-ci.yml"],
}
OLD_REVIEW: dict[str, Any] = {
    "verdict": VERDICT.model_dump(),
    "feedback": "The reviewer found blockers:\n- calc.py:3 None is accepted",
    "agent_ms": 900,
}
OLD_IMPLEMENT: dict[str, Any] = {
    "summary": "Rejected None.",
    "turns": 4,
    "denials": [{"tool": "Bash", "reason": "not declared", "source": "policy"}],
    "agent_ms": 1200,
}
OLD_THREADS_IMPLEMENT: dict[str, Any] = {
    "summary": "multiply should reject None: done",
    "threads": [{"id": "d1", "sha": "e" * 40, "agent_ms": 700}, {"id": "d2", "sha": None, "agent_ms": 300}],
    "agent_ms": 1000,
}


def ctx_with(outputs: dict[str, Any], previous: dict[str, Any] | None = None) -> PhaseContext:
    """A phase context for the accessors, which read only the outputs."""
    return PhaseContext(cast(Any, None), cast(Any, None), outputs, 1, previous or {})


def stored(model: BaseModel) -> dict[str, Any]:
    """What the engine keeps: the JSON of the output, as it comes back from the database."""
    loaded: dict[str, Any] = json.loads(json.dumps(model.model_dump(mode="json")))
    return loaded


def ticket_assembled_model(worktree: Path = Path("/srv/baton/worktrees/r1")) -> TicketAssembled:
    return TicketAssembled(
        worktree=worktree, branch="baton/DEMO-1-fix", base_sha="a" * 40, target_branch="main",
        project_id=7, project_path="demo/calculator", remote_url="http://gitlab/demo/calculator.git",
        repo=parse_repo_config(CONFIG_TEXT), repo_config=CONFIG_TEXT, brief="# DEMO-1", brief_tokens=120,
        summary="Multiply rejects None",
    )  # fmt: skip


def thread_assembled_model() -> ThreadAssembled:
    return ThreadAssembled(
        worktree=Path("/srv/baton/worktrees/r2"), branch="baton/mr-3-r2", base_sha="c" * 40,
        source_branch="feature", target_branch="main", project_id=7, project_path="demo/calculator",
        remote_url="http://gitlab/demo/calculator.git", web_url="http://gitlab/demo/calculator",
        repo=RepoConfig(), repo_config=None, all=True, discussion_id="overview",
        threads=(StoredThread.of(THREAD),), briefs=("# thread d1",), brief="# all threads", brief_tokens=30,
        title="Calculator fixes", ticket="DEMO-1",
    )  # fmt: skip


MODELS: list[BaseModel] = [
    Triaged(ready=False, summary="Unclear.", questions=("Which function?",), agent_ms=10),
    ticket_assembled_model(),
    thread_assembled_model(),
    Refused(refused="closed"),
    Implemented(summary="Done.", turns=3, denials=(Denial(tool="Bash", reason="no", source="policy"),)),
    ThreadsImplemented(summary="x", threads=(ThreadCommit(id="d1", sha="e" * 40, agent_ms=5),), agent_ms=5),
    Validated(
        passed=False,
        feedback="failed",
        checks=(
            Check(stage="test", command="pytest -q", status="timed_out", exit_code=None, duration_s=9.5),
        ),
        ci_changes=(".gitlab-ci.yml",),
        changed=("calc.py",),
    ),
    Reviewed(verdict=VERDICT, feedback="blockers", agent_ms=900),
    Proposed(proposal_id="p1", sha="f" * 40),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_every_output_round_trips_through_json(model: BaseModel) -> None:
    assert type(model).model_validate(stored(model)) == model


def test_the_repo_config_round_trips() -> None:
    config = parse_repo_config(CONFIG_TEXT)
    assert RepoConfig.model_validate(json.loads(config.model_dump_json())) == config
    assert RepoConfig.model_validate(RepoConfig().model_dump(mode="json")) == RepoConfig()


def test_read_repo_config_reads_the_worktree_once(tmp_path: Path) -> None:
    assert read_repo_config(tmp_path) == (None, RepoConfig())
    (tmp_path / ".baton.yml").write_text(CONFIG_TEXT)
    assert read_repo_config(tmp_path) == (CONFIG_TEXT, parse_repo_config(CONFIG_TEXT))


@pytest.mark.parametrize(
    ("model", "old"),
    [
        (TicketAssembled, OLD_TICKET_ASSEMBLE),
        (ThreadAssembled, OLD_THREAD_ASSEMBLE),
        (Validated, OLD_VALIDATE),
        (Reviewed, OLD_REVIEW),
        (Implemented, OLD_IMPLEMENT),
        (ThreadsImplemented, OLD_THREADS_IMPLEMENT),
        (ThreadsImplemented, OLD_IMPLEMENT),  # a single-thread /remediate stored no `threads`
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_an_output_stored_by_the_untyped_version_still_validates(
    model: type[BaseModel], old: dict[str, Any]
) -> None:
    typed = model.model_validate(old)
    new = typed.model_dump(mode="json")
    assert set(old) <= set(new), "every key the untyped version stored is still stored"
    for key, value in old.items():
        assert new[key] == value, key


def test_an_old_assemble_output_gets_its_config_parsed_from_the_stored_text() -> None:
    old = ticket_assembled(ctx_with({"assemble": OLD_TICKET_ASSEMBLE}))
    assert old.repo == parse_repo_config(CONFIG_TEXT)
    assert old.repo.declared_commands == ("ruff format .", "ruff check .", "pytest -q")
    assert thread_assembled(ctx_with({"assemble": OLD_THREAD_ASSEMBLE})).repo == RepoConfig()


def test_a_new_assemble_output_carries_the_parsed_config_and_is_not_reparsed() -> None:
    data = stored(ticket_assembled_model())
    assert data["repo"]["commands"]["test"] == ["pytest -q"] and data["repo_config"] == CONFIG_TEXT
    data["repo_config"] = "not: [valid"  # the stored text is no longer read once the parsed config is there
    assert ticket_assembled(ctx_with({"assemble": data})).repo == parse_repo_config(CONFIG_TEXT)


def test_the_old_shapes_read_as_before() -> None:
    ctx = ctx_with({"assemble": OLD_THREAD_ASSEMBLE, "validate": OLD_VALIDATE, "review": OLD_REVIEW})
    assembled = thread_assembled(ctx)
    assert assembled.chosen() == [THREAD]
    assert assembled.target() == {
        k: OLD_THREAD_ASSEMBLE[k]
        for k in (
            "project_id",
            "project_path",
            "source_branch",
            "base_sha",
            "remote_url",
            "web_url",
            "branch",
        )
    }
    checked = validated(ctx)
    assert [c.result() for c in checked.checks] == [
        CommandResult("lint", "ruff check .", "passed", 0),
        CommandResult("test", "pytest -q", "failed", 1),
    ]
    assert [c.line() for c in checked.checks] == ["lint: ruff check . → passed", "test: pytest -q → failed"]
    assert checked.ci_changes == (".gitlab-ci.yml",)
    assert reviewed(ctx).verdict == VERDICT
    assert ThreadsImplemented.model_validate(OLD_THREADS_IMPLEMENT).committed() == {"d1": True, "d2": False}
    assert ticket_assembled(ctx_with({"assemble": OLD_TICKET_ASSEMBLE})).target() == {
        k: OLD_TICKET_ASSEMBLE[k]
        for k in ("branch", "project_path", "target_branch", "remote_url", "project_id")
    }


def test_the_shared_validate_phase_reads_either_assemble_output() -> None:
    for old in (OLD_TICKET_ASSEMBLE, OLD_THREAD_ASSEMBLE):
        assert read_output({"assemble": old}, "assemble", Assembled).base_sha == old["base_sha"]


def test_the_feedback_that_sent_the_change_back() -> None:
    assert sent_back(ctx_with({})) == []
    previous = {"validate": OLD_VALIDATE, "review": OLD_REVIEW}
    assert sent_back(ctx_with({}, previous)) == [OLD_VALIDATE["feedback"], OLD_REVIEW["feedback"]]
    passed = {"validate": {**OLD_VALIDATE, "feedback": "", "passed": True}}
    assert sent_back(ctx_with({}, passed)) == []


def test_the_worktree_must_still_exist(tmp_path: Path) -> None:
    assert ticket_assembled_model(tmp_path).workdir() == tmp_path
    with pytest.raises(FileNotFoundError, match="reply /retry assemble"):
        ticket_assembled_model(tmp_path / "gone").workdir()


@pytest.mark.parametrize(
    ("phase", "model", "data", "reason"),
    [
        ("assemble", TicketAssembled, {k: v for k, v in OLD_TICKET_ASSEMBLE.items() if k != "worktree"},
         "worktree: Field required"),
        ("assemble", TicketAssembled, {**OLD_TICKET_ASSEMBLE, "project_id": "seven"}, "project_id:"),
        ("assemble", TicketAssembled, {**OLD_TICKET_ASSEMBLE, "repo_config": "commands: {tset: x}\n"},
         ".baton.yml: commands.tset: unknown field"),
        ("assemble", TicketAssembled, {**OLD_TICKET_ASSEMBLE, "repo": {"commands": "x"}}, "repo.commands"),
        ("assemble", ThreadAssembled, {**OLD_THREAD_ASSEMBLE, "briefs": []}, "1 thread(s) but 0 brief(s)"),
        ("assemble", ThreadAssembled, {**OLD_THREAD_ASSEMBLE, "threads": ["d1"]}, "threads.0:"),
        ("validate", Validated, {**OLD_VALIDATE, "checks": [{"stage": "deploy", "command": "x",
                                                              "status": "passed"}]}, "checks.0.stage:"),
        ("review", Reviewed, {"feedback": ""}, "verdict: Field required"),
    ],
)  # fmt: skip
def test_a_malformed_stored_output_is_refused_naming_the_field(
    phase: str, model: type[BaseModel], data: dict[str, Any], reason: str
) -> None:
    with pytest.raises(PhaseOutputError) as caught:
        read_output({phase: data}, phase, model)
    message = str(caught.value)
    assert f"the stored output of phase {phase} is not a valid {model.__name__}" in message
    assert reason in message and message.endswith(f"reply /retry {phase}")


def test_a_missing_output_is_refused() -> None:
    with pytest.raises(PhaseOutputError, match="phase validate has no output; reply /retry validate"):
        validated(ctx_with({"assemble": OLD_TICKET_ASSEMBLE}))
    assert ctx_with({}).previous_output("implement", ThreadsImplemented) is None


# --- through the engine and the store -----------------------------------------------------------


@pytest.fixture
def wctx(services: Services) -> WorkerContext:
    return WorkerContext(services.settings, services.sm, services.queue, "test-worker")


async def test_a_typed_output_survives_the_store_between_phases(
    services: Services, wctx: WorkerContext, tmp_path: Path
) -> None:
    run = await claimed_run(services)
    written = ticket_assembled_model(tmp_path)
    seen: list[TicketAssembled] = []

    async def assemble(ctx: PhaseContext) -> PhaseResult:
        return PhaseResult(written.model_dump(mode="json"))

    async def implement(ctx: PhaseContext) -> PhaseResult:
        seen.append(ticket_assembled(ctx))
        return PhaseResult()

    await execute(Workflow("probe", (("assemble", assemble), ("implement", implement))), wctx, run)
    assert seen == [written]
    assert seen[0].workdir() == tmp_path and seen[0].repo.timeout_s == 120
