"""The arq queue as Baton uses it: one job per run, keyed by the run id (arguments: the id only)."""

from __future__ import annotations

from arq.connections import ArqRedis
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix

RUN_JOB = "run"


def connect(url: str) -> ArqRedis:
    """A lazily connecting client: Baton starts (and answers webhooks) while Redis is down."""
    redis: ArqRedis = ArqRedis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=2.0, retry_on_timeout=False, health_check_interval=10
    )
    return redis


class Queue:
    """Enqueue runs and inspect the queue; arq's job-id dedup keeps one job per run."""

    def __init__(self, redis: ArqRedis, name: str = default_queue_name) -> None:
        self.redis = redis
        self.name = name

    async def enqueue_run(self, run_id: str) -> bool:
        """True if a job was created, False if one for this run already exists."""
        job = await self.redis.enqueue_job(RUN_JOB, run_id, _job_id=run_id, _queue_name=self.name)
        return job is not None

    async def has_job(self, run_id: str) -> bool:
        return bool(await self.redis.exists(job_key_prefix + run_id))

    async def release(self, run_id: str) -> None:
        """Forget a dead worker's claim so the job is picked up again now, not after its timeout."""
        await self.redis.delete(in_progress_key_prefix + run_id)

    async def depth(self) -> int:
        return int(await self.redis.zcard(self.name))

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()
