"""Budget holds: what running agent calls may still spend, held against each cost cap they count
against (a ticket, a team's month), so calls that start at the same time on the same ticket or team
share what a cap leaves instead of each getting all of it (orchestrators/agents.py).

A run holds one amount per cap key: what it has spent but not recorded yet plus the budget its current
call was given. `take` grants the least that every key has left once other runs' live holds are
subtracted, atomically, and only if no hold was released since the caller read the key's epoch (a
release follows the recording of the cost in the store, so a caller that read the store before it tries
again rather than counting that cost nowhere). Holds expire on their own: a worker that dies holds
nothing for long. `RedisHolds` is shared by every worker process; `LocalHolds` by one process's jobs."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("baton.holds")
UNREACHABLE = (RedisError, OSError)  # Redis down: calls get the store's remainder, unheld (logged)

PREFIX = "baton:hold:"
EPOCH = "~epoch"
KEY_TTL_S = 86_400.0  # an idle key (only its epoch left) is forgotten after a day


class Holds(Protocol):
    async def epochs(self, keys: Sequence[str]) -> list[int]:
        """Each key's release count (read before the store is, passed back to `take`)."""
        ...

    async def take(
        self, run_id: str, wanted: Sequence[tuple[str, float]], epochs: Sequence[int] | None,
        pending_usd: float, ttl_s: float,
    ) -> float | None:  # fmt: skip
        """For keys with what their cap leaves (after the store's spend and `pending_usd`): the least
        left once other runs' live holds are subtracted, held by `run_id` (plus its `pending_usd`) under
        every key when it is above zero; None when an epoch moved (read the store again)."""
        ...

    async def settle(self, run_id: str, amount: float, ttl_s: float) -> None:
        """After a call: the run now holds `amount` (its spend not yet recorded) under each of its keys."""
        ...

    async def release(self, run_id: str) -> None:
        """The run's phase recorded its cost: drop its holds, and move those keys' epochs."""
        ...


class LocalHolds:
    """The holds of one process (the default, and what table tests use)."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, tuple[float, float]]] = {}  # key -> run -> (amount, expiry)
        self.moved: dict[str, int] = {}
        self.keys_of: dict[str, set[str]] = {}

    async def epochs(self, keys: Sequence[str]) -> list[int]:
        return [self.moved.get(k, 0) for k in keys]

    async def take(
        self, run_id: str, wanted: Sequence[tuple[str, float]], epochs: Sequence[int] | None,
        pending_usd: float, ttl_s: float,
    ) -> float | None:  # fmt: skip
        now = time.time()
        if epochs is not None and list(epochs) != await self.epochs([k for k, _ in wanted]):
            return None
        grant = min(left - self._others(key, run_id, now) for key, left in wanted)
        if grant > 0:
            for key, _ in wanted:
                self.held.setdefault(key, {})[run_id] = (pending_usd + grant, now + ttl_s)
                self.keys_of.setdefault(run_id, set()).add(key)
        return grant

    def _others(self, key: str, run_id: str, now: float) -> float:
        live = {r: h for r, h in self.held.get(key, {}).items() if h[1] > now}
        self.held[key] = live
        return sum(amount for r, (amount, _) in live.items() if r != run_id)

    async def settle(self, run_id: str, amount: float, ttl_s: float) -> None:
        for key in self.keys_of.get(run_id, ()):
            if run_id in self.held.get(key, {}):
                self.held[key][run_id] = (amount, time.time() + ttl_s)

    async def release(self, run_id: str) -> None:
        for key in self.keys_of.pop(run_id, set()):
            self.held.get(key, {}).pop(run_id, None)
            self.moved[key] = self.moved.get(key, 0) + 1


# KEYS: each cap key's hash, then the run's set of keys. ARGV: now_ms, ttl_ms, run, pending, check
# (1: compare epochs), then per key: what its cap leaves, the epoch read. A hold is "amount|expiry_ms".
_TAKE = """
local now, ttl, run, pending = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local n = #KEYS - 1
local grant = nil
for i = 1, n do
  local h = KEYS[i]
  if ARGV[5] == '1' and tonumber(redis.call('HGET', h, '~epoch') or '0') ~= tonumber(ARGV[5 + 2 * i]) then
    return false
  end
  local held = 0
  local all = redis.call('HGETALL', h)
  for j = 1, #all, 2 do
    local f, v = all[j], all[j + 1]
    if f ~= '~epoch' and f ~= run then
      local sep = string.find(v, '|', 1, true)
      if tonumber(string.sub(v, sep + 1)) <= now then
        redis.call('HDEL', h, f)
      else
        held = held + tonumber(string.sub(v, 1, sep - 1))
      end
    end
  end
  local left = tonumber(ARGV[4 + 2 * i]) - held
  if grant == nil or left < grant then grant = left end
end
if grant > 0 then
  local value = string.format('%.17g|%d', pending + grant, now + ttl)
  for i = 1, n do
    redis.call('HSET', KEYS[i], run, value)
    redis.call('PEXPIRE', KEYS[i], math.max(ttl, redis.call('PTTL', KEYS[i])))
    redis.call('SADD', KEYS[n + 1], KEYS[i])
  end
  redis.call('PEXPIRE', KEYS[n + 1], ttl)
end
return string.format('%.17g', grant)
"""

# KEYS: the run's set of keys. ARGV: run, amount, expiry_ms.
_SETTLE = """
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('HEXISTS', h, ARGV[1]) == 1 then
    redis.call('HSET', h, ARGV[1], ARGV[2] .. '|' .. ARGV[3])
  end
end
"""

# KEYS: the run's set of keys. ARGV: run, key ttl_ms.
_RELEASE = """
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('HDEL', h, ARGV[1])
  redis.call('HINCRBY', h, '~epoch', 1)
  redis.call('PEXPIRE', h, math.max(tonumber(ARGV[2]), redis.call('PTTL', h)))
end
redis.call('DEL', KEYS[1])
"""


class RedisHolds:
    """The holds of every worker, in the worker's Redis (one hash per cap key, one set per run)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def epochs(self, keys: Sequence[str]) -> list[int]:
        try:
            found = [await self.redis.hget(PREFIX + k, EPOCH) for k in keys]  # type: ignore[misc]
        except UNREACHABLE as exc:
            log.warning("budget holds unavailable: %s", exc)
            return [0] * len(keys)
        return [int(v or 0) for v in found]

    async def take(
        self, run_id: str, wanted: Sequence[tuple[str, float]], epochs: Sequence[int] | None,
        pending_usd: float, ttl_s: float,
    ) -> float | None:  # fmt: skip
        keys = [PREFIX + k for k, _ in wanted] + [f"{PREFIX}run:{run_id}"]
        per_key = [x for (_, left), epoch in zip(wanted, epochs or [0] * len(wanted), strict=True)
                   for x in (repr(left), str(epoch))]  # fmt: skip
        check = "1" if epochs is not None else "0"
        args = [_ms(time.time()), _ms(ttl_s), run_id, repr(pending_usd), check, *per_key]
        try:
            granted = await self.redis.eval(_TAKE, len(keys), *keys, *args)  # type: ignore[misc]
        except UNREACHABLE as exc:
            log.warning("budget holds unavailable, the call's budget is not held: %s", exc)
            return min(left for _, left in wanted)
        return None if granted is None else float(granted)

    async def settle(self, run_id: str, amount: float, ttl_s: float) -> None:
        args = [run_id, repr(amount), _ms(time.time() + ttl_s)]
        await self._script(_SETTLE, run_id, *args)

    async def release(self, run_id: str) -> None:
        await self._script(_RELEASE, run_id, run_id, _ms(KEY_TTL_S))

    async def _script(self, script: str, run_id: str, *args: str) -> None:
        try:
            await self.redis.eval(script, 1, f"{PREFIX}run:{run_id}", *args)  # type: ignore[misc]
        except UNREACHABLE as exc:  # the holds expire on their own
            log.warning("budget holds unavailable: %s", exc)


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))
