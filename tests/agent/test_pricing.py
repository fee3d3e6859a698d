"""A call that ends without the CLI's result (timeout, /cancel, a killed CLI) is charged the tokens its
assistant messages streamed, priced per model family; no CLI is started here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import AssistantMessage, ResultMessage, TextBlock, ToolUseBlock

from bot.agent import pricing
from bot.agent.profiles import get_profile
from bot.agent.recorder import Recorder
from bot.agent.result import TokenUsage
from bot.agent.runner import _from_cli, _Outcome

SONNET = "claude-sonnet-4-5"


def said(message_id: str | None, usage: dict[str, Any] | None, model: str = SONNET) -> AssistantMessage:
    return AssistantMessage([TextBlock("…")], model, usage=usage, message_id=message_id)


@pytest.mark.parametrize(
    ("model", "family"),
    [("claude-sonnet-4-5", "sonnet"), ("claude-3-5-HAIKU-latest", "haiku"), ("claude-opus-4-1", "opus"),
     ("scripted-model", "opus"), (None, "opus"), ("", "opus")],
)  # fmt: skip
def test_a_model_is_priced_by_its_family_and_an_unknown_one_as_the_dearest(
    model: str | None, family: str
) -> None:
    assert pricing.rates(model) == pricing.PER_MTOK[family]


def test_estimate_prices_each_kind_of_token() -> None:
    tokens = TokenUsage(
        input_tokens=1_000_000,
        output_tokens=100_000,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=0,
    )
    assert pricing.estimate(tokens, SONNET) == pytest.approx(3.0 + 1.5)
    assert pricing.estimate(TokenUsage(0, 0, 2_000_000, 1_000_000), "haiku") == pytest.approx(2.5 + 0.1)


def test_a_call_without_a_result_is_charged_its_streamed_tokens(tmp_path: Path) -> None:
    recorder = Recorder(get_profile("reviewer"), tmp_path, ())
    turn = {"input_tokens": 1000, "output_tokens": 5, "cache_read_input_tokens": 200}
    recorder.observe(said("m1", turn))
    recorder.observe(said("m1", {**turn, "output_tokens": 40}))  # the same message, its next block
    recorder.observe(AssistantMessage([ToolUseBlock("t1", "Read", {})], SONNET, message_id="m1"))
    recorder.observe(
        said("m2", {"input_tokens": 50, "output_tokens": 10, "junk": "x", "cache_creation_input_tokens": -3})
    )
    recorder.observe(said(None, None))  # no usage: nothing to count
    result = _from_cli(
        recorder, _Outcome(timed_out=True, error="timed out after 4s"), get_profile("reviewer")
    )
    assert result.is_error and result.timed_out
    assert result.usage == TokenUsage(1050, 50, 0, 200)
    assert result.total_cost_usd == pytest.approx((1050 * 3 + 50 * 15 + 200 * 0.3) / 1_000_000)


def test_a_call_with_a_result_keeps_the_clis_own_total(tmp_path: Path) -> None:
    recorder = Recorder(get_profile("reviewer"), tmp_path, ())
    recorder.observe(said("m1", {"input_tokens": 10**6, "output_tokens": 10**6}))
    recorder.observe(
        ResultMessage(
            subtype="success", duration_ms=5, duration_api_ms=5, is_error=False, num_turns=1, session_id="s",
            total_cost_usd=0.02, usage={"input_tokens": 7, "output_tokens": 3},
        )
    )  # fmt: skip
    result = _from_cli(recorder, _Outcome(), get_profile("reviewer"))
    assert (result.total_cost_usd, result.usage) == (0.02, TokenUsage(7, 3, 0, 0))
