"""A GitLab REST v4 simulator that sends real webhooks, with fault knobs and a seeded demo project."""

from bot.sandbox.gitlab_sim.app import create_gitlab_app
from bot.sandbox.gitlab_sim.seed import Demo, seed_demo
from bot.sandbox.gitlab_sim.server import GitLabServer, ServerThread
from bot.sandbox.gitlab_sim.state import GitLabState

__all__ = ["Demo", "GitLabServer", "GitLabState", "ServerThread", "create_gitlab_app", "seed_demo"]
