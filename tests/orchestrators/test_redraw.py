"""The run's display is drawn beside the phases: asks fold into one draw at a time, the last state is
always drawn, a failed draw stops the run at the next ask or settle, and close ends a draw under way."""

from __future__ import annotations

import asyncio

import pytest

from orchestrators.redraw import Redraw


class Display:
    """Draws what `state` holds when a draw starts; `gate` holds a draw until the test lets it go."""

    def __init__(self) -> None:
        self.state = 0
        self.drawn: list[int] = []
        self.running = 0
        self.most_at_once = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_at: int | None = None

    async def draw(self) -> None:
        seen = self.state
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.gate.wait()
            if seen == self.fail_at:
                raise RuntimeError(f"the tracker refused draw {seen}")
            self.drawn.append(seen)
        finally:
            self.running -= 1


async def test_asks_during_a_draw_fold_into_one_more_draw_of_the_last_state() -> None:
    display = Display()
    shown = Redraw(display.draw)
    display.gate.clear()
    shown.ask()  # draws state 0, held
    await asyncio.sleep(0)
    for state in (1, 2, 3):
        display.state = state
        shown.ask()
    display.gate.set()

    await shown.settle()

    assert display.drawn == [0, 3]
    assert display.most_at_once == 1


async def test_settle_waits_for_the_state_asked_last() -> None:
    display = Display()
    shown = Redraw(display.draw)
    for state in range(5):
        display.state = state
        shown.ask()
        await asyncio.sleep(0)

    await shown.settle()

    assert display.drawn[-1] == 4
    assert display.drawn == sorted(display.drawn)  # never back in time


async def test_a_failed_draw_is_raised_by_settle_and_by_the_next_ask() -> None:
    display = Display()
    display.fail_at = 1
    shown = Redraw(display.draw)
    display.state = 1
    shown.ask()

    with pytest.raises(RuntimeError, match="refused draw 1"):
        await shown.settle()
    with pytest.raises(RuntimeError, match="refused draw 1"):
        shown.ask()


async def test_close_ends_a_draw_under_way_and_settle_without_asks_returns() -> None:
    display = Display()
    shown = Redraw(display.draw)
    await shown.settle()
    display.gate.clear()
    shown.ask()
    await asyncio.sleep(0)
    assert display.running == 1

    await shown.close()

    assert display.running == 0
    assert display.drawn == []
