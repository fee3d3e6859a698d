"""Cost caps in the project map (`budget:`) and the BATON_BUDGET_* defaults: validated, errors named."""

from __future__ import annotations

import pytest

from config.projects import Budget, ProjectConfigError, load_projects
from config.settings import SettingsError, load_settings


def entry(budget: str) -> str:
    return f"projects:\n  - jira_project: DEMO\n    gitlab_project: demo/calculator\n    budget: {budget}\n"


def test_a_project_sets_its_caps_and_leaves_the_rest_to_the_defaults() -> None:
    (project,) = load_projects(entry("{ticket_usd: 2.5, month_usd: 100}")).projects
    assert project.budget == Budget(ticket_usd=2.5, month_usd=100.0)
    (plain,) = load_projects(entry("{}")).projects
    assert plain.budget == Budget()
    assert load_projects("projects: [{jira_project: A, gitlab_project: a/b}]").projects[0].budget == Budget()


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("{ticket_usd: 0}", "projects[0].budget.ticket_usd: must be a positive amount in USD"),
        ("{ticket_usd: -3}", "projects[0].budget.ticket_usd: must be a positive amount"),
        ("{month_usd: .nan}", "projects[0].budget.month_usd: must be a positive amount"),
        ("{month_usd: .inf}", "projects[0].budget.month_usd: must be a positive amount"),
        ("{month_usd: 1000000001}", "at most 1,000,000"),
        ("{ticket_usd: true}", "projects[0].budget.ticket_usd: must be a number of USD, not True"),
        ("{ticket_usd: '5'}", "must be a number of USD, not '5'"),
        ("{ticket_usd: [1]}", "must be a number of USD"),
        ("{tickets_usd: 1}", "projects[0].budget.tickets_usd: unknown field; did you mean 'ticket_usd'?"),
        ("5", "projects[0].budget"),
    ],
)
def test_bad_caps_are_refused_naming_the_field(budget: str, message: str) -> None:
    with pytest.raises(ProjectConfigError) as info:
        load_projects(entry(budget))
    assert message in str(info.value)


def test_the_defaults_come_from_the_environment() -> None:
    settings = load_settings(
        {"BATON_BUDGET_TICKET_USD": "0.75", "BATON_BUDGET_MONTH_USD": "250"}, check=False
    )
    assert (settings.budget_ticket_usd, settings.budget_month_usd) == (0.75, 250.0)
    none = load_settings({}, check=False)
    assert (none.budget_ticket_usd, none.budget_month_usd) == (None, None)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "ten", "1e7", ""])
def test_a_bad_default_cap_stops_start_up_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"BATON_BUDGET_MONTH_USD": value}, check=False)
    assert "BATON_BUDGET_MONTH_USD" in str(info.value)
