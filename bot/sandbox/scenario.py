"""Scripted model scenarios: a pure mapping from one Messages API request to the scripted reply."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

STRUCTURED_OUTPUT_TOOL = "StructuredOutput"
DONE_TEXT = "done"
SIDE_TEXT = "ok"
CWD_PATTERN = re.compile(r"Primary working directory: (\S+)")


class Usage(BaseModel):
    """Token counts reported for one reply (the CLI turns them into cost)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int = 100
    output_tokens: int = 20
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class ToolUse(BaseModel):
    """One scripted tool call; string values may hold placeholders such as `{cwd}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class Turn(BaseModel):
    """One scripted assistant message: optional text, then at most one tool call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str | None = None
    tool_use: ToolUse | None = None
    structured_output: dict[str, Any] | None = None
    usage: Usage | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Turn:
        if self.tool_use is not None and self.structured_output is not None:
            raise ValueError("a turn has either tool_use or structured_output, not both")
        if self.text is None and self.tool_use is None and self.structured_output is None:
            raise ValueError("a turn needs text, tool_use or structured_output")
        return self


class ErrorFault(BaseModel):
    """Answer with an HTTP error (e.g. 429/529 with Retry-After) instead of a message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int = 529
    retry_after: float | None = None
    message: str = "scripted error"
    times: int | None = None  # errors for the first `times` attempts at one conversation step; None = always


class Runaway(BaseModel):
    """Stream a very long text reply, chunk by chunk."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chars: int = 1_000_000
    chunk: int = 1000
    chunk_delay_s: float = 0.0


class Script(BaseModel):
    """The turns for the conversation whose system prompt or first user message contains `match`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str
    turns: list[Turn] = Field(default_factory=list)
    usage: Usage | None = None
    delay_s: float = 0.0
    hang: bool = False
    error: ErrorFault | None = None
    runaway: Runaway | None = None


class Scenario(BaseModel):
    """A list of scripts; the first whose `match` is found answers the request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scripts: list[Script] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model: str = "claude-sandbox"


@dataclass(frozen=True)
class Block:
    """One content block of a reply: `text` or `tool_use` (with id, name and input)."""

    type: str
    text: str = ""
    id: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """What the server answers: content and usage, or a fault to act out."""

    blocks: tuple[Block, ...]
    stop_reason: str
    usage: Usage
    note: str
    delay_s: float = 0.0
    hang: bool = False
    error: ErrorFault | None = None
    runaway: Runaway | None = None


def load_scenario(path: Path) -> Scenario:
    """Read a scenario from a YAML or JSON file."""
    return parse_scenario(path.read_text(encoding="utf-8"))


def parse_scenario(text: str) -> Scenario:
    """Parse scenario text (YAML, which includes JSON)."""
    return Scenario.model_validate(yaml.safe_load(text) or {})


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [str(part.get("text", "")) for part in content if isinstance(part, dict)]
    return []


def system_text(body: dict[str, Any]) -> str:
    """The request's system prompt as one string."""
    return "\n".join(_texts(body.get("system")))


def first_user_text(body: dict[str, Any]) -> str:
    """The text of the first user message."""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            return "\n".join(_texts(message.get("content")))
    return ""


def assistant_turns(body: dict[str, Any]) -> int:
    """How many assistant messages the conversation already holds (the script position)."""
    messages = body.get("messages") or []
    return sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")


def find_cwd(body: dict[str, Any]) -> str | None:
    """The agent's working directory, as the CLI states it in its environment section."""
    texts = [system_text(body)]
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") != "assistant":
            texts.extend(_texts(message.get("content")))
    for text in texts:
        found = CWD_PATTERN.search(text)
        if found:
            return found.group(1)
    return None


def select_script(scenario: Scenario, body: dict[str, Any]) -> tuple[int, Script] | None:
    """The first script whose `match` appears in the system prompt or the first user message."""
    haystacks = (system_text(body), first_user_text(body))
    for index, script in enumerate(scenario.scripts):
        if any(script.match in text for text in haystacks):
            return index, script
    return None


def fill(value: Any, placeholders: dict[str, str]) -> Any:
    """Replace `{name}` placeholders in every string inside a JSON value (other braces stay)."""
    if isinstance(value, str):
        for name, replacement in placeholders.items():
            value = value.replace("{" + name + "}", replacement)
        return value
    if isinstance(value, list):
        return [fill(item, placeholders) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, placeholders) for key, item in value.items()}
    return value


def _turn_blocks(turn: Turn, tool_id: str, placeholders: dict[str, str]) -> tuple[Block, ...]:
    blocks: list[Block] = []
    if turn.text is not None:
        blocks.append(Block(type="text", text=fill(turn.text, placeholders)))
    if turn.tool_use is not None:
        tool_input = fill(turn.tool_use.input, placeholders)
        blocks.append(Block(type="tool_use", id=tool_id, name=turn.tool_use.name, input=tool_input))
    if turn.structured_output is not None:
        output = fill(turn.structured_output, placeholders)
        blocks.append(Block(type="tool_use", id=tool_id, name=STRUCTURED_OUTPUT_TOOL, input=output))
    return tuple(blocks)


def _text_reply(text: str, usage: Usage, note: str) -> Reply:
    return Reply(blocks=(Block(type="text", text=text),), stop_reason="end_turn", usage=usage, note=note)


def plan_reply(
    scenario: Scenario,
    body: dict[str, Any],
    *,
    placeholders: Mapping[str, str] | None = None,
) -> Reply:
    """Decide the reply to one request; stateless, so a retried request gets the same answer.

    A scripted `error` is part of the reply; the server counts attempts to honour `error.times`.

    `{cwd}` in scripted text and tool inputs becomes the agent's working directory; `placeholders`
    adds more names (a test's paths, say).
    """
    chosen = select_script(scenario, body)
    if chosen is None or not body.get("tools"):
        return _text_reply(SIDE_TEXT, scenario.usage, "side")
    index, script = chosen
    step = assistant_turns(body)
    usage = script.usage or scenario.usage
    faults: dict[str, Any] = {
        "delay_s": script.delay_s,
        "hang": script.hang,
        "runaway": script.runaway,
        "error": script.error,
    }
    if step >= len(script.turns):
        return replace(_text_reply(DONE_TEXT, usage, f"script {index} done"), **faults)
    turn = script.turns[step]
    values = {**(placeholders or {}), "cwd": find_cwd(body) or ""}
    blocks = _turn_blocks(turn, f"toolu_s{index}_t{step}", values)
    stop = "tool_use" if any(b.type == "tool_use" for b in blocks) else "end_turn"
    return Reply(
        blocks=blocks,
        stop_reason=stop,
        usage=turn.usage or usage,
        note=f"script {index} turn {step}",
        **faults,
    )
