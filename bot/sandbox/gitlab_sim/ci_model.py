"""The simulator's CI records: pipelines and their jobs (every attempt, with its log), under one lock."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from bot.sandbox.gitlab_sim.model import not_found, now

FINISHED = ("success", "failed", "canceled", "skipped")


@dataclass
class CiJob:
    id: int
    pipeline_id: int
    project_id: int
    name: str
    stage: str
    status: str  # created | pending | running | success | failed | canceled | skipped | manual
    trace: bytes = b""
    failure_reason: str | None = None  # e.g. script_failure, runner_system_failure (only when failed)
    allow_failure: bool = False
    retried: bool = False  # a newer attempt of the same job exists
    user_id: int | None = None
    created_at: datetime = field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass
class Pipeline:
    id: int
    iid: int
    project_id: int
    sha: str
    ref: str
    status: str
    source: str  # push | merge_request_event | web | api | ...
    user_id: int | None = None
    merge_request_iid: int | None = None
    before_sha: str = "0" * 40
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def duration(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds())


class CiRecords:
    """Pipelines and jobs of every project (ids are instance-wide, like GitLab's)."""

    def __init__(self) -> None:
        self.pipelines: dict[int, Pipeline] = {}
        self.jobs: dict[int, CiJob] = {}
        self._ids = {"pipeline": 0, "job": 0}
        self._iids: dict[int, int] = {}
        self._lock = threading.RLock()

    def _next(self, kind: str, start: int) -> int:
        self._ids[kind] = max(self._ids[kind] + 1, start)
        return self._ids[kind]

    def add_pipeline(self, project_id: int, sha: str, ref: str, source: str, **extra: object) -> Pipeline:
        with self._lock:
            iid = self._iids.get(project_id, 0) + 1
            self._iids[project_id] = iid
            pipeline = Pipeline(self._next("pipeline", 100), iid, project_id, sha, ref, "created", source)
            for name, value in extra.items():
                setattr(pipeline, name, value)
            self.pipelines[pipeline.id] = pipeline
            return pipeline

    def add_job(self, pipeline: Pipeline, name: str, stage: str, **extra: object) -> CiJob:
        """A new attempt of `name`; an earlier attempt of the same job becomes `retried`."""
        with self._lock:
            for other in self.jobs_of(pipeline, include_retried=True):
                if (other.name, other.stage) == (name, stage):
                    other.retried = True
            job = CiJob(self._next("job", 1000), pipeline.id, pipeline.project_id, name, stage, "created")
            for field_name, value in extra.items():
                setattr(job, field_name, value)
            self.jobs[job.id] = job
            return job

    def finish(self, pipeline: Pipeline) -> str:
        """The pipeline's status from its latest attempts: failed if one failed that may not, else success."""
        with self._lock:
            latest = self.jobs_of(pipeline)
            failed = any(j.status == "failed" and not j.allow_failure for j in latest)
            pipeline.status = "failed" if failed else "success"
            pipeline.finished_at = pipeline.updated_at = now()
            pipeline.started_at = pipeline.started_at or pipeline.created_at
            return pipeline.status

    def pipeline(self, project_id: int, pipeline_id: int) -> Pipeline:
        found = self.pipelines.get(pipeline_id)
        if found is None or found.project_id != project_id:
            raise not_found()
        return found

    def job(self, project_id: int, job_id: int) -> CiJob:
        found = self.jobs.get(job_id)
        if found is None or found.project_id != project_id:
            raise not_found()
        return found

    def pipelines_of(self, project_id: int) -> list[Pipeline]:
        with self._lock:
            return [p for p in self.pipelines.values() if p.project_id == project_id]

    def jobs_of(self, pipeline: Pipeline, *, include_retried: bool = False) -> list[CiJob]:
        """The pipeline's jobs, newest first (GitLab 13.5+), retried attempts only when asked."""
        with self._lock:
            found = [
                j
                for j in self.jobs.values()
                if j.pipeline_id == pipeline.id and (include_retried or not j.retried)
            ]
        return sorted(found, key=lambda j: j.id, reverse=True)
