"""REST routes for merge requests: list (filters), create, get, update, merge, changes and diffs."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.sandbox.gitlab_sim import render, repo
from bot.sandbox.gitlab_sim.context import Sim
from bot.sandbox.gitlab_sim.http import as_int, authenticate, body_of, paginate, path_value, require
from bot.sandbox.gitlab_sim.model import (
    DEVELOPER,
    GUEST,
    MAINTAINER,
    MergeRequest,
    Project,
    SimError,
    User,
    now,
)

DRAFT_PREFIXES = ("draft:", "[draft]", "(draft)")
STATE_EVENTS = {"close": ("closed", "close"), "reopen": ("opened", "reopen")}
UPDATABLE = ("title", "description", "target_branch")


def labels_of(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


def is_draft(title: str, flag: Any) -> bool:
    return title.strip().lower().startswith(DRAFT_PREFIXES) or flag in (True, "true")


def matches(mr: MergeRequest, query: dict[str, str]) -> bool:
    wanted_state = query.get("state", "all")
    return (
        (wanted_state == "all" or mr.state == wanted_state)
        and query.get("source_branch", mr.source_branch) == mr.source_branch
        and query.get("target_branch", mr.target_branch) == mr.target_branch
    )


def apply_update(mr: MergeRequest, data: dict[str, Any]) -> str:
    """Apply a `PUT` body to the MR; returns the MR Hook action (`update`, `close`, `reopen`)."""
    for name in UPDATABLE:
        if name in data:
            setattr(mr, name, str(data[name]))
    if "labels" in data:
        mr.labels = labels_of(data["labels"])
    mr.draft = is_draft(mr.title, data.get("draft", mr.draft))
    mr.state, action = STATE_EVENTS.get(str(data.get("state_event")), (mr.state, "update"))
    mr.updated_at = now()
    return action


def heads(project: Project, mrs: list[MergeRequest]) -> list[render.MrGit]:
    found = [repo.branch_head(project.repo_path, mr.source_branch) or mr.head_sha for mr in mrs]
    return [render.MrGit(head, None, None, None) for head in found]


async def file_changes(project: Project, git: render.MrGit) -> list[repo.FileChange]:
    if not (git.base_sha and git.head_sha):
        return []
    return await asyncio.to_thread(repo.changes, project.repo_path, git.base_sha, git.head_sha)


class MergeRequestRoutes:
    """`/projects/:id/merge_requests[/:iid[/changes|/diffs]]`."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.state = sim.state

    def _project(self, request: Request, level: int) -> tuple[User, Project]:
        user = authenticate(self.state, request)
        project = self.state.project(path_value(request, "project"))
        require(self.state, project, user, level)
        return user, project

    def _lookup(self, request: Request, level: int) -> tuple[User, Project, MergeRequest]:
        user, project = self._project(request, level)
        return (
            user,
            project,
            self.state.merge_request(project, as_int(request.path_params["iid"], "Merge Request")),
        )

    async def list_mrs(self, request: Request) -> Response:
        _, project = self._project(request, GUEST)
        query = dict(request.query_params)
        found = [mr for mr in self.state.merge_requests_of(project) if matches(mr, query)]
        found.sort(key=lambda mr: mr.id, reverse=query.get("sort", "desc") == "desc")
        gits = await asyncio.to_thread(heads, project, found)
        bodies = [render.merge_request(self.state, project, mr, g) for mr, g in zip(found, gits, strict=True)]
        return paginate(request, bodies)

    async def create(self, request: Request) -> Response:
        user, project = self._project(request, DEVELOPER)
        data = await body_of(request)
        missing = [k for k in ("source_branch", "target_branch", "title") if not data.get(k)]
        if missing:
            raise SimError(400, f"400 Bad request - {', '.join(missing)} is missing")
        head = await asyncio.to_thread(repo.branch_head, project.repo_path, str(data["source_branch"]))
        target = await asyncio.to_thread(repo.branch_head, project.repo_path, str(data["target_branch"]))
        if head is None or target is None:
            raise SimError(400, "400 Bad request - source or target branch does not exist")
        draft = is_draft(str(data["title"]), data.get("draft"))
        fields = data | {"labels": labels_of(data.get("labels")), "draft": draft, "head_sha": head}
        mr = self.state.create_merge_request(project, user, fields)
        await self.sim.mr_event(project, mr, user, "open")
        body = render.merge_request(self.state, project, mr, await self.sim.mr_git(project, mr), single=True)
        return JSONResponse(body, status_code=201)

    async def get(self, request: Request) -> Response:
        _, project, mr = self._lookup(request, GUEST)
        git = await self.sim.mr_git(project, mr)
        return JSONResponse(render.merge_request(self.state, project, mr, git, single=True))

    async def update(self, request: Request) -> Response:
        user, project, mr = self._lookup(request, DEVELOPER)
        data = await body_of(request)
        action = self.state.locked(lambda: apply_update(mr, data))
        await self.sim.mr_event(project, mr, user, action)
        git = await self.sim.mr_git(project, mr)
        return JSONResponse(render.merge_request(self.state, project, mr, git, single=True))

    async def merge(self, request: Request) -> Response:
        """`PUT .../merge`: a merge commit on the target branch (maintainers only for the default branch),
        `sha` (if given) must be the source head; then the Merge Request Hook with `action: merge`."""
        user, project, mr = self._lookup(request, DEVELOPER)
        if mr.target_branch == project.default_branch:
            require(self.state, project, user, MAINTAINER)
        data = await body_of(request)
        if mr.state != "opened" or mr.draft:
            raise SimError(405, "405 Method Not Allowed")
        head = await asyncio.to_thread(repo.branch_head, project.repo_path, mr.source_branch)
        if head is None:
            raise SimError(406, "Branch cannot be merged")
        if data.get("sha") and str(data["sha"]) != head:
            raise SimError(409, "SHA does not match HEAD of source branch")
        start = await asyncio.to_thread(repo.branch_head, project.repo_path, mr.target_branch)
        base = await asyncio.to_thread(repo.merge_base, project.repo_path, start, head) if start else None
        message = str(data.get("merge_commit_message") or "") or (
            f"Merge branch '{mr.source_branch}' into '{mr.target_branch}'\n\n{mr.title}\n\n"
            f"See merge request {project.path_with_namespace}!{mr.iid}"
        )
        try:
            sha = await asyncio.to_thread(
                repo.merge, project.repo_path, mr.target_branch, head, message, (user.name, user.email)
            )
        except repo.GitError as exc:
            raise SimError(406, "Branch cannot be merged") from exc

        def merged() -> None:
            mr.state, mr.head_sha, mr.merge_commit_sha, mr.merged_base = "merged", head, sha, base
            mr.updated_at = now()

        self.state.locked(merged)
        await self.sim.mr_event(project, mr, user, "merge")
        git = await self.sim.mr_git(project, mr)
        return JSONResponse(render.merge_request(self.state, project, mr, git, single=True))

    async def changes(self, request: Request) -> Response:
        _, project, mr = self._lookup(request, GUEST)
        git = await self.sim.mr_git(project, mr)
        found = [render.file_change(c) for c in await file_changes(project, git)]
        body = render.merge_request(self.state, project, mr, git, single=True)
        return JSONResponse(body | {"changes": found, "overflow": False})

    async def diffs(self, request: Request) -> Response:
        _, project, mr = self._lookup(request, GUEST)
        found = await file_changes(project, await self.sim.mr_git(project, mr))
        return paginate(request, [render.file_change(c) for c in found])

    def routes(self) -> list[Route]:
        prefix = "/api/v4/projects/{project}/merge_requests"
        return [
            Route(prefix, self.list_mrs, methods=["GET"]),
            Route(prefix, self.create, methods=["POST"]),
            Route(prefix + "/{iid}", self.get, methods=["GET"]),
            Route(prefix + "/{iid}", self.update, methods=["PUT"]),
            Route(prefix + "/{iid}/merge", self.merge, methods=["PUT"]),
            Route(prefix + "/{iid}/changes", self.changes, methods=["GET"]),
            Route(prefix + "/{iid}/diffs", self.diffs, methods=["GET"]),
        ]


def routes(sim: Sim) -> list[Route]:
    return MergeRequestRoutes(sim).routes()
