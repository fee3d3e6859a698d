"""One typed question to the model over the Messages API, without the Claude Code CLI.

For a call that needs no tool and no worktree — triage reads the ticket's text only — starting the CLI
(0.3-0.4 s of CPU for its bundle, the sandbox, the SDK handshake, a scratch repository to fingerprint) is
all overhead. Here the question is one `POST /v1/messages` from the worker, with one tool,
`StructuredOutput`, whose input schema is the answer's model, and `tool_choice` forcing it: the same
shape the CLI's structured output takes, so the scripted model server answers both alike. Nothing the
model returns runs: its answer is validated into the model class, bounded by it, or the call fails.

Retried like the CLI retries: 408, 409, 429, 500, 502, 503, 504, 529 (overloaded) and transport errors,
honouring `Retry-After`, within the call's timeout. The key goes in `x-api-key` only; no error names it
(the model's own error message is masked too: a gateway may echo the header).
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import time
from dataclasses import dataclass, replace
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from bot.agent import pricing
from bot.agent.profiles import STRUCTURED_OUTPUT_TOOL, ProfileName
from bot.agent.result import AgentResult, TokenUsage
from bot.containment.model_proxy import tls_context
from bot.git.runner import redact

API_VERSION = "2023-06-01"
DEFAULT_MODEL = "claude-sonnet-4-5"  # when BATON_AGENT_MODEL names none (the CLI would pick its own)
MAX_TOKENS = 4096
RETRIED = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
ATTEMPTS = 6
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
MAX_WAIT_S = 60.0  # a Retry-After longer than this is cut to it (the deadline still applies)
SYSTEM = (
    "You are part of Baton, an engineering bot. Answer only by calling the StructuredOutput tool once, "
    "with input that matches its schema."
)


@dataclass(frozen=True)
class Question:
    """One tool-less question: the prompt, the answer's model, and where to ask."""

    profile: ProfileName
    prompt: str
    output_model: type[BaseModel]
    base_url: str
    api_key: SecretStr
    model: str | None = None
    timeout_s: float = 900.0


class _Failed(Exception):
    def __init__(self, message: str, retry_after: float | None = None, retried: bool = False) -> None:
        super().__init__(message)
        self.retry_after, self.retried = retry_after, retried


def body(question: Question) -> dict[str, Any]:
    """The Messages API request for `question` (pure)."""
    return {
        "model": question.model or DEFAULT_MODEL,
        "max_tokens": MAX_TOKENS,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": question.prompt}],
        "tools": [
            {
                "name": STRUCTURED_OUTPUT_TOOL,
                "description": "Return your answer as structured output.",
                "input_schema": question.output_model.model_json_schema(),
            }
        ],
        "tool_choice": {"type": "tool", "name": STRUCTURED_OUTPUT_TOOL},
    }


def retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta seconds or an HTTP date); None for junk or none."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC by RFC 5322, not local time
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_WAIT_S)


def _error_text(response: httpx.Response, key: str) -> str:
    """The status and the model's own message, with the key masked (a gateway may echo the header)."""
    try:
        detail = response.json().get("error", {}).get("message", "")
    except (ValueError, AttributeError):
        detail = ""
    said = f": {redact(str(detail), [key])[:300]}" if detail else ""
    return f"the model answered HTTP {response.status_code}{said}"


def answer_of(payload: Any, question: Question, duration_ms: int) -> AgentResult:
    """The call's record from the Messages API's response (pure): the StructuredOutput tool's input
    validated into the answer's model, the tokens and their price."""
    if not isinstance(payload, dict):
        return AgentResult(question.profile, True, "the model's answer is not a JSON object")
    raw_usage = payload.get("usage")
    usage = TokenUsage.of(raw_usage if isinstance(raw_usage, dict) else None)
    model = question.model or DEFAULT_MODEL  # priced as asked: the answer's own name could be cheaper
    spent = AgentResult(
        question.profile,
        False,
        subtype="success",
        num_turns=1,
        duration_ms=duration_ms,
        usage=usage,
        total_cost_usd=pricing.estimate(usage, model),
    )
    blocks = payload.get("content") if isinstance(payload.get("content"), list) else []
    found = [
        b.get("input")
        for b in blocks or []
        if isinstance(b, dict) and b.get("type") == "tool_use" and b.get("name") == STRUCTURED_OUTPUT_TOOL
    ]
    name = question.output_model.__name__
    if not found:
        why = f"the model returned no {name} (stop_reason {payload.get('stop_reason')!r})"
        return replace(spent, is_error=True, subtype="error", error=why[:300])
    try:
        output = question.output_model.model_validate(found[0])
    except ValidationError as exc:
        why = f"the model's output is not a valid {name}: {exc}"
        return replace(spent, is_error=True, subtype="error", error=why[:800])
    return replace(spent, structured_output=output)


async def _post(client: httpx.AsyncClient, question: Question, request: dict[str, Any]) -> Any:
    url = question.base_url.rstrip("/") + "/v1/messages"
    key = question.api_key.get_secret_value()
    headers = {"x-api-key": key, "anthropic-version": API_VERSION}
    try:
        response = await client.post(url, json=request, headers=headers)
    except httpx.TransportError as exc:
        raise _Failed(f"the model could not be reached: {type(exc).__name__}", retried=True) from None
    if response.status_code in RETRIED:
        wait = retry_after(response.headers.get("retry-after"))
        raise _Failed(_error_text(response, key), retry_after=wait, retried=True)
    if response.status_code >= 400:
        raise _Failed(_error_text(response, key))
    try:
        return response.json()
    except ValueError:
        raise _Failed("the model's answer is not JSON") from None


async def ask(question: Question) -> AgentResult:
    """Ask once (retrying what is worth retrying); never raises for the model's failures."""
    begun = time.monotonic()
    deadline = begun + question.timeout_s
    request = body(question)
    error = "not asked"
    timeout = httpx.Timeout(question.timeout_s, connect=30.0)
    async with httpx.AsyncClient(timeout=timeout, verify=tls_context()) as client:
        for attempt in range(ATTEMPTS):
            try:
                left = deadline - time.monotonic()
                payload = await asyncio.wait_for(_post(client, question, request), timeout=max(left, 0.001))
            except TimeoutError:
                return AgentResult(
                    question.profile, True, f"timed out after {question.timeout_s:g}s", timed_out=True
                )
            except _Failed as exc:
                error = str(exc)
                wait = exc.retry_after if exc.retry_after is not None else BACKOFF_S[min(attempt, 4)]
                if not exc.retried or attempt == ATTEMPTS - 1 or time.monotonic() + wait >= deadline:
                    break
                await asyncio.sleep(wait)
                continue
            return answer_of(payload, question, round((time.monotonic() - begun) * 1000))
    return AgentResult(question.profile, True, f"the {question.profile} call failed: {error}")
