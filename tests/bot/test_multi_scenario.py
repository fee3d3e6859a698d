"""The multi-repository scenario (#13): the file parses, hostile scenarios are refused with one line
naming the field, the sandbox's project mapping sends each component to its repository, and each prompt
marker selects its script (tests/sandbox/test_multi_world.py checks the world through the real clients)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.sandbox.demo.scenario import (
    SERVICE_REPOSITORIES,
    DemoScenario,
    ScenarioError,
    load_demo_scenario,
    parse_demo_scenario,
)
from bot.sandbox.scenario import Script, plan_reply, select_script
from config.projects import load_projects
from tests.support.multi import MULTI, TASKS, body

EXAMPLE_PROJECTS = Path(__file__).resolve().parents[2] / "config" / "projects.example.yaml"


def world() -> DemoScenario:
    return load_demo_scenario(MULTI)


def script_for(prompt: str) -> Script:
    chosen = select_script(world().model, body(prompt))
    assert chosen is not None, prompt
    return chosen[1]


def test_multi_parses_into_four_repositories_and_four_components() -> None:
    scenario = world()
    assert scenario.ticket.components == ("catalog", "pricing", "inventory", "storefront")
    assert sorted(scenario.repositories) == sorted(TASKS.values())
    assert scenario.repository is None and scenario.several_repositories
    for path, repository in scenario.repositories.items():
        files = repository.files
        assert {".baton.yml", "README.md", "pyproject.toml"} <= set(files), path
        assert any(p.startswith("tests/test_") for p in files), path


def test_the_example_mapping_sends_each_component_to_its_repository() -> None:
    projects = load_projects(EXAMPLE_PROJECTS.read_text())
    plain = projects.for_jira("DEMO")
    assert plain is not None and plain.gitlab_project == "demo/calculator"
    for component, path in SERVICE_REPOSITORIES.items():
        found = projects.for_jira("DEMO", [component])
        assert found is not None and found.gitlab_project == path and found.component == component
        assert found.approvers.jira_groups == ("baton-approvers",)
        assert projects.for_gitlab(path) == found


@pytest.mark.parametrize(
    ("prompt", "match"),
    [
        (
            "[baton:plan] DEMO-1\nBaton plan for DEMO-1\nRepositories: demo/catalog ...",
            "Baton plan for DEMO-1",
        ),
        (
            "[baton:implement] DEMO-1\nBaton task: A in demo/catalog\nGoal: ...",
            "Baton task: A in demo/catalog",
        ),
        ("[baton:implement] DEMO-1\nBaton task: B in demo/pricing", "Baton task: B in demo/pricing"),
        ("[baton:implement] DEMO-1\nBaton task: C in demo/inventory", "Baton task: C in demo/inventory"),
        # D's brief quotes its dependencies' results, markers included: D's own script still answers
        (
            "[baton:implement] DEMO-1\nBaton task: D in demo/storefront\nResults of its dependencies:\n"
            "Baton task: A in demo/catalog — done\nBaton task: B in demo/pricing — done\n"
            "Baton task: C in demo/inventory — done",
            "Baton task: D in demo/storefront",
        ),
        ("[baton:review] DEMO-1\nBaton task: A in demo/catalog\ndiff ...", "[baton:review] DEMO-1"),
        ("[baton:triage] DEMO-1", "[baton:triage] DEMO-1"),
    ],
)
def test_each_marker_selects_its_script(prompt: str, match: str) -> None:
    assert script_for(prompt).match == match


def test_a_marker_in_the_system_prompt_selects_too() -> None:
    chosen = select_script(world().model, body("go", system="Baton task: C in demo/inventory"))
    assert chosen is not None and chosen[1].match == "Baton task: C in demo/inventory"


def test_the_planner_answers_a_valid_task_graph() -> None:
    reply = plan_reply(world().model, body("Baton plan for DEMO-1"))
    (block,) = reply.blocks
    assert block.name == "StructuredOutput"
    tasks = block.input["tasks"]
    assert {t["id"]: t["repository"] for t in tasks} == TASKS
    assert {t["id"]: sorted(t["depends_on"]) for t in tasks} == {
        "A": [],
        "B": [],
        "C": [],
        "D": ["A", "B", "C"],
    }
    assert all(t["goal"] and t["acceptance"] for t in tasks)


def test_the_reviewer_approves_and_the_planner_is_done_after_its_graph() -> None:
    review = plan_reply(world().model, body("[baton:review] DEMO-1"))
    assert review.blocks[0].input["approve"] is True
    after = plan_reply(world().model, body("Baton plan for DEMO-1", assistant_turns=1))
    assert after.blocks[0].text == "done"


# --- hostile scenarios -----------------------------------------------------------------------------

BASE = """
ticket: {summary: Weight}
model: {scripts: []}
"""
REPO = "{files: {a.py: 'x = 1'}}"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", "`repository` (demo/calculator) or `repositories` is required"),
        (f"repositories: {{demo/evil: {REPO}}}", "repositories: unknown repository 'demo/evil'"),
        (f"repositories: {{../../etc: {REPO}}}", "repositories: unknown repository '../../etc'"),
        (
            f"repositories: {{demo/calculator: {REPO}}}",
            "repositories: demo/calculator is the `repository` section",
        ),
        (
            "repositories: {demo/catalog: {files: {../x.py: 'x'}}}",
            "repositories['demo/catalog'].files: path '../x.py': a relative path",
        ),
        ("repositories: {demo/catalog: {files: {.git/config: 'x'}}}", "nothing may be written under .git"),
        ("repositories: {demo/catalog: {files: {}}}", "repositories['demo/catalog'].files:"),
        (
            "repositories: {demo/catalog: {fles: {a.py: x}}}",
            "repositories['demo/catalog'].fles: unknown field; did you mean 'files'?",
        ),
        ("repositories: {demo/catalog: [a.py]}", "repositories['demo/catalog']:"),
        ("repositories: [demo/catalog]", "repositories:"),
        (
            "repositories: {demo/catalog: {files: {.baton.yml: 'commands: {test: [7]}'}}}",
            "repositories['demo/catalog'].files:",
        ),
        (f"repositorys: {{demo/catalog: {REPO}}}", "repositorys: unknown field; did you mean 'repository'?"),
    ],
)
def test_hostile_repositories_are_refused_in_one_line_naming_the_field(extra: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_demo_scenario(BASE + extra)
    message = str(caught.value)
    assert expected in message and "\n" not in message, message


@pytest.mark.parametrize(
    ("components", "expected"),
    [
        ("[billing]", "ticket.components: unknown component 'billing'; project DEMO has catalog, pricing"),
        ("[catalog, catalog]", "ticket.components: a component is listed twice"),
        ("catalog", "ticket.components:"),
        ("[{name: catalog}]", "ticket.components[0]:"),
        (
            "[pricing]",
            "ticket.components: 'pricing' maps to demo/pricing, which `repositories` does not declare",
        ),
        ('["catalog\\nx"]', "unknown component 'catalog\\nx'"),
    ],
)
def test_hostile_components_are_refused(components: str, expected: str) -> None:
    text = f"ticket: {{summary: Weight, components: {components}}}\nmodel: {{scripts: []}}\n"
    text += f"repositories: {{demo/catalog: {REPO}}}\n"
    with pytest.raises(ScenarioError) as caught:
        parse_demo_scenario(text)
    message = str(caught.value)
    assert expected in message and "\n" not in message, message


def test_the_single_repository_format_still_parses() -> None:
    scenario = parse_demo_scenario(BASE + f"repository: {REPO}\n")
    assert scenario.repository is not None and scenario.repositories == {}
    assert scenario.ticket.components == () and not scenario.several_repositories
