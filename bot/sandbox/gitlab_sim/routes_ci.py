"""CI routes: pipelines, their jobs (with retried attempts), job logs; and the sandbox route that runs a
pipeline to a given result with given logs, sending the Pipeline Hook and Job Hook like GitLab."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.sandbox.gitlab_sim import ci_render, repo
from bot.sandbox.gitlab_sim.ci_model import CiJob, Pipeline
from bot.sandbox.gitlab_sim.context import Sim
from bot.sandbox.gitlab_sim.http import as_bool, as_int, authenticate, body_of, paginate, path_value, require
from bot.sandbox.gitlab_sim.model import REPORTER, MergeRequest, Project, SimError, User, now

JOB_STATUSES = ("success", "failed", "canceled", "skipped", "manual", "created", "pending", "running")
MAX_TRACE = 64 * 1024 * 1024


def _matches(pipe: Pipeline, query: dict[str, str]) -> bool:
    return all(query.get(name, value) == value for name, value in (
        ("ref", pipe.ref), ("sha", pipe.sha), ("status", pipe.status), ("source", pipe.source),
    ))  # fmt: skip


def _trace(spec: dict[str, Any]) -> bytes:
    """A job's log from `trace` (text) or `trace_base64` (any bytes)."""
    if spec.get("trace_base64") is not None:
        try:
            raw = base64.b64decode(str(spec["trace_base64"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SimError(400, "400 Bad request - trace_base64 is not base64") from exc
    else:
        raw = str(spec.get("trace") or "").encode()
    if len(raw) > MAX_TRACE:
        raise SimError(400, "400 Bad request - trace is too large")
    return raw


def _attempt(spec: dict[str, Any]) -> dict[str, Any]:
    status = str(spec.get("status") or "success")
    if status not in JOB_STATUSES:
        raise SimError(400, f"400 Bad request - unknown job status {status[:20]!r}")
    failed = status == "failed"
    return {
        "status": status,
        "trace": _trace(spec),
        "failure_reason": (str(spec.get("failure_reason") or "script_failure") if failed else None),
        "allow_failure": as_bool(spec.get("allow_failure", False)),
    }


class CiRoutes:
    """`/projects/:id/pipelines…`, `/projects/:id/jobs/:job_id[/trace]`, `/_sandbox/pipelines`."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.state = sim.state
        self.ci = sim.state.ci

    def _project(self, request: Request) -> Project:
        user = authenticate(self.state, request)
        project = self.state.project(path_value(request, "project"))
        require(self.state, project, user, REPORTER)
        return project

    def _pipe(self, request: Request) -> tuple[Project, Pipeline]:
        project = self._project(request)
        return project, self.ci.pipeline(project.id, as_int(request.path_params["pipeline_id"], "Pipeline"))

    async def _head(self, project: Project, sha: str) -> repo.Commit | None:
        return await asyncio.to_thread(repo.commit_info, project.repo_path, sha)

    async def list_pipelines(self, request: Request) -> Response:
        project = self._project(request)
        query = dict(request.query_params)
        found = [p for p in self.ci.pipelines_of(project.id) if _matches(p, query)]
        found.sort(key=lambda p: p.id, reverse=query.get("sort", "desc") == "desc")
        return paginate(request, [ci_render.pipeline_basic(self.state, project, p) for p in found])

    async def mr_pipelines(self, request: Request) -> Response:
        project = self._project(request)
        mr = self.state.merge_request(project, as_int(request.path_params["iid"], "Merge Request"))
        found = [p for p in self.ci.pipelines_of(project.id) if p.merge_request_iid == mr.iid]
        found.sort(key=lambda p: p.id, reverse=True)
        return paginate(request, [ci_render.pipeline_basic(self.state, project, p) for p in found])

    async def get_pipeline(self, request: Request) -> Response:
        project, pipe = self._pipe(request)
        return JSONResponse(ci_render.pipeline(self.state, project, pipe))

    async def pipeline_jobs(self, request: Request) -> Response:
        project, pipe = self._pipe(request)
        scope = request.query_params.getlist("scope[]") or request.query_params.getlist("scope")
        retried = as_bool(request.query_params.get("include_retried", False))
        jobs = [j for j in self.ci.jobs_of(pipe, include_retried=retried) if not scope or j.status in scope]
        head = await self._head(project, pipe.sha)
        return paginate(request, [ci_render.job(self.state, project, j, pipe, head) for j in jobs])

    async def get_job(self, request: Request) -> Response:
        project = self._project(request)
        found = self.ci.job(project.id, as_int(request.path_params["job_id"], "Job"))
        pipe = self.ci.pipeline(project.id, found.pipeline_id)
        head = await self._head(project, pipe.sha)
        return JSONResponse(ci_render.job(self.state, project, found, pipe, head))

    async def job_trace(self, request: Request) -> Response:
        project = self._project(request)
        found = self.ci.job(project.id, as_int(request.path_params["job_id"], "Job"))
        return Response(found.trace, media_type="text/plain; charset=utf-8")

    # -- the sandbox: run a pipeline to a given result --------------------------------------------

    def _jobs(self, pipe: Pipeline, specs: list[Any], user: User | None) -> list[CiJob]:
        """Each job's earlier `attempts` (now retried) and then the job itself, all finished."""
        made = []
        for spec in specs:
            if not isinstance(spec, dict) or not spec.get("name"):
                raise SimError(400, "400 Bad request - each job needs a name")
            name, stage = str(spec["name"]), str(spec.get("stage") or "test")
            for attempt in [*(spec.get("attempts") or []), spec]:
                fields = _attempt(attempt if isinstance(attempt, dict) else {})
                moment = now()
                made.append(self.ci.add_job(
                    pipe, name, stage, user_id=user.id if user else None, started_at=moment,
                    finished_at=moment, **fields,
                ))  # fmt: skip
        return made

    async def run_pipeline(self, request: Request) -> Response:
        """Body: `project`, `merge_request_iid` (optional), `ref`/`sha` (default: the MR's source branch
        and its head), `user` (default: the MR's author), `jobs`: `[{name, stage, status, trace |
        trace_base64, failure_reason, allow_failure, attempts: [earlier attempts, same fields]}]`.
        Sends a Pipeline Hook (`running`), a Job Hook per attempt, and the final Pipeline Hook."""
        data = await body_of(request)
        project = self.state.project(str(data.get("project", "")))
        mr: MergeRequest | None = None
        if data.get("merge_request_iid") is not None:
            mr = self.state.merge_request(project, int(data["merge_request_iid"]))
        ref = str(data.get("ref") or (mr.source_branch if mr else project.default_branch))
        head_sha = await asyncio.to_thread(repo.branch_head, project.repo_path, ref)
        sha = str(data.get("sha") or "") or head_sha or ""
        if not sha:
            raise SimError(400, f"400 Bad request - no commit for {ref[:60]!r}")
        user = self.state.user_named(str(data["user"])) if data.get("user") else None
        user = user or (self.state.users.get(mr.author_id) if mr else None)
        source = "merge_request_event" if mr else "push"
        pipe = self.ci.add_pipeline(
            project.id, sha, ref, source, user_id=user.id if user else None,
            merge_request_iid=mr.iid if mr else None, status="running", started_at=now(),
        )  # fmt: skip
        jobs = self._jobs(pipe, list(data.get("jobs") or []), user)
        head = await self._head(project, sha)
        self.sim.sender.emit(
            project.id, "Pipeline Hook", ci_render.pipeline_hook(self.state, project, pipe, [], mr, head)
        )
        for job in jobs:
            retries = sum(1 for j in jobs if (j.name, j.stage) == (job.name, job.stage) and j.id < job.id)
            self.sim.sender.emit(
                project.id, "Job Hook", ci_render.job_hook(self.state, project, pipe, job, retries)
            )
        self.ci.finish(pipe)
        latest = self.ci.jobs_of(pipe)
        self.sim.sender.emit(
            project.id, "Pipeline Hook", ci_render.pipeline_hook(self.state, project, pipe, latest, mr, head)
        )
        return JSONResponse(ci_render.pipeline(self.state, project, pipe), status_code=201)

    def routes(self) -> list[Route]:
        prefix = "/api/v4/projects/{project}"
        return [
            Route(prefix + "/pipelines", self.list_pipelines, methods=["GET"]),
            Route(prefix + "/pipelines/{pipeline_id}", self.get_pipeline, methods=["GET"]),
            Route(prefix + "/pipelines/{pipeline_id}/jobs", self.pipeline_jobs, methods=["GET"]),
            Route(prefix + "/merge_requests/{iid}/pipelines", self.mr_pipelines, methods=["GET"]),
            Route(prefix + "/jobs/{job_id}", self.get_job, methods=["GET"]),
            Route(prefix + "/jobs/{job_id}/trace", self.job_trace, methods=["GET"]),
            Route("/_sandbox/pipelines", self.run_pipeline, methods=["POST"]),
        ]


def routes(sim: Sim) -> list[Route]:
    return CiRoutes(sim).routes()
