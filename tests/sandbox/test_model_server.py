"""The scripted Anthropic-compatible model server, over real HTTP on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.sandbox.model_server import ModelServer
from bot.sandbox.scenario import (
    Scenario,
    assistant_turns,
    fill,
    find_cwd,
    load_scenario,
    parse_scenario,
    plan_reply,
)

SCENARIOS = Path(__file__).parent.parent / "fixtures" / "scenarios"
SCENARIO = {
    "usage": {"input_tokens": 11, "output_tokens": 7},
    "scripts": [
        {
            "match": "TICKET-1",
            "usage": {"input_tokens": 500, "output_tokens": 40, "cache_read_input_tokens": 9},
            "turns": [
                {
                    "tool_use": {
                        "name": "Write",
                        "input": {"file_path": "{cwd}/hello.py", "content": "d = {'a': 1}\n"},
                    }
                },
                {"text": "thinking aloud", "tool_use": {"name": "Read", "input": {"file_path": "{cwd}/x"}}},
                {"structured_output": {"verdict": "approve", "where": "{cwd}"}},
                {"text": "final words", "usage": {"input_tokens": 1, "output_tokens": 2}},
            ],
        },
        {"match": "SLOW", "delay_s": 0.4, "turns": [{"text": "late"}]},
        {"match": "HANG", "hang": True},
        {
            "match": "BUSY",
            "error": {"status": 529, "retry_after": 3, "times": 2},
            "turns": [{"text": "ok now"}],
        },
        {"match": "RATE", "error": {"status": 429, "retry_after": 1.5, "message": "slow down"}},
        {"match": "RUNAWAY", "runaway": {"chars": 50_000, "chunk": 1000}},
    ],
}
TOOLS = [{"name": "Write", "input_schema": {}}, {"name": "Read", "input_schema": {}}]
ENVIRONMENT = "# Environment\n - Primary working directory: /work/tree-1\n - Is a git repository: true\n"


def body(prompt: str, *, assistants: int = 0, stream: bool = True, tools: bool = True) -> dict[str, Any]:
    """A request shaped like the CLI's: system blocks, the prompt, a system turn with the cwd."""
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                {"type": "text", "text": prompt},
            ],
        },
        {"role": "system", "content": [{"type": "text", "text": ENVIRONMENT}]},
    ]
    for n in range(assistants):
        messages.append(
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": f"t{n}", "name": "Read", "input": {}}],
            }
        )
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{n}", "content": "ok"}]}
        )
    return {
        "model": "claude-test",
        "system": [{"type": "text", "text": "You are a Claude agent."}],
        "messages": messages,
        "tools": TOOLS if tools else [],
        "max_tokens": 1000,
        "stream": stream,
    }


def events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """Parse a server-sent event stream into (event, data) pairs."""
    parsed = []
    for chunk in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        parsed.append((lines["event"], json.loads(lines["data"])))
    return parsed


def final_message(stream: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Rebuild the assistant message from its events, as an SDK client would."""
    message: dict[str, Any] = stream[0][1]["message"]
    partial: dict[int, str] = {}
    for name, data in stream[1:]:
        if name == "content_block_start":
            message["content"].append(data["content_block"])
        elif name == "content_block_delta" and data["delta"]["type"] == "text_delta":
            message["content"][data["index"]]["text"] += data["delta"]["text"]
        elif name == "content_block_delta":
            partial[data["index"]] = partial.get(data["index"], "") + data["delta"]["partial_json"]
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"] = data["usage"]
    for index, text in partial.items():
        message["content"][index]["input"] = json.loads(text)
    return message


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with ModelServer(parse_scenario(json.dumps(SCENARIO)), api_key="sk-right") as running:
        yield running


@pytest.fixture
def client(server: ModelServer) -> Iterator[httpx.Client]:
    headers = {"x-api-key": "sk-right", "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10.0) as http:
        yield http


def test_a_scripted_tool_call_streams_as_the_standard_events(client: httpx.Client) -> None:
    response = client.post("/v1/messages?beta=true", json=body("Fix TICKET-1 please"))

    stream = events(response)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert [name for name, _ in stream] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    message = final_message(stream)
    assert message["content"] == [
        {
            "type": "tool_use",
            "id": "toolu_s0_t0",
            "name": "Write",
            "input": {"file_path": "/work/tree-1/hello.py", "content": "d = {'a': 1}\n"},
        }
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 500,
        "output_tokens": 40,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 9,
    }


def test_the_reply_depends_only_on_the_conversation_so_far(client: httpx.Client) -> None:
    def reply(assistants: int) -> dict[str, Any]:
        return final_message(
            events(client.post("/v1/messages", json=body("TICKET-1", assistants=assistants)))
        )

    second = reply(1)
    assert [b["type"] for b in second["content"]] == ["text", "tool_use"]
    assert second["content"][0]["text"] == "thinking aloud"
    assert reply(1)["content"] == second["content"]
    structured = reply(2)["content"][0]
    assert (structured["name"], structured["input"]) == (
        "StructuredOutput",
        {"verdict": "approve", "where": "/work/tree-1"},
    )
    last = reply(3)
    assert (last["content"][0]["text"], last["stop_reason"], last["usage"]["output_tokens"]) == (
        "final words",
        "end_turn",
        2,
    )
    past_the_end = reply(9)
    assert (past_the_end["content"][0]["text"], past_the_end["stop_reason"]) == ("done", "end_turn")
    assert reply(0)["content"][0]["name"] == "Write"


@pytest.mark.parametrize(
    "request_body",
    [
        body("an unrelated prompt"),
        body("TICKET-1 title generation", tools=False),
    ],
)
def test_side_requests_get_plain_text_and_use_no_turn(
    client: httpx.Client, request_body: dict[str, Any]
) -> None:
    message = final_message(events(client.post("/v1/messages", json=request_body)))

    assert message["content"] == [{"type": "text", "text": "ok"}]
    assert message["usage"]["input_tokens"] == 11
    assert (
        final_message(events(client.post("/v1/messages", json=body("TICKET-1"))))["content"][0]["name"]
        == "Write"
    )


def test_non_streaming_requests_get_one_json_message(client: httpx.Client) -> None:
    message = client.post("/v1/messages", json=body("TICKET-1", stream=False)).json()

    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["content"][0]["input"]["file_path"] == "/work/tree-1/hello.py"
    assert message["stop_reason"] == "tool_use"


def test_every_request_is_recorded_without_credentials(server: ModelServer, client: httpx.Client) -> None:
    client.post("/v1/messages?beta=true", json=body("TICKET-1"), headers={"authorization": "Bearer sk-right"})
    assert (
        client.post(
            "/v1/messages/count_tokens", json={"messages": [{"role": "user", "content": "hi"}]}
        ).json()["input_tokens"]
        > 0
    )
    missing = client.head("/api/hello")
    unknown = client.get("/v1/models")

    recorded = client.get("/_sandbox/requests").json()
    assert (missing.status_code, unknown.status_code) == (404, 404)
    assert unknown.json()["error"]["type"] == "not_found_error"
    assert [(r["method"], r["path"], r["note"]) for r in recorded] == [
        ("POST", "/v1/messages", "script 0 turn 0"),
        ("POST", "/v1/messages/count_tokens", "count_tokens"),
        ("HEAD", "/api/hello", "not found"),
        ("GET", "/v1/models", "not found"),
    ]
    assert recorded[0]["query"] == "beta=true"
    assert recorded[0]["body"]["messages"][0]["content"][1]["text"] == "TICKET-1"
    assert recorded[0]["headers"]["x-api-key"] == "[redacted]"
    assert recorded[0]["headers"]["authorization"] == "[redacted]"
    assert "sk-right" not in json.dumps(recorded)
    assert [r.path for r in server.log.all()] == [r["path"] for r in recorded]
    assert client.delete("/_sandbox/requests").status_code == 204
    assert client.get("/_sandbox/requests").json() == []


def test_a_wrong_api_key_is_refused(server: ModelServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/messages", json=body("TICKET-1"), headers={"x-api-key": "sk-wrong"}, timeout=10
    )

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert server.log.all()[-1].note == "unauthorized"


def test_invalid_json_is_a_400(client: httpx.Client) -> None:
    response = client.post("/v1/messages", content=b"[1, 2", headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_errors_carry_retry_after_and_stop_after_the_scripted_retries(client: httpx.Client) -> None:
    def attempt(session: str) -> httpx.Response:
        return client.post("/v1/messages", json=body("BUSY"), headers={"x-claude-code-session-id": session})

    first, second, third = attempt("s1"), attempt("s1"), attempt("s1")
    other_session = attempt("s2")
    limited = [client.post("/v1/messages", json=body("RATE")) for _ in range(4)][-1]

    assert (first.status_code, first.headers["retry-after"], first.json()["error"]["type"]) == (
        529,
        "3",
        "overloaded_error",
    )
    assert second.status_code == 529
    assert final_message(events(third))["content"][0]["text"] == "ok now"
    assert other_session.status_code == 529
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "1.5")
    assert limited.json()["error"] == {"type": "rate_limit_error", "message": "slow down"}


def test_delay_holds_the_reply(client: httpx.Client) -> None:
    began = time.monotonic()

    message = final_message(events(client.post("/v1/messages", json=body("SLOW"))))

    assert message["content"][0]["text"] == "late"
    assert time.monotonic() - began >= 0.4


def test_a_hanging_reply_never_answers_but_the_server_still_stops() -> None:
    server = ModelServer(parse_scenario(json.dumps(SCENARIO))).start()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/messages", json=body("HANG"), timeout=httpx.Timeout(10.0, read=0.5))
    began = time.monotonic()

    server.stop()

    assert time.monotonic() - began < 5
    assert server.log.messages()[0].note.startswith("script 2")


def test_a_runaway_reply_streams_a_very_long_text(client: httpx.Client) -> None:
    stream = events(client.post("/v1/messages", json=body("RUNAWAY")))

    deltas = [d for name, d in stream if name == "content_block_delta"]
    assert len(deltas) == 50
    assert len(final_message(stream)["content"][0]["text"]) == 50_000


def test_cwd_comes_from_the_system_prompt_or_a_system_turn() -> None:
    in_system = {"system": [{"type": "text", "text": ENVIRONMENT}], "messages": []}
    in_turn = body("x")
    absent = {"system": "plain", "messages": [{"role": "user", "content": "hello"}]}

    assert find_cwd(in_system) == "/work/tree-1"
    assert find_cwd(in_turn) == "/work/tree-1"
    assert find_cwd(absent) is None
    assert assistant_turns(body("x", assistants=3)) == 3


def test_placeholders_replace_only_known_names() -> None:
    value = {"a": "{cwd}/x.py", "b": ["{cwd}", "{other}", "{}", "{ 'k': 1 }"], "c": 3}

    assert fill(value, {"cwd": "/w"}) == {"a": "/w/x.py", "b": ["/w", "{other}", "{}", "{ 'k': 1 }"], "c": 3}


def test_extra_placeholders_fill_scripted_inputs() -> None:
    turn = {"tool_use": {"name": "Read", "input": {"file_path": "{outside}"}}}
    scenario = parse_scenario(json.dumps({"scripts": [{"match": "P", "turns": [turn]}]}))

    reply = plan_reply(scenario, body("P"), placeholders={"outside": "/etc/passwd"})

    assert reply.blocks[0].input == {"file_path": "/etc/passwd"}


@pytest.mark.parametrize(
    "bad", ['{"scripts": [{"match": "x", "turns": [{}]}]}', '{"scripts": [{"turns": []}]}', '{"nope": 1}']
)
def test_malformed_scenarios_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="validation error"):
        parse_scenario(bad)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_the_example_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)

    assert isinstance(scenario, Scenario)
    assert scenario.scripts
