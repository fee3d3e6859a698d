"""An in-memory EffectLedger for tests: the effects table's semantics, plus a record of calls."""

from __future__ import annotations

from dataclasses import replace

from bot.effects import EffectRecord


class MemoryLedger:
    """Implements bot.effects.EffectLedger with a dict; `calls` lists (method, key) in order."""

    def __init__(self) -> None:
        self.records: dict[str, EffectRecord] = {}
        self.calls: list[tuple[str, str]] = []

    async def get(self, key: str) -> EffectRecord | None:
        self.calls.append(("get", key))
        return self.records.get(key)

    async def begin(self, key: str, kind: str, run_id: str | None) -> EffectRecord:
        self.calls.append(("begin", key))
        return self.records.setdefault(key, EffectRecord(key, kind, "pending", None))

    async def complete(self, key: str, external_id: str) -> None:
        self.calls.append(("complete", key))
        self.records[key] = replace(self.records[key], status="done", external_id=external_id)
