"""Who may approve, checked against the Jira simulator through the real `jira` client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.clients.jira import JiraClient, JiraConfig
from bot.sandbox import jira_sim
from bot.sandbox.jira_sim.demo import BOT_ACCOUNT_ID, DEMO_BOT_TOKEN
from bot.sandbox.serve import ServerThread
from bot.triggers import Person
from config.projects import load_projects
from config.settings import load_settings
from orchestrators.approval import names_latest, refusal
from tests.clients.ledger import MemoryLedger

PROJECTS = load_projects(
    """
projects:
  - jira_project: DEMO
    gitlab_project: demo/calculator
    approvers: {jira_groups: [baton-approvers], jira_users: [carol]}
"""
)
LENIENT = load_projects(
    """
projects:
  - jira_project: DEMO
    gitlab_project: demo/calculator
    approvers: {jira_groups: [baton-approvers]}
    requester_may_approve: true
"""
)
ALICE = {"account_id": "5d1c0ffee0ba7000b0770002", "name": "alice", "display_name": "Alice Approver"}
DAN = {"account_id": "5d1c0ffee0ba7000b0770003", "name": "dan", "display_name": "Dan Developer"}
BOT = {"account_id": BOT_ACCOUNT_ID, "name": "baton-bot", "display_name": "Baton Bot"}
CAROL = {"name": "carol", "display_name": "Carol (allowlisted)"}
SETTINGS = load_settings({"BATON_SANDBOX": "1", "BATON_JIRA_BOT_ACCOUNT_ID": BOT_ACCOUNT_ID})


@pytest.fixture
def jira() -> Iterator[JiraClient]:
    state = jira_sim.JiraState()
    jira_sim.seed_demo(state)
    with ServerThread(jira_sim.create_jira_app(state)) as served:
        client = JiraClient(
            JiraConfig(served.url, DEMO_BOT_TOKEN, user="baton-bot@example.com"), MemoryLedger()
        )
        yield client


@pytest.mark.parametrize(
    ("who", "requester", "projects", "refused_because"),
    [
        (ALICE, DAN, PROJECTS, None),  # in the approvers' group
        (CAROL, DAN, PROJECTS, None),  # on the allowlist
        (DAN, ALICE, PROJECTS, "only these may approve"),  # neither
        (BOT, DAN, PROJECTS, "never approves its own"),  # the bot, even if it were in the group
        (ALICE, ALICE, PROJECTS, "cannot approve"),  # the requester, by default
        (ALICE, ALICE, LENIENT, None),  # the requester, where the project allows it
        ({}, DAN, PROJECTS, "could not tell who you are"),
        ({"account_id": "../../etc", "name": None}, DAN, PROJECTS, "only these may approve"),
    ],
)
async def test_approval_rules(
    jira: JiraClient,
    who: dict[str, Any],
    requester: dict[str, Any],
    projects: Any,
    refused_because: str | None,
) -> None:
    project = projects.for_jira("DEMO")
    assert project is not None
    reason = await refusal(
        jira, SETTINGS, project, Person.model_validate(who), Person.model_validate(requester)
    )
    if refused_because is None:
        assert reason is None
    else:
        assert reason is not None and refused_because in reason


LATEST_ID, LATEST_SHA = "6eea285241b2", "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("args", "ships"),
    [
        ("", True),  # `/approve` alone: the latest proposal
        ("   ", True),
        (LATEST_ID, True),
        (LATEST_ID.upper(), True),
        (f"{LATEST_ID} looks good", True),
        (LATEST_SHA[:7], True),
        (LATEST_SHA, True),
        ("9f00d1e2c3b4", False),  # an older proposal's id
        ("fedcba9", False),  # another commit's SHA
        (LATEST_SHA[:6], False),  # too short to name a commit
        (LATEST_ID[:-1], False),  # a prefix of the id is not the id
        ("../../etc", False),
        ("0" * 200, False),
    ],
)
def test_approve_must_name_the_latest_proposal(args: str, ships: bool) -> None:
    assert names_latest(LATEST_ID, LATEST_SHA, args) is ships
