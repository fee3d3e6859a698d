"""The real Claude Code CLI, run through `run_agent` against the scripted model server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from bot.agent.process import alive
from bot.agent.runner import run_agent
from tests.agent.conftest import API_KEY, ServerFactory, git, make_request, tool_results

HELLO_CHECK = 'python -c "import hello; print(hello.hello())"'
PRINT_ENV = 'python -c "import os; print(dict(os.environ))"'
SLEEP = 'python -c "import time; time.sleep(60)"'


class Step(BaseModel):
    title: str
    files: list[str]


class Plan(BaseModel):
    summary: str
    steps: list[Step]


def processes_in(directory: Path) -> set[int]:
    """Live processes whose working directory is inside `directory` (zombies have none)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(directory) or cwd.startswith(f"{directory}/"):
            found.add(int(entry.name))
    return found


def exists(path: Path) -> bool:
    return path.exists()


def sleepers_in(directory: Path) -> set[int]:
    """Processes in `directory` running the declared sleep command."""
    found: set[int] = set()
    for pid in processes_in(directory):
        try:
            if b"time.sleep" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


async def wait_for_processes(directory: Path, timeout_s: float) -> set[int]:
    for _ in range(int(timeout_s / 0.05)):
        found = processes_in(directory)
        if found:
            return found
        await asyncio.sleep(0.05)
    return set()


async def test_implementer_edits_the_worktree_and_records_usage(
    worktree: Path, model_server: ServerFactory
) -> None:
    server = model_server("implement_hello.yaml")
    request = make_request(
        "implementer", "BATON-IMPLEMENT-HELLO", worktree, server, declared_commands=(HELLO_CHECK,)
    )

    result = await run_agent(request)

    assert not result.is_error, result.error
    assert (worktree / "README.md").read_text().startswith("# demo (hello)\n")
    assert "return {'greeting': 'hi'}['greeting']" in (worktree / "hello.py").read_text()
    assert "hi" in tool_results(server.log.messages())["toolu_s0_t3"]
    assert result.text == "Added hello.py; the declared check prints hi."
    assert result.denials == ()
    assert result.worktree_changed is None  # not fingerprinted: changing it is the implementer's job
    assert result.mechanics_ms["fingerprint"] == 0
    assert result.mechanics_ms["agent start"] > 0
    assert result.num_turns == 5
    assert result.usage.input_tokens == 5 * 1200
    assert result.usage.output_tokens == 5 * 300
    assert result.usage.cache_read_input_tokens == 5 * 50
    assert result.total_cost_usd > 0
    assert result.session_id == server.log.messages()[0].headers["x-claude-code-session-id"]
    assert result.duration_ms > 0


async def test_reviewer_cannot_change_the_worktree(worktree: Path, model_server: ServerFactory) -> None:
    server = model_server("review_tries_edit.yaml")
    before = git(worktree, "status", "--porcelain")

    result = await run_agent(make_request("reviewer", "BATON-REVIEW the diff", worktree, server))

    assert not result.is_error, result.error
    assert result.worktree_changed is False
    assert (worktree / "README.md").read_text().startswith("# demo\n")
    assert not (worktree / "sneaky.py").exists()
    assert not (worktree / "sneaky.txt").exists()
    assert git(worktree, "status", "--porcelain") == before
    assert [d.tool for d in result.denials] == ["Edit", "Write", "Bash"]
    assert all("not available to the reviewer profile" in d.reason for d in result.denials)
    offered = {tool["name"] for tool in server.log.messages()[0].body["tools"]}
    assert {"Read", "Glob", "Grep"} <= offered
    assert not offered & {"Edit", "Write", "Bash", "WebFetch", "WebSearch"}


async def test_a_read_only_run_that_changes_the_worktree_fails_closed(
    worktree: Path, model_server: ServerFactory
) -> None:
    server = model_server("faults.yaml")
    run = asyncio.create_task(run_agent(make_request("reviewer", "BATON-SLOW", worktree, server)))
    assert await wait_for_processes(worktree, timeout_s=10.0), "the CLI never started in the worktree"
    (worktree / "README.md").write_text("# changed while the reviewer ran\n")  # a write that slipped through

    result = await asyncio.wait_for(run, timeout=30.0)

    assert result.text == "slow but fine"
    assert result.worktree_changed is True
    assert result.is_error
    assert result.error == "the read-only reviewer run changed the worktree"


async def test_a_read_only_run_on_a_tree_that_cannot_be_fingerprinted_never_reaches_the_model(
    tmp_path: Path, model_server: ServerFactory
) -> None:
    server = model_server("plan.yaml")
    plain = tmp_path / "not-a-repository"
    plain.mkdir()
    (plain / "README.md").write_text("# no git here\n")

    result = await run_agent(
        make_request("planner", "BATON-PLAN the ticket", plain, server, output_model=Plan)
    )

    assert result.is_error
    assert result.error == f"cannot fingerprint the worktree {plain.resolve()}; refusing a read-only run"
    assert server.log.messages() == []  # the CLI started while the check ran, but got no prompt
    assert not processes_in(plain)


async def test_an_editing_call_leaves_an_index_whose_stat_data_is_fresh(
    worktree: Path, model_server: ServerFactory
) -> None:
    """Lending the worktree chowns every file (a new ctime); the index is refreshed before the prompt, so
    validate's, the review's and the commit's git reads do not read every file again: after the call,
    only what the agent changed differs from the index by its stat data (`git diff-files`)."""
    for n in range(5):
        (worktree / "src").mkdir(exist_ok=True)
        (worktree / "src" / f"m{n}.py").write_text(f"x = {n}\n")
    git(worktree, "add", "src")
    git(worktree, "commit", "-q", "-m", "more files")
    server = model_server("implement_hello.yaml")
    request = make_request("implementer", "BATON-IMPLEMENT-HELLO", worktree, server)
    assert request.containment.drop is not None  # the worktree is lent by chown

    result = await run_agent(request)

    assert not result.is_error, result.error
    assert (worktree / "src" / "m0.py").stat().st_uid != os.geteuid()  # it was lent
    assert git(worktree, "diff-files", "--name-only").split() == ["README.md"]


async def test_a_call_records_its_mechanical_steps(worktree: Path, model_server: ServerFactory) -> None:
    server = model_server("plan.yaml")

    result = await run_agent(
        make_request("planner", "BATON-PLAN the ticket", worktree, server, output_model=Plan)
    )

    assert not result.is_error, result.error
    assert set(result.mechanics_ms) == {"agent start", "fingerprint", "agent end"}
    assert result.mechanics_ms["agent start"] > 0  # the sandbox and the CLI started
    assert result.mechanics_ms["fingerprint"] > 0  # a read-only run is fingerprinted after the call
    assert all(ms >= 0 for ms in result.mechanics_ms.values())
    content = server.log.messages()[0].body["messages"][0]["content"]  # a string, or blocks ending in it
    assert (content if isinstance(content, str) else content[-1]["text"]) == "BATON-PLAN the ticket"


async def test_hostile_tool_calls_are_denied(
    tmp_path: Path, worktree: Path, model_server: ServerFactory
) -> None:
    outside = tmp_path / "outside-secret.txt"
    outside.write_text("canary-outside-file\n")
    (worktree / "escape").symlink_to(tmp_path, target_is_directory=True)
    placeholders = {"outside": str(outside), "outside_write": str(tmp_path / "escaped.txt")}
    server = model_server("hostile.yaml", placeholders=placeholders)

    result = await run_agent(make_request("implementer", "BATON-HOSTILE", worktree, server))

    assert not result.is_error, result.error
    denied = {d.tool_use_id: d for d in result.denials}
    assert set(denied) == {f"toolu_s0_t{i}" for i in range(12)}
    assert denied["toolu_s0_t11"].tool == "WebFetch"
    assert denied["toolu_s0_t11"].source == "unavailable"
    assert {denied[f"toolu_s0_t{i}"].source for i in range(11)} == {"policy"}
    assert "outside the worktree" in denied["toolu_s0_t0"].reason
    assert "outside the worktree" in denied["toolu_s0_t2"].reason
    assert "git internals" in denied["toolu_s0_t3"].reason
    assert "secrets" in denied["toolu_s0_t4"].reason
    assert "curl is never allowed" in denied["toolu_s0_t5"].reason
    assert "printenv is never allowed" in denied["toolu_s0_t7"].reason
    results = tool_results(server.log.messages())
    assert len(results) == 12
    assert "canary" not in json.dumps(results)
    assert not exists(tmp_path / "escaped.txt")


async def test_searches_never_read_git_internals_or_dotenv_files(
    worktree: Path, model_server: ServerFactory
) -> None:
    server = model_server("grep_secrets.yaml")

    result = await run_agent(make_request("reviewer", "BATON-GREP", worktree, server))

    assert not result.is_error, result.error
    results = tool_results(server.log.messages())
    assert "README.md" in results["toolu_s0_t0"]
    assert "README.md" in results["toolu_s0_t1"]
    assert "canary" not in json.dumps(results)
    assert result.denials == ()


async def test_canaries_never_reach_the_agent(
    monkeypatch: pytest.MonkeyPatch, worktree: Path, model_server: ServerFactory
) -> None:
    monkeypatch.setenv("BATON_CANARY_TOKEN", "canary-baton-1f2e")
    monkeypatch.setenv("GITLAB_TOKEN", "canary-gitlab-3d4c")
    monkeypatch.setenv("JIRA_API_TOKEN", "canary-jira-5b6a")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "canary-parent-anthropic-key")
    server = model_server("env_dump.yaml")
    request = make_request(
        "implementer", "BATON-ENV-DUMP", worktree, server, declared_commands=(PRINT_ENV,), environ=os.environ
    )

    result = await run_agent(request)

    assert not result.is_error, result.error
    dumped = tool_results(server.log.messages())["toolu_s0_t0"]
    assert "ANTHROPIC_BASE_URL" in dumped  # the command really ran and printed the environment
    everything = json.dumps([[r.path, r.headers, r.body] for r in server.log.all()])
    for needle in ("canary", API_KEY, "BATON_", "GITLAB_", "JIRA_"):
        assert needle not in dumped
        assert needle not in everything
    # the only model credential the agent's commands can see is the run's relay placeholder
    assert "'ANTHROPIC_API_KEY': 'baton-relay-" in dumped
    assert all(r.note != "unauthorized" for r in server.log.all())  # the relay added the real key


async def test_planner_returns_typed_structured_output(worktree: Path, model_server: ServerFactory) -> None:
    server = model_server("plan.yaml")

    result = await run_agent(
        make_request("planner", "BATON-PLAN the ticket", worktree, server, output_model=Plan)
    )

    assert not result.is_error, result.error
    plan = result.output(Plan)
    assert plan.summary == "Add a hello module"
    assert [s.files for s in plan.steps] == [["hello.py"], ["README.md"]]
    assert result.worktree_changed is False
    assert result.denials == ()
    offered = {tool["name"] for tool in server.log.messages()[0].body["tools"]}
    assert "StructuredOutput" in offered


async def test_api_errors_are_reported_as_errors(worktree: Path, model_server: ServerFactory) -> None:
    server = model_server("faults.yaml")

    result = await run_agent(make_request("implementer", "BATON-BAD-REQUEST", worktree, server))

    assert result.is_error
    assert "scripted bad request" in str(result.error)


async def test_the_cli_retries_an_overloaded_model_and_gets_the_same_scripted_turn(
    worktree: Path, model_server: ServerFactory
) -> None:
    server = model_server("faults.yaml")

    result = await run_agent(make_request("implementer", "BATON-OVERLOADED", worktree, server))

    assert not result.is_error, result.error
    assert result.text == "recovered"
    assert [r.note for r in server.log.messages()] == ["script 2 turn 0"] * 3


async def test_a_hanging_model_hits_the_timeout_and_leaves_no_process(
    worktree: Path, model_server: ServerFactory
) -> None:
    server = model_server("faults.yaml")
    run = asyncio.create_task(
        run_agent(make_request("reviewer", "BATON-HANG", worktree, server, timeout_s=4.0))
    )
    seen = await wait_for_processes(worktree, timeout_s=10.0)

    result = await asyncio.wait_for(run, timeout=30.0)

    assert seen, "the CLI never started in the worktree"
    assert result.is_error
    assert result.timed_out
    assert "timed out after 4s" in str(result.error)
    assert server.log.messages()[-1].note.startswith("script 0")
    assert not alive(seen)
    assert not processes_in(worktree)


async def test_a_timeout_kills_the_commands_the_agent_started(
    worktree: Path, model_server: ServerFactory
) -> None:
    server = model_server("faults.yaml")
    request = make_request(
        "implementer", "BATON-SLEEP-COMMAND", worktree, server, declared_commands=(SLEEP,), timeout_s=5.0
    )
    run = asyncio.create_task(run_agent(request))
    for _ in range(200):
        sleepers = sleepers_in(worktree)
        if sleepers:
            break
        await asyncio.sleep(0.05)
    seen = processes_in(worktree)

    result = await asyncio.wait_for(run, timeout=30.0)

    assert sleepers, "the declared command never started"
    assert result.timed_out
    # no CLI result: the call is charged the tokens its first turn streamed, priced (bot/agent/pricing.py)
    assert result.usage.output_tokens > 0 and result.total_cost_usd > 0
    assert not alive(seen | sleepers)
    assert not processes_in(worktree)
