"""The one status comment per run, edited in place: phase checklist, elapsed time, tokens, cost, outcome.

Rendering is deterministic: every time and count is an input, nothing reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrators.proposal import Flavor, code, inline, prose

PhaseState = Literal["pending", "running", "done", "failed", "skipped"]

ICONS: dict[PhaseState, str] = {
    "pending": "⬜",
    "running": "🔄",
    "done": "✅",
    "failed": "❌",
    "skipped": "➖",
}


@dataclass(frozen=True)
class PhaseView:
    """One phase line; `duration_s` is shown for finished phases and for the running one so far."""

    name: str
    state: PhaseState
    duration_s: float | None = None
    attempt: int = 1
    note: str = ""


@dataclass(frozen=True)
class Ending:
    """How the run ended: `ok` picks ✅ or ❌; `reason` says why in one line."""

    ok: bool
    reason: str


@dataclass(frozen=True)
class StatusView:
    run_id: str
    title: str
    phases: tuple[PhaseView, ...]
    elapsed_s: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    ending: Ending | None = None
    budget: str = ""  # spend against the cost caps (orchestrators/budget.py `Standing.line`); "" with none


def format_duration(seconds: float | None) -> str:
    """`0.4 s`, `12 s`, `3 min 05 s`, `1 h 02 min`; `–` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _phase_line(phase: PhaseView, flavor: Flavor) -> str:
    details: list[str] = []
    if phase.state in ("done", "failed", "running") and phase.duration_s is not None:
        details.append(format_duration(phase.duration_s))
    if phase.attempt > 1:
        details.append(f"round {phase.attempt}")
    if phase.state == "skipped":
        details.append("skipped")
    if phase.note:
        details.append(inline(phase.note, flavor, 200))
    suffix = f" — {', '.join(details)}" if details else ""
    return f"* {ICONS[phase.state]} {inline(phase.name, flavor, 60)}{suffix}"


def _totals(view: StatusView, flavor: Flavor) -> str:
    tokens = view.input_tokens + view.output_tokens
    budget = f" · {inline(view.budget, flavor, 300)}" if view.budget else ""
    return (
        f"⏱ {format_duration(view.elapsed_s)} · "
        f"{tokens:,} tokens ({view.input_tokens:,} in / {view.output_tokens:,} out) · "
        f"${view.cost_usd:,.2f}{budget}"
    )


def _final_line(view: StatusView, flavor: Flavor) -> str:
    if view.ending is None:
        running = next((p.name for p in view.phases if p.state == "running"), None)
        where = f" ({inline(running, flavor, 60)})" if running else ""
        return f"🔄 Working{where}; this comment updates as the run goes."
    icon = "✅" if view.ending.ok else "❌"
    return f"{icon} {prose(view.ending.reason, flavor)}"


def render_status(view: StatusView, flavor: Flavor) -> str:
    """The status comment's full text for this moment of the run."""
    bold = "*" if flavor == "jira" else "**"
    header = f"{bold}Baton{bold} · {inline(view.title, flavor, 200)} · run {code(view.run_id, flavor, 64)}"
    checklist = "\n".join(_phase_line(p, flavor) for p in view.phases) or "No phases yet."
    return "\n\n".join([header, checklist, _totals(view, flavor), _final_line(view, flavor)])
