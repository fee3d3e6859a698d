"""bot/agent/direct.py against the real scripted model server: one typed question, no CLI."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import BaseModel, SecretStr

from bot.agent import direct
from bot.agent.direct import Question, answer_of, retry_after
from bot.sandbox.model_server import ModelServer
from orchestrators.verdicts import Triage
from tests.agent.conftest import API_KEY, ServerFactory


def question(server: ModelServer, prompt: str, **extra: object) -> Question:
    return Question(
        profile="planner",
        prompt=prompt,
        output_model=Triage,
        base_url=server.url,
        api_key=SecretStr(extra.pop("key", API_KEY)),  # type: ignore[arg-type]
        timeout_s=extra.pop("timeout_s", 30.0),  # type: ignore[arg-type]
    )


def test_the_answer_is_the_structured_output_validated_with_its_tokens_and_price(
    model_server: ServerFactory,
) -> None:
    server = model_server("direct.yaml")
    result = asyncio.run(direct.ask(question(server, "[baton:triage] BATON-DIRECT-OK")))
    assert not result.is_error, result.error
    answer = result.output(Triage)
    assert answer.ready and answer.summary == "Add multiply(a, b)."
    assert (result.usage.input_tokens, result.usage.output_tokens, result.num_turns) == (1000, 100, 1)
    assert result.total_cost_usd > 0
    [sent] = server.log.messages()
    body = sent.body
    assert body["tool_choice"] == {"type": "tool", "name": "StructuredOutput"}
    assert [t["name"] for t in body["tools"]] == ["StructuredOutput"]
    assert body["tools"][0]["input_schema"] == Triage.model_json_schema()
    assert body["messages"] == [{"role": "user", "content": "[baton:triage] BATON-DIRECT-OK"}]
    assert body["model"] == direct.DEFAULT_MODEL  # no BATON_AGENT_MODEL: the documented default


def test_overloaded_answers_are_retried_until_the_model_answers(model_server: ServerFactory) -> None:
    server = model_server("direct.yaml")
    result = asyncio.run(direct.ask(question(server, "BATON-DIRECT-OVERLOADED")))
    assert not result.is_error, result.error
    assert result.output(Triage).questions == ["Which module?"]
    assert len(server.log.messages()) == 3  # two 529s, then the answer


def test_a_bad_request_is_not_retried_and_the_error_says_what_the_model_said(
    model_server: ServerFactory,
) -> None:
    server = model_server("direct.yaml")
    result = asyncio.run(direct.ask(question(server, "BATON-DIRECT-BAD-REQUEST")))
    assert result.is_error and result.error is not None
    assert "HTTP 400" in result.error and "scripted bad request" in result.error
    assert len(server.log.messages()) == 1


def test_a_wrong_key_fails_without_naming_the_key(model_server: ServerFactory) -> None:
    server = model_server("direct.yaml")
    result = asyncio.run(direct.ask(question(server, "BATON-DIRECT-OK", key="sk-wrong-key-canary-77")))
    assert result.is_error and result.error is not None
    assert "401" in result.error and "canary" not in result.error


@pytest.mark.parametrize(
    ("prompt", "why"),
    [("BATON-DIRECT-TEXT", "returned no Triage"), ("BATON-DIRECT-HOSTILE", "not a valid Triage")],
)
def test_an_answer_that_is_not_the_model_class_fails_and_still_counts_its_tokens(
    model_server: ServerFactory, prompt: str, why: str
) -> None:
    server = model_server("direct.yaml")
    result = asyncio.run(direct.ask(question(server, prompt)))
    assert result.is_error and result.error is not None and why in result.error
    assert result.structured_output is None
    assert result.usage.input_tokens > 0 and result.total_cost_usd > 0


class _Echo(BaseHTTPRequestHandler):
    """A gateway that refuses the key and echoes it in its error message."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        said = json.dumps({"error": {"message": f"invalid x-api-key {self.headers.get('x-api-key')}"}})
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(said.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_a_gateway_that_echoes_the_key_never_gets_it_into_the_error() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        q = Question("planner", "x", Triage, url, SecretStr("sk-ant-canary-echoed-0042"), timeout_s=10.0)
        result = asyncio.run(direct.ask(q))
    finally:
        server.shutdown()
    assert result.is_error and result.error is not None
    assert "HTTP 401" in result.error and "invalid x-api-key" in result.error
    assert "canary-echoed" not in result.error


def test_a_model_that_never_answers_times_out(model_server: ServerFactory) -> None:
    server = model_server("direct.yaml")
    result = asyncio.run(direct.ask(question(server, "BATON-HANG", timeout_s=1.0)))
    assert result.is_error and result.timed_out


def test_an_unreachable_model_fails_after_the_retries_within_the_timeout() -> None:
    q = Question("planner", "x", Triage, "http://127.0.0.1:9", SecretStr("k"), timeout_s=2.0)
    result = asyncio.run(direct.ask(q))
    assert result.is_error and result.error is not None and "could not be reached" in result.error


class _Small(BaseModel):
    n: int


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "text",
        {"content": "not a list"},
        {"content": [None, 3, {"type": "tool_use", "name": "Other", "input": {"n": 1}}]},
        {"content": [{"type": "tool_use", "name": "StructuredOutput", "input": {"n": "x" * 10_000}}]},
        {"content": [{"type": "tool_use", "name": "StructuredOutput"}], "usage": "junk"},
        {"usage": {"input_tokens": -5, "output_tokens": True}, "content": []},
    ],
)
def test_hostile_responses_are_errors_never_exceptions(payload: object) -> None:
    q = Question("planner", "x", _Small, "http://x", SecretStr("k"))
    result = answer_of(payload, q, 5)
    assert result.is_error and result.structured_output is None
    assert result.usage.input_tokens >= 0 and result.usage.output_tokens >= 0


def test_a_valid_response_becomes_the_model() -> None:
    q = Question("planner", "x", _Small, "http://x", SecretStr("k"))
    payload = {"content": [{"type": "tool_use", "name": "StructuredOutput", "input": {"n": 3}}]}
    assert answer_of(payload, q, 5).output(_Small) == _Small(n=3)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2", 2.0), ("0", 0.0), ("-4", 0.0), ("1e9", direct.MAX_WAIT_S), ("nan", None), ("soon", None),
     ("", None), (None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
     ("Wed, 21 Oct 2015 07:28:00 -0000", 0.0), ("Fri, 01 Jan 2100 00:00:00 -0000", direct.MAX_WAIT_S)],
)  # fmt: skip
def test_retry_after_reads_seconds_and_dates_and_refuses_junk(
    value: str | None, seconds: float | None
) -> None:
    assert retry_after(value) == seconds
