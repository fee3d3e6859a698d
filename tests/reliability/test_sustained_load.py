"""Sustained load: 200 mixed deliveries/s against one `baton serve` process with a worker.

The load, the processes and the counting are `bench/load.py`'s (`run_load`): a second process sends
label changes, comments with and without commands, pushes, merge request events, notes and redeliveries
on a fixed schedule; afterwards every 2xx delivery must be in the store, no answer may be a 5xx, and the
queue must drain. `BATON_LOAD_SECONDS` sets the duration: 5 s by default here, the full 30 s in
`make bench` (`python -m bench.load`). `BATON_LOAD_DB=postgresql` runs it on the local PostgreSQL
instead of SQLite.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.load import report, run_load

RATE = 200.0
SECONDS = float(os.environ.get("BATON_LOAD_SECONDS", "5"))
DATABASE = os.environ.get("BATON_LOAD_DB", "sqlite")
DRAIN_BOUND_S = 30.0 + SECONDS  # after the last answer; one worker drains ~20 short runs/s


@pytest.mark.timeout(int(120 + 4 * SECONDS))
def test_sustained_load_loses_nothing_answers_no_5xx_and_drains(tmp_path: Path) -> None:
    result = run_load(RATE, SECONDS, DATABASE, drain_timeout_s=DRAIN_BOUND_S, workdir=tmp_path)
    detail = report(result)
    assert result.sent == int(RATE * SECONDS), detail
    assert result.server_errors == 0, detail
    assert result.transport_errors == 0, detail
    assert result.answered_2xx == result.sent, detail
    assert result.lost == 0, detail
    assert result.drained, detail
    assert set(result.runs_by_status) <= {"succeeded", "cancelled"}, detail
    assert result.effects_twice == 0 and result.runs_without_comment == 0, detail
