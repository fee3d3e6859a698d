"""The dashboard's pure pieces: numbers, links to Jira and GitLab, the transcript read from stored
outputs, and the server-side SVG charts — with hostile inputs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.settings import load_settings
from shell.dashboard import plots, views
from tests.dashboard.seed import HOSTILE


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "–"),
        (-3, "0.0 s"),
        (0.84, "0.8 s"),
        (42, "42 s"),
        (60, "1 min"),
        (184, "3 min 4 s"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (3 * 86400 + 4 * 3600 + 5, "3 d 4 h"),
    ],
)
def test_spans_read_like_a_person_would_say_them(seconds: float | None, shown: str) -> None:
    assert views.span(seconds) == shown


def test_money_counts_and_times() -> None:
    assert (views.money(0.01234), views.money(12.345), views.money(None)) == ("$0.0123", "$12.35", "$0.0000")
    assert views.count(1234567) == "1,234,567" and views.count(None) == "0"
    now = datetime(2026, 3, 18, 12, tzinfo=UTC)
    assert (
        views.stamp(now) == "2026-03-18 12:00 UTC" and views.stamp(now.isoformat()) == "2026-03-18 12:00 UTC"
    )
    assert views.ago(now - timedelta(seconds=0.2), now) == "just now"
    assert (
        views.ago(now - timedelta(minutes=3), now) == "3 min ago"
        and views.age(now - timedelta(hours=2), now) == "2 h"
    )


LINKS = views.Links.of(
    load_settings(
        {"BATON_JIRA_URL": "https://acme.atlassian.net/", "BATON_GITLAB_URL": "https://gitlab.acme.io"},
        check=False,
    )
)


@pytest.mark.parametrize(
    ("subject", "url"),
    [
        ("jira:DEMO-1", "https://acme.atlassian.net/browse/DEMO-1"),
        ("gitlab:group/sub/app!12", "https://gitlab.acme.io/group/sub/app/-/merge_requests/12"),
        ('jira:X-1"><script>', "https://acme.atlassian.net/browse/X-1%22%3E%3Cscript%3E"),
        ("gitlab:a b/c?d!1#x", "https://gitlab.acme.io/a%20b/c%3Fd/-/merge_requests/1%23x"),
        ("gitlab:no-iid", None),
        ("jira:", None),
        ("other:thing", None),
        ("javascript:alert(1)", None),
    ],
)
def test_subject_links_are_built_from_the_configured_urls_and_quoted(subject: str, url: str | None) -> None:
    assert LINKS.subject(subject) == url


def test_comment_links_point_at_the_exact_comment() -> None:
    assert LINKS.comment("jira:DEMO-1", "10042") == (
        "https://acme.atlassian.net/browse/DEMO-1?focusedCommentId=10042#comment-10042"
    )
    assert (
        LINKS.comment("gitlab:demo/app!3", "991")
        == "https://gitlab.acme.io/demo/app/-/merge_requests/3#note_991"
    )
    assert LINKS.comment("jira:DEMO-1", None) is None
    assert LINKS.comment("jira:DEMO-1", "1&x=<y>") == (
        "https://acme.atlassian.net/browse/DEMO-1?focusedCommentId=1%26x%3D%3Cy%3E#comment-1%26x%3D%3Cy%3E"
    )
    assert LINKS.posted("jira:DEMO-1", "gitlab.merge_request", "5") is None
    assert LINKS.merge_request("demo/app", "7") == "https://gitlab.acme.io/demo/app/-/merge_requests/7"


@pytest.mark.parametrize("base", ["javascript:alert(1)", "ftp://x", "not a url", "", "https://"])
def test_no_link_from_a_base_url_that_is_not_http(base: str) -> None:
    links = views.Links.of(load_settings({"BATON_JIRA_URL": base, "BATON_GITLAB_URL": base}, check=False))
    assert links.subject("jira:DEMO-1") is None and links.subject("gitlab:a/b!1") is None


def test_the_transcript_reads_what_the_phases_stored() -> None:
    outputs: dict[str, dict[str, Any]] = {
        "triage": {"ready": False, "summary": "Too vague", "questions": ["Which part?", "How fast?"]},
        "assemble": {"brief": "# Brief", "brief_tokens": 812, "branch": "baton/X-1", "worktree": "/w"},
        "implement": {"summary": "Did it", "turns": 4, "denials": [{"tool": "Bash", "reason": "network"}]},
        "validate": {"checks": [{"stage": "test", "command": "pytest", "status": "failed", "exit_code": 1}]},
        "review": {
            "verdict": {
                "approve": False,
                "summary": "No",
                "blockers": [{"file": "a.py", "line": 3, "text": "bug"}],
            }
        },
    }
    t = views.transcript(outputs)
    assert t.questions == ["Which part?", "How fast?"] and t.brief == "# Brief" and t.branch == "baton/X-1"
    assert t.denials[0].tool == "Bash" and t.checks[0].exit_code == 1
    assert t.verdict is not None and t.verdict.blockers[0].file == "a.py" and not t.empty


@pytest.mark.parametrize(
    "broken",
    [
        {"triage": {"questions": "not a list"}},
        {"validate": {"checks": [{"duration_s": "slow"}]}},
        {"review": {"verdict": ["not", "an", "object"]}},
        {"implement": {"turns": {"x": 1}, "summary": 7}},
        {"assemble": None},
        {},
    ],
)
def test_an_output_of_another_shape_is_left_out_not_a_failed_page(broken: dict[str, Any]) -> None:
    t = views.transcript(broken)
    assert t.checks == [] and t.verdict is None and t.questions == []


def parse_svg(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # noqa: S314 - our own output, parsed to prove it is well-formed


def test_bar_charts_are_well_formed_svg_with_escaped_labels() -> None:
    bars = [plots.Bar(f"{HOSTILE}{i}", float(i), note=HOSTILE) for i in range(40)]
    chart = plots.bar_chart(bars, f"Cost {HOSTILE}", lambda v: f"${v:.2f}")
    root = parse_svg(str(chart))
    assert root.tag.endswith("svg") and "<script" not in str(chart) and "<img" not in str(chart)
    rects = root.findall("{http://www.w3.org/2000/svg}rect")
    assert len(rects) == 40
    heights = [float(r.attrib["height"]) for r in rects]
    assert heights[0] == 0 and heights[-1] == max(heights) and heights == sorted(heights)
    labels = root.findall("{http://www.w3.org/2000/svg}text[@class='label']")
    assert 1 < len(labels) <= plots.MAX_X_LABELS + 1
    assert HOSTILE in (rects[3].find("{http://www.w3.org/2000/svg}title").text or "")  # type: ignore[union-attr]


def test_an_empty_chart_says_so() -> None:
    for bars in ([], [plots.Bar("a", 0.0)]):
        root = parse_svg(str(plots.bar_chart(bars, "nothing")))
        assert any(t.text == "nothing yet" for t in root.iter("{http://www.w3.org/2000/svg}text"))


def test_a_fixed_scale_clips_larger_values() -> None:
    root = parse_svg(str(plots.bar_chart([plots.Bar("a", 250.0), plots.Bar("b", 50.0)], "rate", peak=100.0)))
    a, b = (float(r.attrib["height"]) for r in root.iter("{http://www.w3.org/2000/svg}rect"))
    assert a == pytest.approx(2 * b)  # 250 % is drawn as 100 %
