"""Project mapping: lookups from both sides, and clear refusals of bad or hostile YAML."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.projects import (
    ACCESS_LEVELS,
    MAX_YAML_BYTES,
    ProjectConfigError,
    ProjectMap,
    YamlRefused,
    load_projects,
    load_yaml,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "projects.example.yaml"

MULTI = """
projects:
  - jira_project: DEMO
    gitlab_project: demo/calculator
  - jira_project: DEMO
    component: Backend
    gitlab_project: demo/backend
    trigger_label: ai-backend
  - jira_project: OPS
    component: infra
    gitlab_project: 42
"""


def test_the_example_maps_demo_to_the_calculator_with_documented_defaults() -> None:
    projects = load_projects(EXAMPLE.read_text())
    project = projects.for_jira("DEMO")
    assert project is not None
    assert project.gitlab_project == "demo/calculator"
    assert project.trigger_label == "ai-implement"
    assert project.approvers.jira_groups == ("baton-approvers",)
    assert project.approvers.gitlab_min_access == "maintainer"
    assert project.approvers.gitlab_min_access_level == 40
    assert project.requester_may_approve is False
    assert project.target_branch is None
    assert projects.for_gitlab("demo/calculator") == project


@pytest.mark.parametrize(
    ("key", "components", "expected"),
    [
        ("DEMO", (), "demo/calculator"),
        ("demo", (), "demo/calculator"),
        (" DEMO ", (), "demo/calculator"),
        ("DEMO", ("backend",), "demo/backend"),
        ("DEMO", ("frontend", "BACKEND"), "demo/backend"),
        ("DEMO", ("frontend",), "demo/calculator"),
        ("OPS", ("infra",), "42"),
        ("OPS", (), None),
        ("OPS", ("other",), None),
        ("NOPE", (), None),
        ("", (), None),
        ("DEMO\x00", (), None),
    ],
)
def test_jira_lookup_prefers_the_component_entry(
    key: str, components: tuple[str, ...], expected: str | None
) -> None:
    found = load_projects(MULTI).for_jira(key, components)
    assert (found.gitlab_project if found else None) == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("demo/calculator", "demo/calculator"),
        ("Demo/Calculator", "demo/calculator"),
        ("/demo/backend/", "demo/backend"),
        (42, "42"),
        ("42", "42"),
        ("43", None),
        ("demo", None),
        ("demo/calculator/extra", None),
    ],
)
def test_gitlab_lookup_by_path_or_id(ref: str | int, expected: str | None) -> None:
    found = load_projects(MULTI).for_gitlab(ref)
    assert (found.gitlab_project if found else None) == expected


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "projects:\n", "projects: []\n"])
def test_empty_mappings_have_no_projects(text: str) -> None:
    assert load_projects(text) == ProjectMap()
    assert load_projects(text).for_jira("DEMO") is None


def entry(body: str) -> str:
    return "projects:\n  - jira_project: DEMO\n    gitlab_project: demo/calculator\n" + body


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)

REFUSED = [
    (entry("    approvers:\n      gitlab_min_access: admin\n"), "projects[0].approvers.gitlab_min_access"),
    (entry("    approvers:\n      gitlab_min_access: admin\n"), "unknown access level 'admin'"),
    (entry("    approvers:\n      gitlab_min_access: 40\n"), "unknown access level 40"),
    (
        entry("    trigger_lable: x\n"),
        "projects[0].trigger_lable: unknown field; did you mean 'trigger_label'?",
    ),
    (entry("    approvers:\n      jira_group: [x]\n"), "projects[0].approvers.jira_group: unknown field"),
    (entry("    requester_may_approve: maybe\n"), "projects[0].requester_may_approve"),
    (entry("    requester_may_approve: 'false'\n"), "projects[0].requester_may_approve"),
    (entry("    target_branch: '-rf'\n"), "projects[0].target_branch: not a valid git branch name"),
    (entry("    target_branch: 'a..b'\n"), "projects[0].target_branch"),
    (entry("    target_branch: 'main\\nx'\n"), "projects[0].target_branch"),
    (entry("    target_branch: 2024-01-01\n"), "projects[0].target_branch"),
    (entry("    trigger_label: 'ai implement'\n"), "projects[0].trigger_label: invalid Jira label"),
    (entry("    approvers:\n      jira_users: ['']\n"), "projects[0].approvers.jira_users"),
    (entry("    approvers:\n      jira_users: baton\n"), "projects[0].approvers.jira_users"),
    (entry("    approvers: null\n"), "projects[0].approvers"),
    (entry("  - jira_project: DEMO\n    gitlab_project: demo/other\n"), "projects[1].jira_project: DEMO"),
    (entry("  - jira_project: DEMO\n    gitlab_project: demo/other\n"), "already mapped by projects[0]"),
    (entry("  - jira_project: OTHER\n    gitlab_project: Demo/Calculator\n"), "projects[1].gitlab_project"),
    (
        "projects:\n  - {jira_project: A, component: x, gitlab_project: a/b}\n"
        "  - {jira_project: A, component: X, gitlab_project: c/d}\n",
        "projects[1].jira_project: A component 'X' is already mapped by projects[0]",
    ),
    ("projects:\n  - jira_project: 'lower-case!'\n    gitlab_project: a/b\n", "projects[0].jira_project"),
    ("projects:\n  - jira_project: 123\n    gitlab_project: a/b\n", "not a Jira project key"),
    ("projects:\n  - jira_project: DEMO\n    gitlab_project: ../etc\n", "projects[0].gitlab_project"),
    ("projects:\n  - jira_project: DEMO\n    gitlab_project: a/../b\n", "projects[0].gitlab_project"),
    ("projects:\n  - jira_project: DEMO\n    gitlab_project: justaname\n", "projects[0].gitlab_project"),
    ("projects:\n  - jira_project: DEMO\n    gitlab_project: 0\n", "projects[0].gitlab_project"),
    ("projects:\n  - jira_project: DEMO\n    gitlab_project: true\n", "projects[0].gitlab_project"),
    ("projects:\n  - jira_project: DEMO\n", "projects[0].gitlab_project: required field is missing"),
    ("projects:\n  - just a string\n", "projects[0]: an entry must be a mapping, not a string"),
    (
        "projects:\n  - jira_project: A\n    gitlab_project: a/b\n  - 7\n",
        "projects[1]: an entry must be a mapping",
    ),
    ("projects: {jira_project: DEMO}\n", "'projects' must be a list of entries, not a mapping"),
    ("- jira_project: DEMO\n", "must be a mapping with a 'projects' list, not a list"),
    ("just text\n", "not a string"),
    ("projects: []\nextra: 1\n", "unknown top-level key 'extra'"),
    ("projects: []\n1: x\n", "unknown top-level key '1'"),
    ("projects: []\nprojects: []\n", "duplicate key 'projects' (line 2)"),
    ("a: &a [*a]\n", "an alias refers to itself"),
    (BOMB, "expands to more than"),
    ("[" * 3000 + "]" * 3000, "nested too deeply"),
    ("projects: [\n", "not valid YAML"),
    ("\tprojects: []\n", "not valid YAML"),
    ("projects: []\x00\n", "not valid YAML"),
    ("!!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
    ("projects: []\n#" + "x" * MAX_YAML_BYTES, "larger than"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_bad_mappings_are_refused_naming_the_entry_and_field(text: str, message: str) -> None:
    with pytest.raises(ProjectConfigError) as info:
        load_projects(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 400


def test_error_messages_never_echo_a_huge_value() -> None:
    with pytest.raises(ProjectConfigError) as info:
        load_projects(entry(f"    trigger_label: '{'x y' * 5000}'\n"))
    assert len(str(info.value)) < 300


def test_an_alias_bomb_is_refused_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(YamlRefused):
        load_yaml(BOMB)
    assert time.monotonic() - started < 1.0


def test_anchors_under_x_keys_are_shared_between_entries() -> None:
    text = (
        "x-team: &team {jira_groups: [devs], gitlab_min_access: Developer}\n"
        "projects:\n"
        "  - {jira_project: A, gitlab_project: a/b, approvers: *team}\n"
        "  - {jira_project: B, gitlab_project: c/d, approvers: *team}\n"
    )
    projects = load_projects(text)
    second = projects.for_jira("B")
    assert second is not None
    assert second.approvers.jira_groups == ("devs",)
    assert second.approvers.gitlab_min_access_level == 30


@pytest.mark.parametrize(("level", "number"), [*ACCESS_LEVELS.items(), ("Owner", 50), (" MAINTAINER ", 40)])
def test_access_levels_are_case_insensitive_and_numeric(level: str, number: int) -> None:
    projects = load_projects(entry(f"    approvers:\n      gitlab_min_access: '{level}'\n"))
    project = projects.for_jira("DEMO")
    assert project is not None and project.approvers.gitlab_min_access_level == number


def test_optional_fields_are_read() -> None:
    text = entry(
        "    trigger_label: baton-go\n    requester_may_approve: true\n    target_branch: release/1.x\n"
        "    approvers:\n      jira_users: ['557058:f58131cb', jsmith]\n      gitlab_users: [lead]\n"
    )
    project = load_projects(text).for_gitlab("demo/calculator")
    assert project is not None
    assert (project.trigger_label, project.requester_may_approve, project.target_branch) == (
        "baton-go",
        True,
        "release/1.x",
    )
    assert project.approvers.jira_users == ("557058:f58131cb", "jsmith")
    assert project.approvers.gitlab_users == ("lead",)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    outcome: ProjectMap | str
    try:
        outcome = load_projects(text)
    except ProjectConfigError as exc:  # the only exception that may escape
        outcome = str(exc)
    assert isinstance(outcome, ProjectMap) or (outcome and "\n" not in outcome)
