"""Retrying external calls safely: bounded backoff for reads, a ledger guard so each write happens once.

Any client can use these helpers:

- raise (a subclass of) `RetryableError` for failures worth trying again (5xx, 429, lost connection),
  with `retry_after` set from the server's `Retry-After` header (`parse_retry_after`);
- wrap idempotent reads in `retry_async(call, policy)`; never wrap a write (POST) in it;
- wrap every write in `exactly_once(ledger, key, kind, find=..., post=...)`: a write whose earlier
  attempt has an unknown outcome is first looked for (`find`, e.g. by the hidden marker in the posted
  text) and adopted instead of being posted a second time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from bot.effects import EffectLedger

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class RetryableError(Exception):
    """A failure worth trying again later; `retry_after` is the server's hint in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait: exponential backoff with jitter, `Retry-After` honoured but capped."""

    attempts: int = 4
    base_delay_s: float = 0.25
    max_delay_s: float = 5.0
    max_retry_after_s: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_s)
        backoff = min(self.base_delay_s * 2.0**attempt, self.max_delay_s)
        spread = backoff * self.jitter
        return max(backoff + random.uniform(-spread, spread), 0.0)  # noqa: S311 - jitter, not a secret


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds (`120`) or an HTTP date; None when absent or invalid."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


async def retry_async(
    call: Callable[[], Awaitable[T]], policy: RetryPolicy, *, sleep: Sleep = asyncio.sleep
) -> T:
    """Await `call()`, retrying on RetryableError up to `policy.attempts` tries; other errors pass through."""
    for attempt in range(policy.attempts):
        try:
            return await call()
        except RetryableError as exc:
            if attempt + 1 >= policy.attempts:
                raise
            await sleep(policy.delay(attempt, exc.retry_after))
    raise AssertionError("unreachable: policy.attempts must be at least 1")


async def exactly_once(
    ledger: EffectLedger,
    key: str,
    kind: str,
    *,
    find: Callable[[], Awaitable[str | None]],
    post: Callable[[], Awaitable[str]],
    run_id: str | None = None,
) -> str:
    """Perform the write `post` once for `key` and return its external id, however often this is called.

    done in the ledger -> the recorded id, nothing is sent; pending (an earlier attempt's outcome is
    unknown) -> `find()` the earlier write and adopt it; otherwise -> `post()`. `post` is called at
    most once per call and is never retried here: a failure propagates and leaves the record pending.
    """
    prior = await ledger.get(key)
    if prior is not None and prior.status == "done" and prior.external_id is not None:
        return prior.external_id
    record = await ledger.begin(key, kind, run_id)
    if record.status == "done" and record.external_id is not None:
        return record.external_id
    if prior is not None:
        found = await find()
        if found is not None:
            await ledger.complete(key, found)
            return found
    external_id = await post()
    await ledger.complete(key, external_id)
    return external_id
