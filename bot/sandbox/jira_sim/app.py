"""The simulated Jira as one Starlette app: REST v2 (+ v3 comments), webhooks, sandbox routes, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware

from bot.sandbox.jira_sim.api_issues import IssueApi, IssueApiV3
from bot.sandbox.jira_sim.api_people import PeopleApi
from bot.sandbox.jira_sim.faults import FaultMiddleware
from bot.sandbox.jira_sim.http import sim_error_handler
from bot.sandbox.jira_sim.sandbox_api import SandboxApi
from bot.sandbox.jira_sim.state import JiraState, SimError
from bot.sandbox.jira_sim.webhooks import WebhookSender


def create_jira_app(state: JiraState, *, webhook_client: httpx.AsyncClient | None = None) -> Starlette:
    """Serve `state`; webhooks are delivered while the app's lifespan runs (uvicorn runs it)."""
    sender = WebhookSender(state, webhook_client)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sender.start()
        try:
            yield
        finally:
            await sender.stop()

    routes = [
        *IssueApiV3(state, sender).routes(),
        *IssueApi(state, sender).routes(),
        *PeopleApi(state).routes(),
    ]
    return Starlette(
        routes=[*routes, *SandboxApi(state, sender).routes()],
        middleware=[Middleware(FaultMiddleware, faults=state.faults)],
        exception_handlers={SimError: sim_error_handler},
        lifespan=lifespan,
    )
