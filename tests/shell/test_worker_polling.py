"""How often `baton worker` looks for new jobs. arq (0.28) reads up to `queue_read_limit` queued ids per
poll and starts each as soon as a slot is free, so within a batch a busy worker does not wait for its
next poll; it waits only once a batch is used up, and when fewer jobs than slots were queued at its last
poll (new jobs then start within the poll delay)."""

from __future__ import annotations

from pathlib import Path

from shell.worker import create_worker
from tests.conftest import make_settings


def test_a_busy_worker_looks_for_the_next_job_within_50_ms(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", "redis://127.0.0.1:9/0")
    worker = create_worker(settings, handle_signals=False)
    assert worker.poll_delay_s <= 0.05
    assert worker.max_jobs / worker.poll_delay_s >= 80  # short runs per second one worker can start
