"""Budget holds (bot/holds.py), the same contract in one process (LocalHolds) and across workers
(RedisHolds on a real redis-server): concurrent calls share what a cap leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.holds import Holds, LocalHolds, RedisHolds
from tests.support.servers import RedisServer

TTL = 60.0
TICKET, TEAM = "ticket:jira:tes-1", "month:tes:2026-12"


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.slow)])
async def holds(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Holds]:
    if request.param == "local":
        yield LocalHolds()
        return
    server = RedisServer(tmp_path / "redis").start()
    client = Redis.from_url(server.url)
    try:
        yield RedisHolds(client)
    finally:
        await client.aclose()
        server.stop()


async def test_a_second_run_gets_what_the_first_does_not_hold(holds: Holds) -> None:
    assert await holds.take("a", [(TICKET, 1.0), (TEAM, 5.0)], None, 0.0, TTL) == pytest.approx(1.0)
    # b on the same ticket: the whole remainder is held by a's call
    assert await holds.take("b", [(TICKET, 1.0), (TEAM, 5.0)], None, 0.0, TTL) == pytest.approx(0.0)
    # c on another ticket of the same team: the team's cap less a's hold
    assert await holds.take("c", [("ticket:jira:tes-2", 9.0), (TEAM, 5.0)], None, 0.0, TTL) == pytest.approx(
        4.0
    )
    await holds.settle("a", 0.25, TTL)  # a's call cost $0.25, not yet recorded
    assert await holds.take("b", [(TICKET, 1.0), (TEAM, 5.0)], None, 0.0, TTL) == pytest.approx(0.75)
    # a's next call: its own hold is its pending spend, not subtracted twice
    assert await holds.take("a", [(TICKET, 0.75), (TEAM, 4.75)], None, 0.25, TTL) == pytest.approx(0.0)


async def test_a_release_moves_the_epoch_and_a_stale_reader_must_read_again(holds: Holds) -> None:
    before = await holds.epochs([TICKET])
    assert await holds.take("a", [(TICKET, 1.0)], before, 0.0, TTL) == pytest.approx(1.0)
    assert await holds.epochs([TICKET]) == before  # taking is no release
    await holds.release("a")
    assert await holds.take("b", [(TICKET, 1.0)], before, 0.0, TTL) is None  # the store changed since
    now = await holds.epochs([TICKET])
    assert now != before
    assert await holds.take("b", [(TICKET, 0.4)], now, 0.0, TTL) == pytest.approx(0.4)


async def test_an_expired_hold_counts_for_nothing(holds: Holds) -> None:
    assert await holds.take("a", [(TICKET, 1.0)], None, 0.0, 0.05) == pytest.approx(1.0)
    await asyncio.sleep(0.1)
    assert await holds.take("b", [(TICKET, 1.0)], None, 0.0, TTL) == pytest.approx(1.0)


async def test_many_runs_at_once_never_hold_more_than_the_cap(holds: Holds) -> None:
    grants = await asyncio.gather(*(holds.take(f"r{i}", [(TEAM, 1.0)], None, 0.0, TTL) for i in range(20)))
    assert sum(g for g in grants if g and g > 0) == pytest.approx(1.0)
