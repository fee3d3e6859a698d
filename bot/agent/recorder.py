"""Watches one agent call: applies the policy to every tool call and keeps what the result needs."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    HookContext,
    HookInput,
    HookJSONOutput,
    Message,
    PermissionResult,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
    SystemMessage,
    ToolPermissionContext,
    ToolUseBlock,
)

from bot.agent.policy import Decision, Deny, decide
from bot.agent.pricing import estimate
from bot.agent.profiles import Profile
from bot.agent.result import Denial, TokenUsage

STDERR_LINES = 20
STDERR_LINE_CHARS = 300


class Recorder:
    """Policy callbacks for the SDK (`can_use_tool` and a PreToolUse hook) plus the message log."""

    def __init__(self, profile: Profile, worktree: Path, declared_commands: Sequence[str]) -> None:
        self.profile = profile
        self.worktree = worktree
        self.declared_commands = tuple(declared_commands)
        self.denials: dict[str, Denial] = {}
        self.tool_uses: list[ToolUseBlock] = []
        self.offered: tuple[str, ...] | None = None
        self.session_id: str | None = None
        self.assistant_messages = 0
        self.result: ResultMessage | None = None
        self.streamed: dict[str, tuple[str | None, TokenUsage]] = {}  # per model message: model, usage
        self.stderr: deque[str] = deque(maxlen=STDERR_LINES)

    def check(self, tool: str, tool_input: Mapping[str, Any], tool_use_id: str | None) -> Decision:
        """Apply the policy and remember every denial."""
        decision = decide(self.profile, tool, tool_input, self.worktree, self.declared_commands)
        if isinstance(decision, Deny):
            key = tool_use_id or f"anon-{len(self.denials)}"
            self.denials[key] = Denial(tool, dict(tool_input), decision.reason, "policy", tool_use_id)
        return decision

    async def can_use_tool(
        self, tool: str, tool_input: dict[str, Any], ctx: ToolPermissionContext
    ) -> PermissionResult:
        decision = self.check(tool, tool_input, ctx.tool_use_id)
        if isinstance(decision, Deny):
            return PermissionResultDeny(message=decision.reason)
        return PermissionResultAllow(updated_input=decision.updated_input)

    async def pre_tool_use(
        self, data: HookInput, tool_use_id: str | None, ctx: HookContext
    ) -> HookJSONOutput:
        """Runs before every tool call, including those the CLI would approve on its own."""
        fields: Mapping[str, Any] = data
        tool = str(fields.get("tool_name", ""))
        decision = self.check(tool, fields.get("tool_input") or {}, tool_use_id or fields.get("tool_use_id"))
        output: dict[str, Any] = {"hookEventName": "PreToolUse"}
        if isinstance(decision, Deny):
            output.update(permissionDecision="deny", permissionDecisionReason=decision.reason)
        elif decision.updated_input is not None:
            output.update(permissionDecision="allow", updatedInput=decision.updated_input)
        else:
            return {}
        return {"hookSpecificOutput": output}  # type: ignore[typeddict-item]

    def on_stderr(self, line: str) -> None:
        self.stderr.append(line[:STDERR_LINE_CHARS])

    def observe(self, message: Message) -> None:
        """Keep the init data, every tool call the model made, and the final result."""
        if isinstance(message, SystemMessage) and message.subtype == "init":
            self.session_id = message.data.get("session_id")
            self.offered = tuple(message.data.get("tools") or ())
        elif isinstance(message, AssistantMessage):
            self.assistant_messages += 1
            self.tool_uses += [b for b in message.content if isinstance(b, ToolUseBlock)]
            self._stream_usage(message)
        elif isinstance(message, ResultMessage):
            self.result = message
            self.session_id = message.session_id or self.session_id

    def _stream_usage(self, message: AssistantMessage) -> None:
        """Keep each model message's usage; the CLI repeats a message per content block, so one id
        counts once, with the largest count seen for each kind of token."""
        if not message.usage:
            return
        key = message.message_id or f"anon-{self.assistant_messages}"
        seen = self.streamed.get(key, (None, TokenUsage()))[1]
        now = TokenUsage.of(message.usage)
        most = TokenUsage(
            **{n: max(getattr(seen, n), getattr(now, n)) for n in TokenUsage.__dataclass_fields__}
        )
        self.streamed[key] = (message.model, most)

    def streamed_usage(self) -> TokenUsage:
        """The tokens the streamed assistant messages reported (for a call that ended without a result)."""
        return sum((usage for _, usage in self.streamed.values()), TokenUsage())

    def streamed_cost(self) -> float:
        """Those tokens priced per model (bot/agent/pricing.py): an estimate, the CLI's total is unknown."""
        return sum(estimate(usage, model) for model, usage in self.streamed.values())

    def all_denials(self) -> tuple[Denial, ...]:
        """Policy denials, then the CLI's own, then calls to tools the CLI did not offer."""
        found = dict(self.denials)
        for item in (self.result.permission_denials if self.result else None) or []:
            key = str(item.get("tool_use_id") or f"cli-{len(found)}")
            if key not in found:
                found[key] = Denial(
                    str(item.get("tool_name")),
                    dict(item.get("tool_input") or {}),
                    "denied by the CLI",
                    "cli",
                    key,
                )
        if self.offered is not None:
            for block in self.tool_uses:
                if block.name not in self.offered and block.id not in found:
                    reason = f"{block.name} is not available to the {self.profile.name} profile"
                    found[block.id] = Denial(block.name, dict(block.input), reason, "unavailable", block.id)
        return tuple(found.values())
