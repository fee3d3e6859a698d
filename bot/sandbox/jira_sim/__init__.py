"""A local Jira (REST v2, v3 comments, signed webhooks, fault knobs) for tests and demos."""

from bot.sandbox.jira_sim.app import create_jira_app
from bot.sandbox.jira_sim.demo import APPROVERS_GROUP, DEMO_BOT_TOKEN, DemoWorld, seed_demo
from bot.sandbox.jira_sim.faults import Faults
from bot.sandbox.jira_sim.serve import ServerThread
from bot.sandbox.jira_sim.state import JiraState, WebhookPolicy
from bot.sandbox.jira_sim.webhooks import signature

__all__ = [
    "APPROVERS_GROUP",
    "DEMO_BOT_TOKEN",
    "DemoWorld",
    "Faults",
    "JiraState",
    "ServerThread",
    "WebhookPolicy",
    "create_jira_app",
    "seed_demo",
    "signature",
]
