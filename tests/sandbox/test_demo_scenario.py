"""Demo scenario files: the default demo, the format's rules, hostile files, recognising Baton's comments."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.repo_config import parse_repo_config
from bot.sandbox.demo.scenario import DemoScenario, ScenarioError, load_demo_scenario, parse_demo_scenario
from bot.sandbox.demo.watch import asks, is_proposal, is_status, plain
from bot.sandbox.gitlab_sim.seed import CALCULATOR_FILES
from bot.sandbox.jira_sim.demo import MULTIPLY_DESCRIPTION
from bot.sandbox.scenario import Script
from bot.sandbox.stack import DEFAULT_SCENARIO
from orchestrators.proposal import ProposalView, inline, render_proposal
from orchestrators.status_comment import PhaseView, StatusView, render_status
from orchestrators.validate import CommandResult
from orchestrators.verdicts import Finding, Triage, Verdict

MINIMAL: dict[str, Any] = {
    "ticket": {"summary": "Do the thing", "description": "h3. What\n* one"},
    "repository": {"files": {"README.md": "# x\n", ".baton.yml": "commands: {test: [pytest -q]}\n"}},
    "model": {"scripts": [{"match": "[baton:triage] DEMO-1", "turns": [{"text": "hi"}]}]},
}


def scenario_text(**changes: Any) -> str:
    data = {**MINIMAL, **changes}
    return yaml.safe_dump({k: v for k, v in data.items() if v is not None})


def script(match: str) -> Script:
    world = load_demo_scenario(DEFAULT_SCENARIO)
    return next(s for s in world.model.scripts if s.match == match)


# --- the default demo ------------------------------------------------------------------------------


def test_default_demo_is_the_demo_world_plus_its_test_command() -> None:
    world = load_demo_scenario(DEFAULT_SCENARIO)
    assert world.repository is not None, "the default demo plays in demo/calculator"
    files = dict(world.repository.files)
    config = parse_repo_config(files.pop(".baton.yml"))
    assert files.pop(".gitignore").split() == ["__pycache__/", ".pytest_cache/"]  # no bytecode in the MR
    assert files == CALCULATOR_FILES
    assert config.declared_commands == ("python -m pytest -q",)
    assert world.ticket.summary == "Add a multiply function to the calculator"
    assert world.ticket.description == MULTIPLY_DESCRIPTION
    assert world.expect.wants_proposal and world.expect.wants_mr and not world.expect.needs_info


def test_default_demo_answers_every_phase_with_typed_output() -> None:
    triage = Triage.model_validate(script("[baton:triage] DEMO-1").turns[-1].structured_output)
    assert triage.ready and triage.questions == []
    verdict = Verdict.model_validate(script("[baton:review] DEMO-1").turns[-1].structured_output)
    assert verdict.passes and verdict.summary
    vague = Triage.model_validate(script("[baton:triage] DEMO-2").turns[-1].structured_output)
    assert not vague.ready and len(vague.questions) == 2 and all(q.endswith("?") for q in vague.questions)
    implement = script("[baton:implement] DEMO-1")
    tools = [t.tool_use.name for t in implement.turns if t.tool_use]
    assert tools == ["Read", "Edit", "Read", "Edit", "Edit", "Bash"]
    assert implement.turns[-1].text and implement.turns[-1].tool_use is None


def docs_example() -> str:
    """The complete example in docs/scenarios.md (its first YAML block that is a whole scenario)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "scenarios.md").read_text()
    blocks: list[str] = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    return next(block for block in blocks if block.startswith("ticket:"))


def play_implementation(world: DemoScenario, root: Path) -> dict[str, str]:
    """Apply the implementer's tool calls as Claude Code would (Read before Edit), write the files."""
    assert world.repository is not None, "a one-repository scenario"
    files = dict(world.repository.files)
    declared = parse_repo_config(files.get(".baton.yml")).declared_commands
    implement = next(s for s in world.model.scripts if s.match == "[baton:implement] DEMO-1")
    read: set[str] = set()
    for tool in [turn.tool_use for turn in implement.turns if turn.tool_use is not None]:
        args = {k: str(v).replace("{cwd}/", "") for k, v in tool.input.items()}
        if tool.name == "Read":
            read.add(args["file_path"])
        elif tool.name == "Write":
            assert args["file_path"] not in files or args["file_path"] in read
            files[args["file_path"]] = args["content"]
        elif tool.name == "Edit":
            path = args["file_path"]
            assert path in read, f"Claude Code refuses to edit {path} before reading it"
            assert files[path].count(args["old_string"]) == 1
            files[path] = files[path].replace(args["old_string"], args["new_string"])
        else:
            assert tool.name == "Bash" and tool.input["command"] in declared
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return files


def run_tests(root: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow  # runs the repository's real test suite
def test_the_scripted_implementation_reads_before_editing_and_its_tests_pass(tmp_path: Path) -> None:
    files = play_implementation(load_demo_scenario(DEFAULT_SCENARIO), tmp_path)
    assert "3 passed" in run_tests(tmp_path)
    assert "def multiply(a: float, b: float) -> float:" in files["calculator.py"]


@pytest.mark.slow
def test_the_documented_example_is_valid_and_its_implementation_passes(tmp_path: Path) -> None:
    world = parse_demo_scenario(docs_example())
    assert world.ticket.labels == ("calculator",) and world.expect.wants_mr
    Triage.model_validate(world.model.scripts[0].turns[-1].structured_output)
    Verdict.model_validate(world.model.scripts[-1].turns[-1].structured_output)
    files = play_implementation(world, tmp_path)
    assert "3 passed" in run_tests(tmp_path)
    assert "ZeroDivisionError" in files["calculator.py"] and "tests/test_divide.py" in files


# --- the format --------------------------------------------------------------------------------------


def test_a_minimal_scenario_parses_with_defaults() -> None:
    world = parse_demo_scenario(scenario_text())
    assert world.ticket.labels == ()
    assert world.expect.wants_proposal and world.expect.wants_mr
    assert world.model.scripts[0].match == "[baton:triage] DEMO-1"


@pytest.mark.parametrize(
    ("expect", "proposal", "mr"),
    [
        ({}, True, True),
        ({"proposal": True}, True, True),
        ({"proposal": True, "mr": False}, True, False),
        ({"mr": True}, True, True),
        ({"needs_info": True}, False, False),
    ],
)
def test_expectations(expect: dict[str, bool], proposal: bool, mr: bool) -> None:
    world = parse_demo_scenario(scenario_text(expect=expect))
    assert (world.expect.wants_proposal, world.expect.wants_mr) == (proposal, mr)
    assert world.expect.needs_info == expect.get("needs_info", False)


def test_triage_questions_come_from_the_script_that_answers_the_ticket() -> None:
    output = {"ready": False, "questions": ["Which one?", "By when?"], "summary": "unclear"}
    scripts = [
        {"match": "[baton:triage] DEMO-2", "turns": [{"structured_output": {**output, "questions": ["no"]}}]},
        {"match": "[baton:triage] DEMO-1", "turns": [{"structured_output": output}]},
    ]
    world = parse_demo_scenario(scenario_text(model={"scripts": scripts}, expect={"needs_info": True}))
    assert world.triage_questions() == ["Which one?", "By when?"]
    assert parse_demo_scenario(scenario_text()).triage_questions() == []


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, n in zip("abcdefg", "bcdefgh", strict=True)
)


BOTH = {"text": "t", "tool_use": {"name": "Bash"}, "structured_output": {}}


def _files(files: dict[str, Any]) -> str:
    return scenario_text(repository={"files": files})


HOSTILE = [
    ("ticket: [", "not valid YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("", "not empty"),
    ("scripts: []\n", "put its `scripts` under `model:`"),
    ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
    (BOMB, "expands to more than"),
    ("ticket: {summary: a}\nticket: {summary: b}\n", "duplicate key 'ticket'"),
    (scenario_text(ticket=None), "ticket: required field is missing"),
    (scenario_text(tickets={"summary": "x"}), "tickets: unknown field; did you mean 'ticket'?"),
    (scenario_text(ticket={"summary": "x", "descripton": ""}), "did you mean 'description'?"),
    (scenario_text(ticket={"summary": "  "}), "ticket.summary: the summary must be one line"),
    (scenario_text(ticket={"summary": "two\nlines"}), "one line of 1-255"),
    (scenario_text(ticket={"summary": "x" * 256}), "one line of 1-255"),
    (scenario_text(ticket={"summary": "\ud800"}), "valid Unicode"),
    (scenario_text(ticket={"summary": "x", "description": "d" * 32_001}), "longer than 32000"),
    (scenario_text(ticket={"summary": "x", "labels": ["two words"]}), "invalid Jira label 'two words'"),
    (scenario_text(ticket={"summary": "x", "labels": ["a", "a"]}), "listed twice"),
    (scenario_text(ticket={"summary": 5}), "ticket.summary: Input should be a valid string"),
    (_files({}), "repository.files: Dictionary should have at least 1 item"),
    (_files({"../escape.py": "x"}), "a relative path inside the repository"),
    (_files({"/etc/passwd": "x"}), "a relative path inside the repository"),
    (_files({"a/./b.py": "x"}), "a relative path inside the repository"),
    (_files({"a\\b.py": "x"}), "a relative path inside the repository"),
    (_files({".git/hooks/post-checkout": "x"}), "nothing may be written under .git"),
    (_files({"sub/.GIT/config": "x"}), "nothing may be written under .git"),
    (_files({"a\nb": "x"}), "one line of at most 400"),
    (_files({"a": "x", "a/b.py": "y"}), "'a' is a file but 'a/b.py' puts a file inside it"),
    (_files({"big.txt": "x" * (256 * 1024 + 1)}), "larger than 262144 bytes"),
    (_files({"n.txt": 5}), "repository.files['n.txt']: Input should be a valid string"),
    (_files({f"f{i}.txt": "" for i in range(501)}), "at most 500 files"),
    (_files({".baton.yml": "commands: {tests: [pytest]}\n"}), ".baton.yml: commands.tests: unknown field"),
    (
        _files({".baton.yml": "commands: {test: ['\"oops']}"}),
        "files: .baton.yml: commands.test: cannot split",
    ),
    (scenario_text(model={"scripts": [{"match": "x", "turns": [{}]}]}), "model.scripts[0].turns[0]:"),
    (scenario_text(model={"scripts": [{"mach": "x"}]}), "model.scripts[0].mach: unknown field; did you mean"),
    (
        scenario_text(model={"scripts": [{"match": "x", "turns": [BOTH]}]}),
        "either tool_use or structured_output",
    ),
    (scenario_text(expect={"needs_info": True, "proposal": True}), "not a proposal or an MR"),
    (scenario_text(expect={"mr": True, "proposal": False}), "an MR needs a proposal"),
    (scenario_text(expect={"proposal": False}), "expect nothing?"),
    (scenario_text(expect={"proposal": "yes"}), "expect.proposal: Input should be a valid boolean"),
    (scenario_text(expect={"merge_request": True}), "expect.merge_request: unknown field"),
]


@pytest.mark.parametrize(("text", "message"), HOSTILE, ids=[m for _, m in HOSTILE])
def test_bad_scenarios_are_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_demo_scenario(text)
    reason = str(caught.value)
    assert message in reason
    assert "\n" not in reason and len(reason) < 400


def test_oversized_files_are_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("ticket: {summary: x}\n# " + "x" * (1024 * 1024))
    with pytest.raises(ScenarioError, match=r"^huge\.yaml: the file is larger than 1048576 bytes$"):
        load_demo_scenario(path)


@pytest.mark.parametrize(
    ("name", "setup", "message"),
    [
        ("missing.yaml", lambda p: None, "cannot read"),
        ("folder.yaml", lambda p: p.mkdir(), "cannot read"),
        ("latin1.yaml", lambda p: p.write_bytes(b"ticket: {summary: caf\xe9}\n"), "latin1.yaml: not UTF-8"),
        ("bad.yaml", lambda p: p.write_text("ticket: {summary: ''}\n"), "bad.yaml: ticket.summary"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, name: str, setup: Any, message: str) -> None:
    setup(tmp_path / name)
    with pytest.raises(ScenarioError, match=message) as caught:
        load_demo_scenario(tmp_path / name)
    assert name in str(caught.value)


# --- recognising Baton's comments ------------------------------------------------------------------


def test_the_status_comment_is_recognised_by_its_checklist() -> None:
    phases = (PhaseView("triage", "done", 0.4), PhaseView("implement", "running", 2.0))
    view = StatusView("abc123", "Baton: implement DEMO-1", phases, 1.0)
    assert is_status(render_status(view, "jira"))
    assert not is_proposal(render_status(view, "jira"))
    assert not is_status("* a list item\n* another")
    assert not is_status("*✅ approved by the reviewer*: fine\n* ✅ one finding")


def test_a_proposal_ends_with_its_replies_and_the_acknowledgement_is_not_one() -> None:
    checks = (CommandResult("test", "python -m pytest -q", "passed", 0, "3 passed"),)
    verdict = Verdict(approve=True, summary="fine", suggestions=[Finding(text="✅ keep it")])
    view = ProposalView("p1", "Add multiply", "a" * 40, checks=checks, verdict=verdict, diff="+x\n")
    proposal = render_proposal(view, flavor="jira")
    assert "✅" in proposal
    assert is_proposal(proposal) and not is_status(proposal)
    ack = "👀 Baton picked this up. Nothing is pushed until someone replies /approve."
    assert not is_proposal(ack)


def test_questions_are_found_through_jira_escaping() -> None:
    questions = ["Which part - the README or calc_ops?", "How will we know it is done: [tests]?"]
    body = "Before I start:\n" + "\n".join(f"# {inline(q, 'jira')}" for q in questions)
    assert asks(body, questions)
    assert not asks(body, [*questions, "A third one?"])
    assert not asks(body, [])
    assert plain("a\\-b \u200bc\n d") == "a-b c d"
