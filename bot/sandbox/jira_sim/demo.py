"""The demo world: a bot account, an approver, a developer, project DEMO with a precise and a vague ticket."""

from __future__ import annotations

from dataclasses import dataclass

from bot.sandbox.jira_sim.model import Issue, User
from bot.sandbox.jira_sim.state import JiraState

APPROVERS_GROUP = "baton-approvers"
BOT_ACCOUNT_ID = "5d1c0ffee0ba7000b0770001"
DEMO_BOT_TOKEN = "sandbox-jira-bot-token"  # noqa: S105 - a sandbox credential, useless outside the simulator
DEMO_APPROVER_TOKEN = "sandbox-jira-approver-token"  # noqa: S105
DEMO_DEVELOPER_TOKEN = "sandbox-jira-developer-token"  # noqa: S105

# DEMO's components, one per service repository of the sandbox (config/projects.example.yaml maps
# each to demo/<component>); a ticket with several spans several repositories.
DEMO_COMPONENTS = ("catalog", "pricing", "inventory", "storefront")

MULTIPLY_DESCRIPTION = """\
The calculator module ({{calculator.py}}) can add and subtract but cannot multiply.

h3. Acceptance criteria
* {{multiply(a, b)}} returns the product of two numbers; ints and floats are both accepted.
* {{multiply(0, x)}} is 0 for any x, and signs follow the usual rules ({{multiply(-2, 3) == -6}}).
* Tests in {{tests/test_calculator.py}} cover positive, negative, zero and float inputs.
* The existing functions and their tests are unchanged."""


@dataclass(frozen=True)
class DemoWorld:
    bot: User
    approver: User
    developer: User
    precise: Issue
    vague: Issue


def seed_demo(state: JiraState, *, bot_token: str = DEMO_BOT_TOKEN) -> DemoWorld:
    """Populate `state` with the demo accounts and tickets (call once, on an empty state)."""
    bot = state.add_user(
        "Baton Bot",
        account_id=BOT_ACCOUNT_ID,
        name="baton-bot",
        email="baton-bot@example.com",
        api_token=bot_token,
    )
    approver = state.add_user(
        "Alice Approver",
        account_id="5d1c0ffee0ba7000b0770002",
        name="alice",
        email="alice@example.com",
        api_token=DEMO_APPROVER_TOKEN,
        groups=[APPROVERS_GROUP],
    )
    developer = state.add_user(
        "Dan Developer",
        account_id="5d1c0ffee0ba7000b0770003",
        name="dan",
        email="dan@example.com",
        api_token=DEMO_DEVELOPER_TOKEN,
        groups=["developers"],
    )
    state.add_project("DEMO", "Demo calculator")
    precise = state.add_issue(
        "DEMO",
        "Add a multiply function to the calculator",
        MULTIPLY_DESCRIPTION,
        reporter=developer.account_id,
    )
    vague = state.add_issue("DEMO", "Make it better", "It should be better.", reporter=developer.account_id)
    state.add_link(vague.key, precise.key, "Relates")
    for component in DEMO_COMPONENTS:  # after the issues, so their ids stay what they were
        state.add_component("DEMO", component)
    return DemoWorld(bot, approver, developer, precise, vague)
