"""REST routes for the current user, projects, members, project hooks and repository branches."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.sandbox.gitlab_sim import render, repo
from bot.sandbox.gitlab_sim.context import Sim
from bot.sandbox.gitlab_sim.http import as_bool, as_int, authenticate, body_of, paginate, path_value, require
from bot.sandbox.gitlab_sim.model import GUEST, MAINTAINER, REPORTER, SimError, not_found

HOOK_EVENTS = (
    "push_events",
    "note_events",
    "merge_requests_events",
    "issues_events",
    "pipeline_events",
    "job_events",
    "enable_ssl_verification",
)


def routes(sim: Sim) -> list[Route]:
    state = sim.state

    async def current_user(request: Request) -> Response:
        return JSONResponse(render.current_user(state, authenticate(state, request)))

    async def get_project(request: Request) -> Response:
        user = authenticate(state, request)
        project = state.project(path_value(request, "project"))
        require(state, project, user, GUEST)
        return JSONResponse(render.project(state, project))

    async def member_all(request: Request) -> Response:
        user = authenticate(state, request)
        project = state.project(path_value(request, "project"))
        require(state, project, user, GUEST)
        member = state.users.get(as_int(request.path_params["user_id"], "Member"))
        level = state.access_level(project, member) if member else 0
        if member is None or level == 0:
            raise not_found("Member")
        return JSONResponse(render.member(state, member, level))

    async def list_hooks(request: Request) -> Response:
        user = authenticate(state, request)
        project = state.project(path_value(request, "project"))
        require(state, project, user, MAINTAINER)
        return paginate(request, [render.hook(h) for h in state.hooks_of(project.id)])

    async def create_hook(request: Request) -> Response:
        user = authenticate(state, request)
        project = state.project(path_value(request, "project"))
        require(state, project, user, MAINTAINER)
        data = await body_of(request)
        if not data.get("url"):
            raise SimError(400, "400 Bad request - url is missing")
        events = {name: as_bool(data[name]) for name in HOOK_EVENTS if name in data}
        hook = state.add_hook(project, str(data["url"]), token=str(data.get("token") or ""), events=events)
        return JSONResponse(render.hook(hook), status_code=201)

    async def get_branch(request: Request) -> Response:
        user = authenticate(state, request)
        project = state.project(path_value(request, "project"))
        require(state, project, user, REPORTER)
        name = path_value(request, "branch")
        sha = await asyncio.to_thread(repo.branch_head, project.repo_path, name)
        if sha is None:
            raise not_found("Branch")
        commit = await asyncio.to_thread(repo.commit_info, project.repo_path, sha)
        return JSONResponse(render.branch(state, project, name, commit))

    prefix = "/api/v4/projects/{project}"
    return [
        Route("/api/v4/user", current_user, methods=["GET"]),
        Route(prefix, get_project, methods=["GET"]),
        Route(prefix + "/members/all/{user_id}", member_all, methods=["GET"]),
        Route(prefix + "/hooks", list_hooks, methods=["GET"]),
        Route(prefix + "/hooks", create_hook, methods=["POST"]),
        Route(prefix + "/repository/branches/{branch:path}", get_branch, methods=["GET"]),
    ]
