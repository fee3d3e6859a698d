"""CI bodies with GitLab's field names: pipelines and jobs for the REST API (doc/api/pipelines.md,
doc/api/jobs.md), and the Pipeline Hook and Job Hook webhooks (as in the recorded deliveries)."""

from __future__ import annotations

from typing import Any

from bot.sandbox.gitlab_sim.ci_model import CiJob, Pipeline
from bot.sandbox.gitlab_sim.model import MergeRequest, Project
from bot.sandbox.gitlab_sim.payloads import hook_project, hook_time, hook_user
from bot.sandbox.gitlab_sim.render import iso, mr_web_url, user_basic
from bot.sandbox.gitlab_sim.repo import Commit
from bot.sandbox.gitlab_sim.state import GitLabState

DETAILED = {"success": "passed", "failed": "failed", "running": "running", "pending": "pending"}


def pipeline_url(state: GitLabState, p: Project, pipeline: Pipeline) -> str:
    return f"{state.instance_url}/{p.path_with_namespace}/-/pipelines/{pipeline.id}"


def job_url(state: GitLabState, p: Project, job: CiJob) -> str:
    return f"{state.instance_url}/{p.path_with_namespace}/-/jobs/{job.id}"


def pipeline_basic(state: GitLabState, p: Project, pipeline: Pipeline) -> dict[str, Any]:
    """An item of `GET /projects/:id/pipelines` (PipelineBasic)."""
    return {
        "id": pipeline.id,
        "iid": pipeline.iid,
        "project_id": p.id,
        "sha": pipeline.sha,
        "ref": pipeline.ref,
        "status": pipeline.status,
        "source": pipeline.source,
        "created_at": iso(pipeline.created_at),
        "updated_at": iso(pipeline.updated_at),
        "web_url": pipeline_url(state, p, pipeline),
    }


def pipeline(state: GitLabState, p: Project, pipeline: Pipeline) -> dict[str, Any]:
    """`GET /projects/:id/pipelines/:pipeline_id`."""
    status = pipeline.status
    return pipeline_basic(state, p, pipeline) | {
        "before_sha": pipeline.before_sha,
        "tag": False,
        "yaml_errors": None,
        "user": user_basic(state, state.users.get(pipeline.user_id or 0)),
        "started_at": iso(pipeline.started_at),
        "finished_at": iso(pipeline.finished_at),
        "committed_at": None,
        "duration": pipeline.duration,
        "queued_duration": 0.0,
        "coverage": None,
        "detailed_status": {
            "icon": f"status_{status}",
            "text": DETAILED.get(status, status),
            "label": DETAILED.get(status, status),
            "group": status,
            "tooltip": DETAILED.get(status, status),
            "has_details": True,
            "details_path": f"/{p.path_with_namespace}/-/pipelines/{pipeline.id}",
            "illustration": None,
            "favicon": f"/assets/ci_favicons/favicon_status_{status}.png",
        },
    }


def _commit(c: Commit | None, sha: str) -> dict[str, Any]:
    return {
        "id": sha,
        "short_id": sha[:8],
        "title": c.title if c else "",
        "message": (c.message + "\n") if c else "",
        "author_name": c.author_name if c else "",
        "author_email": c.author_email if c else "",
        "created_at": c.committed_date if c else None,
    }


def job(state: GitLabState, p: Project, j: CiJob, pipe: Pipeline, head: Commit | None) -> dict[str, Any]:
    """`GET /projects/:id/jobs/:job_id` and the items of `.../pipelines/:id/jobs` (Job entity)."""
    body: dict[str, Any] = {
        "id": j.id,
        "status": j.status,
        "stage": j.stage,
        "name": j.name,
        "ref": pipe.ref,
        "tag": False,
        "coverage": None,
        "allow_failure": j.allow_failure,
        "created_at": iso(j.created_at),
        "started_at": iso(j.started_at),
        "finished_at": iso(j.finished_at),
        "erased_at": None,
        "duration": j.duration,
        "queued_duration": 0.01,
        "user": user_basic(state, state.users.get(j.user_id or 0)),
        "commit": _commit(head, pipe.sha),
        "pipeline": {
            "id": pipe.id,
            "iid": pipe.iid,
            "project_id": p.id,
            "sha": pipe.sha,
            "ref": pipe.ref,
            "status": pipe.status,
            "source": pipe.source,
            "created_at": iso(pipe.created_at),
            "updated_at": iso(pipe.updated_at),
            "web_url": pipeline_url(state, p, pipe),
        },
        "web_url": job_url(state, p, j),
        "project": {"ci_job_token_scope_enabled": False},
        "artifacts_file": None,
        "artifacts": [
            {"file_type": "trace", "size": len(j.trace), "filename": "job.log", "file_format": None}
        ],
        "runner": None,
        "runner_manager": None,
        "artifacts_expire_at": None,
        "archived": False,
        "tag_list": [],
    }
    if j.status == "failed":
        body["failure_reason"] = j.failure_reason or "script_failure"
    return body


def _build(state: GitLabState, j: CiJob) -> dict[str, Any]:
    """An item of a Pipeline Hook's `builds`."""
    user = state.users.get(j.user_id or 0)
    return {
        "id": j.id,
        "stage": j.stage,
        "name": j.name,
        "status": j.status,
        "created_at": hook_time(j.created_at),
        "started_at": hook_time(j.started_at),
        "finished_at": hook_time(j.finished_at),
        "duration": j.duration,
        "queued_duration": 0.01,
        "failure_reason": j.failure_reason if j.status == "failed" else None,
        "when": "on_success",
        "manual": False,
        "allow_failure": j.allow_failure,
        "user": hook_user(user) if user else None,
        "runner": None,
        "artifacts_file": {"filename": None, "size": None},
        "environment": None,
    }


def _mr(state: GitLabState, p: Project, mr: MergeRequest) -> dict[str, Any]:
    """A Pipeline Hook's `merge_request` (only for merge request pipelines)."""
    return {
        "id": mr.id,
        "iid": mr.iid,
        "title": mr.title,
        "source_branch": mr.source_branch,
        "source_project_id": p.id,
        "target_branch": mr.target_branch,
        "target_project_id": p.id,
        "state": mr.state,
        "merge_status": "can_be_merged",
        "detailed_merge_status": "mergeable",
        "url": mr_web_url(state, p, mr.iid),
    }


def pipeline_hook(
    state: GitLabState,
    p: Project,
    pipe: Pipeline,
    jobs: list[CiJob],
    mr: MergeRequest | None,
    head: Commit | None,
) -> dict[str, Any]:
    """The Pipeline Hook body (object_kind `pipeline`), shaped like GitLab's recorded deliveries."""
    user = state.users.get(pipe.user_id or 0)
    stages = list(dict.fromkeys(j.stage for j in sorted(jobs, key=lambda j: j.id)))
    return {
        "object_kind": "pipeline",
        "object_attributes": {
            "id": pipe.id,
            "iid": pipe.iid,
            "name": None,
            "ref": pipe.ref,
            "tag": False,
            "sha": pipe.sha,
            "before_sha": pipe.before_sha,
            "source": pipe.source,
            "status": pipe.status,
            "detailed_status": DETAILED.get(pipe.status, pipe.status),
            "stages": stages,
            "created_at": hook_time(pipe.created_at),
            "finished_at": hook_time(pipe.finished_at),
            "duration": pipe.duration,
            "queued_duration": 0,
            "variables": [],
            "url": pipeline_url(state, p, pipe),
        },
        "merge_request": _mr(state, p, mr) if mr is not None else None,
        "user": hook_user(user) if user else None,
        "project": hook_project(state, p),
        "commit": {
            "id": pipe.sha,
            "message": (head.message + "\n") if head else "",
            "title": head.title if head else "",
            "timestamp": head.committed_date if head else None,
            "url": f"{state.instance_url}/{p.path_with_namespace}/-/commit/{pipe.sha}",
            "author": {"name": head.author_name if head else "", "email": head.author_email if head else ""},
        },
        "builds": [_build(state, j) for j in jobs],
    }


def job_hook(state: GitLabState, p: Project, pipe: Pipeline, j: CiJob, retries: int) -> dict[str, Any]:
    """The Job Hook body (object_kind `build`)."""
    user = state.users.get(j.user_id or 0)
    web_url = f"{state.instance_url}/{p.path_with_namespace}"
    return {
        "object_kind": "build",
        "ref": pipe.ref,
        "tag": False,
        "before_sha": pipe.before_sha,
        "sha": pipe.sha,
        "build_id": j.id,
        "build_name": j.name,
        "build_stage": j.stage,
        "build_status": j.status,
        "build_created_at": hook_time(j.created_at),
        "build_started_at": hook_time(j.started_at),
        "build_finished_at": hook_time(j.finished_at),
        "build_duration": j.duration,
        "build_queued_duration": 0.01,
        "build_allow_failure": j.allow_failure,
        "build_failure_reason": (j.failure_reason or "script_failure")
        if j.status == "failed"
        else "unknown_failure",
        "retries_count": retries,
        "pipeline_id": pipe.id,
        "project_id": p.id,
        "project_name": p.path_with_namespace.replace("/", " / "),
        "user": hook_user(user) if user else None,
        "commit": {"id": pipe.id, "name": None, "sha": pipe.sha, "status": pipe.status},
        "repository": {
            "name": p.name,
            "url": f"git@sandbox:{p.path_with_namespace}.git",
            "description": None,
            "homepage": web_url,
            "git_http_url": f"{web_url}.git",
            "git_ssh_url": f"git@sandbox:{p.path_with_namespace}.git",
            "visibility_level": 0,
        },
        "runner": None,
        "environment": None,
    }
