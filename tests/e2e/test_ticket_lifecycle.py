"""The ticket lifecycle end to end: simulators, the real Claude Code CLI, a scripted model, real processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from bot.agent.process import marked as agent_processes
from bot.agent.process import process_table
from bot.effects import find_jira_marker
from bot.git.branch import branch_name
from bot.sandbox.gitlab_sim import repo
from orchestrators.agents import agent_root
from tests.support.processes import cli_json
from tests.support.sandbox import Running, running_sandbox, wait

SCENARIO = Path(__file__).resolve().parent.parent / "fixtures" / "demo" / "lifecycle.yaml"


@pytest.fixture
def sandbox(tmp_path: Path) -> Running:  # type: ignore[misc]
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", SCENARIO) as running:
        yield running


def marked(running: Running, key: str, kind: str) -> list[str]:
    """Bot comments on `key` whose effect key contains `:kind`."""
    return [body for body in running.comments(key) if f":{kind}" in (find_jira_marker(body) or "")]


def test_label_to_proposal_to_approve_to_one_merge_request(sandbox: Running) -> None:
    logs = sandbox.worker.logs
    sandbox.label("dan", "DEMO-1")
    proposal = wait(lambda: marked(sandbox, "DEMO-1", "proposal"), 100, "the proposal", logs)[0]
    assert "/approve" in proposal and "calculator.py" in proposal and "multiply" in proposal
    assert len(marked(sandbox, "DEMO-1", "status")) == 1  # one status comment, edited in place
    assert len(marked(sandbox, "DEMO-1", "ack")) == 1
    (run,) = [r for r in cli_json(sandbox.env, "runs") if r["kind"] == "implement"]
    detail = cli_json(sandbox.env, "show", run["id"])
    assert detail["status"] == "waiting"
    assert [p["name"] for p in detail["phases"]] == [
        "triage",
        "assemble",
        "implement",
        "validate",
        "review",
        "propose",
    ]
    assert all(p["status"] == "done" for p in detail["phases"])
    assert detail["phases"][2]["input_tokens"] > 0 and detail["phases"][2]["cost_usd"] > 0
    assert detail["phases"][2]["agent_s"] > 0 and detail["phases"][3]["commands_s"] > 0
    # The reviewer was read-only and saw the diff.
    reviews = [r for r in sandbox.stack.model.log.all() if "[baton:review] DEMO-1" in str(r.body)]
    assert reviews and "def multiply" in str(reviews[0].body)
    # Triage asked the model directly (no CLI: no tools but the answer's); the implementer's and the
    # reviewer's CLIs were started during the phase before theirs and took their calls.
    triage = [r for r in sandbox.stack.model.log.all() if "[baton:triage] DEMO-1" in str(r.body)]
    assert [[t["name"] for t in r.body["tools"]] for r in triage] == [["StructuredOutput"]]
    said = logs()
    assert "the implementer call takes its prestarted CLI" in said
    assert "the reviewer call takes its prestarted CLI" in said

    sandbox.as_person("alice", "DEMO-1", "/approve")
    link = wait(lambda: marked(sandbox, "DEMO-1", "mr-link"), 60, "the MR link", logs)[0]
    mrs = sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project)
    assert len(mrs) == 1 and mrs[0].source_branch.startswith("baton/DEMO-1-")
    assert f"!{mrs[0].iid}" in link
    bare = sandbox.stack.demo.project.repo_path
    pushed = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", mrs[0].source_branch],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    shown = subprocess.run(
        ["git", "--git-dir", str(bare), "show", "--stat", "--format=%s", pushed],
        capture_output=True,
        text=True,
    ).stdout
    assert "calculator.py" in shown and "tests/test_multiply.py" in shown
    assert pushed[:12] in proposal  # the MR's commit is the proposed commit
    final = cli_json(sandbox.env, "show", run["id"])
    assert final["status"] == "succeeded"

    sandbox.as_person("alice", "DEMO-1", "/approve")  # a second /approve after shipping
    again = wait(lambda: replies(sandbox, "DEMO-1"), 60, "the refusal", logs)
    assert "already shipped" in again[-1] and "/approve" in again[-1]
    assert len(sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project)) == 1


def replies(running: Running, key: str) -> list[str]:
    return marked(running, key, "reply")


def test_a_shipped_ticket_labelled_again_ships_a_second_proposal_on_its_own_branch(sandbox: Running) -> None:
    logs, project = sandbox.worker.logs, sandbox.stack.demo.project
    sandbox.label("dan", "DEMO-1")
    wait(lambda: marked(sandbox, "DEMO-1", "proposal"), 100, "the first proposal", logs)
    sandbox.as_person("alice", "DEMO-1", "/approve")
    wait(lambda: marked(sandbox, "DEMO-1", "mr-link"), 60, "the first MR link", logs)
    (first,) = sandbox.stack.gitlab_state.merge_requests_of(project)

    answer = httpx.post(  # the label comes off and goes on again: a new delivery, a new run
        f"{sandbox.config['jira']['url']}/_sandbox/labels",
        json={"user": "dan", "issue": "DEMO-1", "remove": ["ai-implement"]},
        timeout=10,
    )
    assert answer.status_code < 300, answer.text
    sandbox.label("dan", "DEMO-1")
    second_proposal = wait(
        lambda: marked(sandbox, "DEMO-1", "proposal")[1:], 100, "the second proposal", logs
    )[0]
    sandbox.as_person("alice", "DEMO-1", "/approve")
    link = wait(lambda: marked(sandbox, "DEMO-1", "mr-link")[1:], 60, "the second MR link", logs)[0]

    assert not [r for r in replies(sandbox, "DEMO-1") if "stale" in r]  # never refused as stale
    mrs = sandbox.stack.gitlab_state.merge_requests_of(project)
    assert len(mrs) == 2 and f"!{mrs[1].iid}" in link
    second = mrs[1]
    assert first.source_branch == branch_name("DEMO-1", "Add a multiply function to the calculator")
    assert second.source_branch.startswith(first.source_branch + "-")
    assert second.source_branch != first.source_branch
    bare = project.repo_path
    heads = {
        mr.source_branch: subprocess.run(
            ["git", "--git-dir", str(bare), "rev-parse", mr.source_branch],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        for mr in mrs
    }  # fmt: skip
    assert heads[second.source_branch][:12] in second_proposal  # the second MR ships the second proposal
    assert heads[first.source_branch] != heads[second.source_branch]  # the first MR was left alone
    implement_runs = [r for r in cli_json(sandbox.env, "runs") if r["kind"] == "implement"]
    assert [r["status"] for r in implement_runs] == ["succeeded", "succeeded"]


def test_approvals_that_must_not_ship_get_a_reply_and_ship_nothing(sandbox: Running) -> None:
    logs = sandbox.worker.logs
    sandbox.stack.jira_state.add_user("Mallory", name="mallory")
    sandbox.label("dan", "DEMO-1")
    proposal = wait(lambda: marked(sandbox, "DEMO-1", "proposal"), 100, "the proposal", logs)[0]

    sandbox.as_person("dan", "DEMO-1", "/approve")  # the requester
    first = wait(lambda: replies(sandbox, "DEMO-1"), 60, "the requester refusal", logs)
    assert "cannot approve" in first[-1] and "requester" in first[-1]
    assert first[-1].startswith("[~accountid:5d1c0ffee0ba7000b0770003]")  # names the person

    sandbox.as_person("mallory", "DEMO-1", "/approve")  # not an approver
    second = wait(lambda: replies(sandbox, "DEMO-1")[1:], 60, "the rights refusal", logs)
    assert "only these may approve" in second[-1] and "baton-approvers" in second[-1]

    sandbox.as_person("baton-bot", "DEMO-1", "/approve")  # the bot itself: ignored, never a run
    # A person pushes to the proposal's branch: the proposal is stale.
    bare, branch = (
        sandbox.stack.demo.project.repo_path,
        branch_name("DEMO-1", "Add a multiply function to the calculator"),
    )
    repo.commit_files(bare, branch, {"NOTES.md": "hand edit\n"}, "A human push", start_from="main")
    sandbox.as_person("alice", "DEMO-1", "/approve")
    third = wait(lambda: replies(sandbox, "DEMO-1")[2:], 60, "the stale refusal", logs)
    assert "stale" in third[-1] and "moved" in third[-1] and "/retry" in third[-1]

    assert sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project) == []
    kinds = [(r["kind"], r["status"]) for r in cli_json(sandbox.env, "runs")]
    assert kinds.count(("approve", "succeeded")) == 3  # three refusals handled; the bot started none
    assert "/approve" in proposal


def test_vague_ticket_gets_questions_and_nothing_is_implemented(sandbox: Running) -> None:
    sandbox.label("dan", "DEMO-2")
    questions = wait(
        lambda: marked(sandbox, "DEMO-2", "questions"), 120, "the questions", sandbox.worker.logs
    )[0]
    assert "Which part of the calculator" in questions and "/retry" in questions
    (run,) = cli_json(sandbox.env, "runs")
    detail = cli_json(sandbox.env, "show", run["id"])
    assert detail["status"] == "waiting"
    assert [p["status"] for p in detail["phases"]][:2] == ["done", "pending"]
    assert not any("[baton:implement]" in str(r.body) for r in sandbox.stack.model.log.all())
    assert sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project) == []
    sandbox.as_person("dan", "DEMO-2", "/status")
    status = wait(lambda: replies(sandbox, "DEMO-2"), 60, "the /status reply", sandbox.worker.logs)[0]
    assert f"Run {run['id'][:12]} is waiting" in status and "triage" in status
    sandbox.as_person("dan", "DEMO-2", "/help")
    shown = wait(lambda: replies(sandbox, "DEMO-2")[1:], 60, "the /help reply", sandbox.worker.logs)[0]
    assert "/approve" in shown and "/revise" in shown and "/retry" in shown


WRONG = "def multiply(a: float, b: float) -> float:\n    return a + b\n"
RIGHT = "def multiply(a: float, b: float) -> float:\n    return a * b\n"


def scenario_variant(tmp_path: Path, *, fix_in_round_two: bool) -> Path:
    """lifecycle.yaml whose first implementation is wrong; optionally a round-two script fixes it."""
    data = yaml.safe_load(SCENARIO.read_text())
    scripts = data["model"]["scripts"]
    implement = next(s for s in scripts if s["match"] == "[baton:implement] DEMO-1")
    edit = implement["turns"][1]["tool_use"]["input"]
    edit["new_string"] = edit["new_string"].replace(RIGHT, WRONG)
    if fix_in_round_two:
        fix = {
            "match": "What the previous round left to fix",
            "turns": [
                {"tool_use": {"name": "Read", "input": {"file_path": "{cwd}/calculator.py"}}},
                {"tool_use": {"name": "Edit", "input": {"file_path": "{cwd}/calculator.py",
                                                        "old_string": WRONG, "new_string": RIGHT}}},
                {"tool_use": {"name": "Bash", "input": {"command": "python -m pytest -q"}}},
                {"text": "Fixed multiply: it added instead of multiplying."},
            ],
        }  # fmt: skip
        scripts.insert(scripts.index(implement), fix)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def implement_requests(running: Running) -> list[str]:
    return [str(r.body) for r in running.stack.model.log.all() if "[baton:implement] DEMO-1" in str(r.body)]


def test_failing_tests_go_back_to_the_agent_with_the_output(tmp_path: Path) -> None:
    scenario = scenario_variant(tmp_path, fix_in_round_two=True)
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", scenario) as sandbox:
        sandbox.label("dan", "DEMO-1")
        proposal = wait(
            lambda: marked(sandbox, "DEMO-1", "proposal"), 100, "the proposal", sandbox.worker.logs
        )[0]
        round_two = [
            body for body in implement_requests(sandbox) if "What the previous round left to fix" in body
        ]
        assert round_two, "the second implement round never reached the model"
        assert "assert 1 == -6" in round_two[0]  # pytest's failure, as the repository printed it
        assert "FAILED tests/test_multiply.py::test_multiply" in round_two[0]
        (run,) = cli_json(sandbox.env, "runs")
        phases = {p["name"]: p for p in cli_json(sandbox.env, "show", run["id"])["phases"]}
        assert phases["implement"]["attempts"] == 2 and phases["validate"]["attempts"] == 2
        assert "a * b" in proposal
        # the reviewer prestarted in round one never got a call then: round two kept it, and the review
        # took it
        said = sandbox.worker.logs()
        assert "its prestarted reviewer still waits; kept" in said
        assert said.count("the reviewer call takes its prestarted CLI") == 1


FORMATTER = (  # tidies calculator.py, and (a command the team did not expect to) writes a CI file
    "python -c \"import pathlib; p = pathlib.Path('calculator.py'); "
    "p.write_text(p.read_text() + '# tidied by the formatter\\n'); "
    "pathlib.Path('.gitlab-ci.yml').write_text('stages: [tidy]\\n')\""
)


def test_the_review_and_the_proposal_see_what_the_repositorys_commands_left(tmp_path: Path) -> None:
    """validate reads the change once its commands ran (a formatter's rewrite included): its checks, the
    review's diff and the proposal are the same tree, so a CI file only a command wrote is flagged too."""
    data = yaml.safe_load(SCENARIO.read_text())
    commands = {"commands": {"format": [FORMATTER], "test": ["python -m pytest -q"]}}
    data["repository"]["files"][".baton.yml"] = yaml.safe_dump(commands)
    scenario = tmp_path / "formatted.yaml"
    scenario.write_text(yaml.safe_dump(data, sort_keys=False))
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", scenario) as sandbox:
        sandbox.label("dan", "DEMO-1")
        proposal = wait(
            lambda: marked(sandbox, "DEMO-1", "proposal"), 100, "the proposal", sandbox.worker.logs
        )[0]
        reviews = [r for r in sandbox.stack.model.log.all() if "[baton:review] DEMO-1" in str(r.body)]
        assert reviews and "tidied by the formatter" in str(reviews[0].body)
        assert "tidied by the formatter" in proposal
        flagged = [line for line in proposal.splitlines() if "touches protected or CI files" in line]
        assert flagged and ".gitlab-ci.yml" in flagged[0]
        (run,) = [r for r in cli_json(sandbox.env, "runs") if r["kind"] == "implement"]
        validate = next(
            p for p in cli_json(sandbox.env, "show", run["id"])["phases"] if p["name"] == "validate"
        )
        assert validate["status"] == "done"


def test_a_change_that_never_passes_stops_for_a_human_after_three_rounds(tmp_path: Path) -> None:
    scenario = scenario_variant(tmp_path, fix_in_round_two=False)
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", scenario) as sandbox:
        sandbox.label("dan", "DEMO-1")
        note = wait(
            lambda: marked(sandbox, "DEMO-1", "needs-human"), 150, "needs-human", sandbox.worker.logs
        )[0]
        assert "3 rounds" in note and "/retry" in note and "-6" in note  # the evidence is posted
        assert marked(sandbox, "DEMO-1", "proposal") == []
        (run,) = cli_json(sandbox.env, "runs")
        detail = cli_json(sandbox.env, "show", run["id"])
        assert detail["status"] == "waiting"
        assert {p["name"]: p["attempts"] for p in detail["phases"]}["implement"] == 3
        assert sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project) == []


def test_a_worker_killed_during_implement_is_resumed_by_the_next_one(tmp_path: Path) -> None:
    data = yaml.safe_load(SCENARIO.read_text())
    implement = next(s for s in data["model"]["scripts"] if s["match"] == "[baton:implement] DEMO-1")
    implement["delay_s"] = 1.5  # each model answer takes a while: time to crash mid-implement
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(yaml.safe_dump(data, sort_keys=False))
    with running_sandbox(
        tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", scenario, run_lease_s="3"
    ) as sandbox:
        sandbox.label("dan", "DEMO-1")

        def implementing() -> str | None:
            runs = cli_json(sandbox.env, "runs")
            for run in runs:
                phases = {p["name"]: p["status"] for p in cli_json(sandbox.env, "show", run["id"])["phases"]}
                if phases.get("implement") == "running":
                    return str(run["id"])
            return None

        run_id = wait(implementing, 60, "the implement phase", sandbox.worker.logs)
        sandbox.kill_worker()
        sandbox.start_worker()
        proposal = wait(
            lambda: marked(sandbox, "DEMO-1", "proposal"), 120, "the resumed proposal", sandbox.worker.logs
        )
        assert len(proposal) == 1
        detail = cli_json(sandbox.env, "show", run_id)
        assert detail["attempts"] == 2
        phases = {p["name"]: p for p in detail["phases"]}
        assert (
            phases["triage"]["attempts"] == 1 and phases["assemble"]["attempts"] == 1
        )  # resumed, not restarted
        assert phases["implement"]["attempts"] == 2
        table = process_table()  # nothing of the killed worker's agent is still running
        assert not agent_processes(f"TMPDIR={agent_root(run_id)}/".encode(), table, prefix=True)
        sandbox.as_person("alice", "DEMO-1", "/approve")
        wait(lambda: marked(sandbox, "DEMO-1", "mr-link"), 60, "the MR", sandbox.worker.logs)
        assert len(sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project)) == 1


def test_cancel_stops_a_running_run_and_says_what_state_it_left(tmp_path: Path) -> None:
    data = yaml.safe_load(SCENARIO.read_text())
    implement = next(s for s in data["model"]["scripts"] if s["match"] == "[baton:implement] DEMO-1")
    implement["delay_s"] = 3.0
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(yaml.safe_dump(data, sort_keys=False))
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", scenario) as sandbox:
        sandbox.label("dan", "DEMO-1")

        def implementing() -> str | None:
            for run in cli_json(sandbox.env, "runs"):
                phases = {p["name"]: p["status"] for p in cli_json(sandbox.env, "show", run["id"])["phases"]}
                if phases.get("implement") == "running":
                    return str(run["id"])
            return None

        run_id = wait(implementing, 60, "the implement phase", sandbox.worker.logs)
        sandbox.as_person("dan", "DEMO-1", "/cancel")
        said = wait(lambda: replies(sandbox, "DEMO-1"), 60, "the /cancel reply", sandbox.worker.logs)[0]
        assert f"Cancelled run {run_id[:12]}" in said and "implement" in said and "/retry" in said
        wait(
            lambda: cli_json(sandbox.env, "show", run_id)["status"] == "cancelled",
            30, "the run to be cancelled", sandbox.worker.logs,
        )  # fmt: skip
        table = process_table()
        assert not agent_processes(f"TMPDIR={agent_root(run_id)}/".encode(), table, prefix=True)
        assert marked(sandbox, "DEMO-1", "proposal") == []
