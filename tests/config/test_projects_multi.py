"""Several projects.yaml entries for one Jira project, one per component: a ticket with several of those
components is a multi-repository ticket whose planner may choose only among them (#13)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.clients.jira import parse_issue
from config.projects import load_projects

MAP = load_projects(
    """
projects:
  - {jira_project: DEMO, gitlab_project: demo/calculator}
  - {jira_project: DEMO, component: catalog, gitlab_project: demo/catalog}
  - {jira_project: DEMO, component: Pricing, gitlab_project: demo/pricing}
  - {jira_project: DEMO, component: storefront, gitlab_project: demo/storefront}
  - {jira_project: OTHER, component: catalog, gitlab_project: other/catalog}
"""
)


@pytest.mark.parametrize(
    ("key", "components", "expected"),
    [
        ("DEMO", ["catalog", "pricing", "storefront"], ["demo/catalog", "demo/pricing", "demo/storefront"]),
        ("demo", [" Catalog ", "PRICING"], ["demo/catalog", "demo/pricing"]),
        ("DEMO", ["catalog"], ["demo/catalog"]),
        ("DEMO", [], []),  # no component: the plain entry is for_jira's, not a multi-repository ticket
        ("DEMO", ["unknown", "../demo/catalog", ""], []),
        ("OTHER", ["catalog", "pricing"], ["other/catalog"]),
        ("NOPE", ["catalog"], []),
    ],
)
def test_all_for_jira(key: str, components: list[str], expected: list[str]) -> None:
    assert [p.gitlab_project for p in MAP.all_for_jira(key, components)] == expected


def _issue(components: Any) -> dict[str, Any]:
    fields = {"summary": "s", "project": {"key": "DEMO"}, "components": components}
    return {"key": "DEMO-1", "id": "1", "fields": fields}


@pytest.mark.parametrize(
    ("components", "expected"),
    [
        ([{"id": "1", "name": "catalog"}, {"id": "2", "name": "pricing"}], ("catalog", "pricing")),
        (None, ()),
        ([], ()),
        ([{"id": "1"}, "catalog", 7, {"name": ""}, {"name": "storefront"}], ("storefront",)),
    ],
)
def test_an_issues_components_are_read_and_junk_is_skipped(
    components: Any, expected: tuple[str, ...]
) -> None:
    assert parse_issue(_issue(components)).components == expected
