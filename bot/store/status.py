"""Run and proposal statuses, and which of them the sweeper keeps in the queue."""

from __future__ import annotations

QUEUED = "queued"  # committed in the inbox; a worker should pick it up
RUNNING = "running"  # claimed by a worker
WAITING = "waiting"  # waiting for a person (a proposal, a question); not in the queue
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

ACTIVE = (QUEUED, RUNNING)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
ALL = (QUEUED, RUNNING, WAITING, *TERMINAL)
