"""The simulated GitLab as a Starlette app: REST v4 routes, sandbox routes, faults, webhook sender."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.sandbox.git_http import GitHttpBackend, RefUpdate
from bot.sandbox.gitlab_sim import routes_ci, routes_mrs, routes_notes, routes_projects, routes_sandbox
from bot.sandbox.gitlab_sim.context import Sim
from bot.sandbox.gitlab_sim.faults import FaultMiddleware
from bot.sandbox.gitlab_sim.http import EncodedSlashMiddleware, error_response
from bot.sandbox.gitlab_sim.model import SimError
from bot.sandbox.gitlab_sim.state import GitLabState
from bot.sandbox.gitlab_sim.webhooks import WebhookSender


def http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and methods answer like GitLab's API: `{"error": "404 Not Found"}`."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": f"{exc.status_code} {exc.detail}"}, status_code=exc.status_code)


def git_backend(sim: Sim, root: Path, token: str) -> GitHttpBackend:
    """Smart-HTTP git over the bare repositories under `root`; a push that moves a branch sends MR Hooks."""

    async def on_push(update: RefUpdate) -> None:
        repo = update.repo.removesuffix(".git")  # `group/project`, as in the URL
        project = sim.state.project_at(root / f"{repo}.git") or sim.state.project_at(root / repo)
        if project is None or not update.ref.startswith("refs/heads/"):
            return
        actor = next((u for u in list(sim.state.users.values()) if u.username == update.user), None)
        await sim.branch_moved(project, update.ref.removeprefix("refs/heads/"), actor)

    return GitHttpBackend(root, token, on_push=on_push)


def create_gitlab_app(
    state: GitLabState, *, git_root: Path | None = None, git_token: str | None = None
) -> Starlette:
    """A GitLab REST v4 simulator over `state`; webhooks are sent while the app's lifespan runs.

    With `git_root` and `git_token`, the bare repositories under `git_root` are also served over smart
    HTTP at `/<namespace>/<project>.git` (Basic auth, any username, `git_token` as password).
    """
    sim = Sim(state, WebhookSender(state))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sim.sender.start()
        try:
            yield
        finally:
            await sim.sender.aclose()

    routes: list[BaseRoute] = [
        *routes_projects.routes(sim),
        *routes_mrs.routes(sim),
        *routes_notes.routes(sim),
        *routes_sandbox.routes(sim),
        *routes_ci.routes(sim),
    ]
    if git_root is not None and git_token:
        routes.append(
            Route("/{repo:path}.git/{action:path}", git_backend(sim, git_root.resolve(), git_token))
        )
    return Starlette(
        routes=routes,
        middleware=[Middleware(EncodedSlashMiddleware), Middleware(FaultMiddleware, plan=state.faults)],
        exception_handlers={SimError: error_response, HTTPException: http_error},
        lifespan=lifespan,
    )
