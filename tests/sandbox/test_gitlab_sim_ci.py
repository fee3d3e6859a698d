"""The GitLab simulator's CI: pipelines, their jobs with retried attempts, job logs, through python-gitlab
as Baton reads them; and `/_sandbox/pipelines`, which runs a pipeline to a result and sends the Pipeline
Hook and Job Hook shaped like the recorded deliveries (tests/fixtures/gitlab/pipeline_mr.json and
tests/fixtures/unusual/gitlab/job.json), which Baton's handler reads."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gitlab
import httpx
import pytest

from bot.clients.gitlab import GitLabClient
from bot.clients.retry import RetryPolicy
from bot.sandbox.gitlab_sim import repo, seed_demo
from bot.sandbox.gitlab_sim.server import GitLabServer
from bot.sandbox.gitlab_sim.state import GitLabState
from bot.triggers import PipelineFailed
from handlers import route
from handlers.actions import Enqueue, Ignore
from handlers.context import HandlerContext
from tests.sandbox.test_gitlab_sim import Receiver, World, add_hook, missing_keys
from tests.sandbox.test_gitlab_sim import receiver as receiver  # the fixture
from tests.support.fakes import FakeLedger

BRANCH = "baton/DEMO-1-add-mul"
FIXTURES = Path(__file__).parents[1] / "fixtures"
TRACE = "$ python -m pytest -q\nFAILED tests/test_calculator.py::test_mul - assert 5 == 6\n1 failed\n"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    state = GitLabState()
    state.webhook_retry_delays_s = (0.02, 0.05, 0.1)
    demo = seed_demo(state, tmp_path)
    mul = {"mul.py": "def mul(a, b):\n    return a + b\n"}
    repo.commit_files(demo.project.repo_path, BRANCH, mul, "Add mul", start_from="main")
    with GitLabServer(state) as server:
        project = gitlab.Gitlab(server.base_url, private_token=demo.bot.token).projects.get(demo.project.id)
        project.mergerequests.create(
            {"source_branch": BRANCH, "target_branch": "main", "title": "DEMO-1: mul"}
        )
        yield World(state, demo, server.base_url)


def run_pipeline(world: World, jobs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"project": "demo/calculator", "merge_request_iid": 1, "jobs": jobs, **extra}
    answer = httpx.post(f"{world.url}/_sandbox/pipelines", json=body, timeout=10)
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


RUNNER_DIED = {"status": "failed", "failure_reason": "runner_system_failure", "trace": "system failure"}
JOBS: list[dict[str, Any]] = [
    {"name": "lint", "stage": "test", "status": "success", "trace": "$ ruff check .\nAll checks passed!\n"},
    {"name": "test", "stage": "test", "status": "failed", "trace": TRACE, "attempts": [RUNNER_DIED]},
    {"name": "docs", "stage": "test", "status": "failed", "allow_failure": True, "trace": "warning\n"},
]  # fmt: skip


def test_pipelines_jobs_retries_and_logs_read_through_python_gitlab(world: World) -> None:
    made = run_pipeline(world, JOBS)
    head = repo.branch_head(world.demo.project.repo_path, BRANCH)
    project = world.client(world.demo.bot.token).projects.get(world.demo.project.id)

    listed = project.pipelines.list(ref=BRANCH, get_all=True)
    assert [(p.id, p.status, p.sha, p.source) for p in listed] == [
        (made["id"], "failed", head, "merge_request_event")
    ]
    pipeline = project.pipelines.get(made["id"])
    assert pipeline.detailed_status["group"] == "failed" and pipeline.user["username"] == "baton-bot"
    latest = pipeline.jobs.list(get_all=True)
    every = pipeline.jobs.list(include_retried=True, get_all=True)
    assert [j.name for j in latest] == ["docs", "test", "lint"]  # newest first, retried attempt left out
    assert sorted(j.name for j in every) == ["docs", "lint", "test", "test"]
    failed = next(j for j in latest if j.name == "test")
    assert (failed.status, failed.failure_reason, failed.pipeline["id"]) == (
        "failed",
        "script_failure",
        made["id"],
    )
    assert "failure_reason" not in next(j for j in latest if j.name == "lint").attributes
    assert project.jobs.get(failed.id, lazy=True).trace() == TRACE.encode()
    assert project.mergerequests.get(1).pipelines.list()[0].id == made["id"]
    with pytest.raises(gitlab.exceptions.GitlabGetError):
        project.jobs.get(999_999)
    guest = world.client(world.demo.guest.token).projects.get(world.demo.project.id, lazy=True)
    with pytest.raises(gitlab.exceptions.GitlabListError):
        guest.pipelines.list()  # private project: CI is for reporters and above


async def test_baton_s_client_reads_the_tail_of_a_huge_binary_log(world: World) -> None:
    noise = bytes(range(256)) * 8192  # 2 MB of every byte value
    encoded = base64.b64encode(noise + TRACE.encode()).decode()
    made = run_pipeline(world, [{"name": "test", "status": "failed", "trace_base64": encoded}])
    client = GitLabClient(world.url, world.demo.bot.token, FakeLedger(), read_policy=RetryPolicy(attempts=1))
    maintainer = GitLabClient(world.url, world.demo.maintainer.token, FakeLedger())
    try:
        hook = await maintainer.add_project_hook(
            world.demo.project.id, "http://127.0.0.1:9/h", "s", {"pipeline_events": True}
        )
        assert (
            hook.pipeline_events
            and (await maintainer.project_hooks(world.demo.project.id))[0].pipeline_events
        )
        jobs = await client.pipeline_jobs(world.demo.project.id, made["id"])
        tail, cut = await client.job_trace(world.demo.project.id, jobs[0].id, tail_bytes=4096)
        pipeline = await client.pipeline(world.demo.project.id, made["id"])
        latest = await client.latest_pipeline(world.demo.project.id, BRANCH)
    finally:
        client.close()
        maintainer.close()
    assert cut and len(tail) == 4096 and tail.endswith(TRACE.encode())
    assert (pipeline.status, jobs[0].failure_reason, latest) == ("failed", "script_failure", pipeline)


def test_a_pipeline_run_sends_pipeline_and_job_hooks_like_gitlab(
    world: World, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    add_hook(world, url, pipeline_events=True, job_events=True)
    made = run_pipeline(world, JOBS)

    world.state.wait_for(lambda: len(rec.received) == 6, timeout=10)  # running, 4 job attempts, failed
    pipelines = {
        b["object_attributes"]["status"]: b for h, b in rec.received if h["x-gitlab-event"] == "Pipeline Hook"
    }
    jobs = [b for h, b in rec.received if h["x-gitlab-event"] == "Job Hook"]
    assert set(pipelines) == {"running", "failed"} and len(jobs) == 4  # deliveries run concurrently
    final = pipelines["failed"]
    assert missing_keys(json.loads((FIXTURES / "gitlab" / "pipeline_mr.json").read_text()), final,
                        skip=frozenset({"source_pipeline"})) == []  # fmt: skip
    assert (final["merge_request"]["iid"], final["merge_request"]["source_branch"]) == (1, BRANCH)
    assert {b["name"]: b["status"] for b in final["builds"]} == {
        "lint": "success",
        "test": "failed",
        "docs": "failed",
    }
    retry = max((b for b in jobs if b["build_name"] == "test"), key=lambda b: b["build_id"])
    assert missing_keys(json.loads((FIXTURES / "unusual" / "gitlab" / "job.json").read_text()), retry,
                        skip=frozenset({"commit", "environment", "runner"})) == []  # fmt: skip
    assert (retry["retries_count"], retry["build_failure_reason"]) == (1, "script_failure")

    ctx = HandlerContext()
    action = route("gitlab", final, ctx)
    assert isinstance(action, Enqueue) and action.kind == "analyze-ci"
    assert isinstance(action.input, PipelineFailed)
    assert (action.input.pipeline_id, action.input.mr_iid, action.origin) == (
        made["id"], 1, f"gitlab:pipeline:1:{made['id']}:failed"
    )  # fmt: skip
    for body in [pipelines["running"], *jobs]:  # the running pipeline and the job hooks start nothing
        assert isinstance(route("gitlab", body, ctx), Ignore)


def test_bad_sandbox_pipelines_are_refused(world: World) -> None:
    for body in (
        {"project": "demo/calculator", "merge_request_iid": 1, "jobs": [{"stage": "test"}]},
        {"project": "demo/calculator", "merge_request_iid": 1, "jobs": [{"name": "t", "status": "exploded"}]},
        {"project": "demo/calculator", "merge_request_iid": 1, "jobs": [{"name": "t", "trace_base64": "!!"}]},
        {"project": "demo/calculator", "ref": "no-such-branch", "jobs": []},
    ):
        assert httpx.post(f"{world.url}/_sandbox/pipelines", json=body, timeout=10).status_code == 400
