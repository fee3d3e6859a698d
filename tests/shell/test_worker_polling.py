"""How often `baton worker` looks for new jobs: with all its slots busy, arq starts the next job only at
its next poll (its semaphore holds max_jobs + 1, so the id after a full set of slots ends the batch), so
the poll delay caps one worker's rate on short runs at max_jobs / poll_delay (20 runs/s at the old 0.2 s;
bench.scaleout measured 19.3)."""

from __future__ import annotations

from pathlib import Path

from shell.worker import create_worker
from tests.conftest import make_settings


def test_a_busy_worker_looks_for_the_next_job_within_50_ms(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", "redis://127.0.0.1:9/0")
    worker = create_worker(settings, handle_signals=False)
    assert worker.poll_delay_s <= 0.05
    assert worker.max_jobs / worker.poll_delay_s >= 80  # short runs per second one worker can start
