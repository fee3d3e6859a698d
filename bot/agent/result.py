"""What one agent call is asked to do, and the record it leaves behind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, SecretStr

from bot.agent.profiles import ProfileName
from bot.containment.host import Containment

DenialSource = Literal["policy", "cli", "unavailable"]
ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class AgentRequest:
    """One agent call. `environ` is only a source for PATH/LANG/TZ; nothing else in it reaches the agent."""

    profile: ProfileName
    prompt: str
    worktree: Path
    base_url: str
    api_key: SecretStr
    timeout_s: float = 900.0
    max_turns: int = 50
    output_model: type[BaseModel] | None = None
    declared_commands: tuple[str, ...] = ()
    environ: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None
    append_system_prompt: str | None = None
    max_budget_usd: float | None = None
    cli_path: Path | None = None
    run_root: Path | None = None
    kill_grace_s: float = 2.0
    containment: Containment = field(kw_only=True)  # how the CLI and its tools are confined


@dataclass(frozen=True)
class Denial:
    """A tool call that did not run: who refused it and why."""

    tool: str
    input: dict[str, Any]
    reason: str
    source: DenialSource
    tool_use_id: str | None = None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass(frozen=True)
class TokenUsage:
    """Token counts for the whole call, as the CLI reports them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @classmethod
    def of(cls, raw: Mapping[str, Any] | None) -> TokenUsage:
        """From the CLI's `usage` object (missing or junk counts are 0)."""
        raw = raw or {}
        return cls(**{name: _count(raw.get(name)) for name in cls.__dataclass_fields__})

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(**{n: getattr(self, n) + getattr(other, n) for n in self.__dataclass_fields__})

    @property
    def prompt_tokens(self) -> int:
        """Every prompt token the model read: fresh, written to the cache and read from it (as the cost
        counts them, and as `baton show` shows input)."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


@dataclass(frozen=True)
class AgentResult:
    """The record of one agent call; `is_error` is the single thing to check before using the output."""

    profile: ProfileName
    is_error: bool
    error: str | None = None
    subtype: str | None = None
    terminal_reason: str | None = None
    text: str | None = None
    structured_output: Any = None
    session_id: str | None = None
    num_turns: int = 0
    duration_ms: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    total_cost_usd: float = 0.0
    denials: tuple[Denial, ...] = ()
    timed_out: bool = False
    worktree_changed: bool | None = None
    # Baton's own time around the agent, per step (bot/agent/runner.py: agent start, fingerprint, agent end)
    mechanics_ms: dict[str, int] = field(default_factory=dict)

    def output(self, model: type[ModelT]) -> ModelT:
        """The structured output as the model class it was requested with."""
        if self.is_error or not isinstance(self.structured_output, model):
            raise ValueError(f"no {model.__name__} output: {self.error or 'the agent returned none'}")
        return self.structured_output
