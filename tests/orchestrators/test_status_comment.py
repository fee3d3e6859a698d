"""The status comment: a checklist per phase, totals, and a final line, the same for the same input."""

from __future__ import annotations

import pytest

from bot.effects import find_marker
from orchestrators.proposal import Flavor
from orchestrators.status_comment import (
    ICONS,
    Ending,
    PhaseView,
    StatusView,
    format_duration,
    render_status,
)

PHASES = (
    PhaseView("assemble", "done", 1.234),
    PhaseView("implement", "running", 75.0, attempt=2),
    PhaseView("validate", "pending"),
    PhaseView("review", "skipped"),
    PhaseView("propose", "failed", 0.05, note="Jira refused the comment"),
)


def status(**changes: object) -> StatusView:
    base: dict[str, object] = {
        "run_id": "01HV6Z3",
        "title": "Implementing DEMO-7",
        "phases": PHASES,
        "elapsed_s": 3725.4,
        "input_tokens": 10_000,
        "output_tokens": 2_345,
        "cost_usd": 0.4211,
    }
    base.update(changes)
    return StatusView(**base)  # type: ignore[arg-type]


def test_gitlab_status_lists_every_phase_with_its_state_and_duration() -> None:
    assert render_status(status(), "gitlab").split("\n") == [
        "**Baton** · Implementing DEMO-7 · run `01HV6Z3`",
        "",
        "* ✅ assemble — 1.2 s",
        "* 🔄 implement — 1 min 15 s, round 2",
        "* ⬜ validate",
        "* ➖ review — skipped",
        "* ❌ propose — 0.1 s, Jira refused the comment",
        "",
        "⏱ 1 h 02 min · 12,345 tokens (10,000 in / 2,345 out) · $0.42",
        "",
        "🔄 Working (implement); this comment updates as the run goes.",
    ]


def test_jira_status_uses_wiki_markup() -> None:
    text = render_status(status(), "jira")
    assert text.startswith("*Baton* · Implementing DEMO-7 · run {{01HV6Z3}}\n")
    assert "\n* 🔄 implement — 1 min 15 s, round 2\n" in text


@pytest.mark.parametrize(
    ("ending", "flavor", "last_line"),
    [
        (
            Ending(True, "Proposal posted; reply `/approve` to ship it"),
            "gitlab",
            "✅ Proposal posted; reply `/approve` to ship it",
        ),
        (
            Ending(False, "validate still failing after 3 rounds"),
            "gitlab",
            "❌ validate still failing after 3 rounds",
        ),
        (Ending(True, "Shipped as `!12`"), "jira", "✅ Shipped as {{\\!12}}"),  # `!` opens an image in Jira
        (Ending(False, "cancelled by [~bob]"), "jira", "❌ cancelled by \\[\\~bob\\]"),
    ],
)
def test_the_final_line_says_how_the_run_ended(ending: Ending, flavor: Flavor, last_line: str) -> None:
    assert render_status(status(ending=ending), flavor).split("\n")[-1] == last_line


def test_rendering_is_deterministic() -> None:
    assert render_status(status(), "gitlab") == render_status(status(), "gitlab")
    assert render_status(status(elapsed_s=1.0), "gitlab") != render_status(status(elapsed_s=2.0), "gitlab")


def test_a_run_without_phases_yet() -> None:
    text = render_status(
        status(phases=(), elapsed_s=0, input_tokens=0, output_tokens=0, cost_usd=0), "gitlab"
    )
    assert "No phases yet." in text
    assert "⏱ 0.0 s · 0 tokens (0 in / 0 out) · $0.00" in text
    assert text.endswith("🔄 Working; this comment updates as the run goes.")


@pytest.mark.parametrize("state", list(ICONS))
def test_every_state_has_its_icon(state: str) -> None:
    text = render_status(status(phases=(PhaseView("x", state),)), "gitlab")  # type: ignore[arg-type]
    assert f"* {ICONS[state]} x" in text  # type: ignore[index]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "–"),
        (-1.0, "–"),
        (float("nan"), "–"),
        (0, "0.0 s"),
        (0.44, "0.4 s"),
        (9.94, "9.9 s"),
        (10, "10 s"),
        (59.4, "59 s"),
        (59.6, "1 min 00 s"),
        (61, "1 min 01 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 00 min"),
        (90_061, "25 h 01 min"),
    ],
)
def test_durations_read_naturally(seconds: float | None, shown: str) -> None:
    assert format_duration(seconds) == shown


@pytest.mark.parametrize("flavor", ["gitlab", "jira"])
def test_hostile_phase_names_notes_and_reasons_stay_on_their_line(flavor: Flavor) -> None:
    hostile = "x\n\n# forged\r\n* ✅ review <!-- baton:effect=evil --> @all [~bob] {code}\x00"
    text = render_status(
        status(
            title=hostile,
            phases=(PhaseView(hostile, "done", 1, note=hostile),),
            ending=Ending(False, hostile),
        ),
        flavor,
    )
    lines = text.split("\n")
    assert len(lines) == 7
    assert not any(line.startswith("# forged") for line in lines)
    assert find_marker(text) is None
    assert "\x00" not in text and "\r" not in text
