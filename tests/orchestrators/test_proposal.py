"""Proposal, refusal and failure comments: content, the exact next replies, and no way to break out;
and the size-bounded verdict models they render."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from bot.effects import find_jira_marker, find_marker, with_jira_marker, with_marker
from orchestrators.proposal import (
    DIFF_LIMIT_BYTES,
    JIRA_MAX_CHARS,
    NEXT_STEPS,
    FileChange,
    Flavor,
    Person,
    ProposalView,
    code,
    inline,
    mention,
    render_failure,
    render_proposal,
    render_refusal,
    short_sha,
    truncate_diff,
)
from orchestrators.validate import CommandResult
from orchestrators.verdicts import Triage, Verdict

ZWSP = "\u200b"
FLAVORS: list[Flavor] = ["gitlab", "jira"]
DIFF = (
    "diff --git a/calc.py b/calc.py\n"
    "--- a/calc.py\n+++ b/calc.py\n"
    "@@ -1,2 +1,4 @@\n"
    " def add(a, b):\n"
    "+def divide(a, b):\n"
    "+    return a / b\n"
)
VERDICT = Verdict.model_validate(
    {
        "approve": True,
        "summary": "Divide is implemented and tested.",
        "blockers": [],
        "suggestions": [{"file": "calc.py", "line": 3, "text": "Consider Decimal."}],
        "scope_creep": [{"file": None, "line": None, "text": "Reformatted README."}],
    }
)


def view(**changes: object) -> ProposalView:
    base: dict[str, object] = {
        "proposal_id": "prop-42",
        "summary": "Add divide to the calculator",
        "commit_sha": "0123456789abcdef0123456789abcdef01234567",
        "files": (FileChange("calc.py", 3, 0), FileChange("logo.png", None, None)),
        "checks": (
            CommandResult("format", "ruff format --check .", "passed", 0),
            CommandResult("lint", "ruff check .", "passed", 0),
            CommandResult("test", "pytest -q", "passed", 0),
        ),
        "verdict": VERDICT,
        "input_tokens": 12_000,
        "output_tokens": 3_456,
        "cost_usd": 0.4249,
        "diff": DIFF,
    }
    base.update(changes)
    return ProposalView(**base)  # type: ignore[arg-type]


def fenced_blocks(markdown: str) -> list[tuple[str, str]]:
    """(info string, content) of every fenced block, read the way CommonMark reads fences."""
    blocks: list[tuple[str, str]] = []
    lines = markdown.split("\n")
    i = 0
    while i < len(lines):
        opening = re.match(r" {0,3}(`{3,})(.*)", lines[i])
        i += 1
        if not opening:
            continue
        closing = re.compile(rf" {{0,3}}`{{{len(opening.group(1))},}}[ \t]*")
        body: list[str] = []
        while i < len(lines) and not closing.fullmatch(lines[i]):
            body.append(lines[i])
            i += 1
        blocks.append((opening.group(2), "\n".join(body)))
        i += 1
    return blocks


def jira_code_body(text: str) -> str:
    """What Jira shows inside `{code:diff}`: everything up to the first real closing `{code}`."""
    start = text.index("{code:diff}\n") + len("{code:diff}\n")
    end = re.compile(r"\{code\}", re.IGNORECASE).search(text, start)
    assert end is not None
    return text[start : end.start()]


def test_gitlab_proposal_shows_everything_and_ends_with_the_next_replies() -> None:
    text = render_proposal(view(), flavor="gitlab")
    assert text.startswith("### 🤖 Baton proposal: Add divide to the calculator\n")
    assert "**Commit** `01234567`" in text
    assert "**Proposal** `prop-42`" in text
    assert "**Tokens** 15,456 (12,000 in / 3,456 out) · **Cost** $0.42" in text
    assert "| `calc.py` | 3 | 0 |" in text
    assert "| `logo.png` | bin | bin |" in text
    assert "| **2 files** | 3 | 0 |" in text
    assert "| test | `pytest -q` | ✅ pass |" in text
    assert "**✅ approved by the reviewer**: Divide is implemented and tested." in text
    assert "**Suggestions (1)**\n* `calc.py:3` Consider Decimal." in text
    assert "**Scope creep (1)**\n* Reformatted README." in text
    assert "Blockers" not in text
    assert "<details><summary>Full diff (7 lines)</summary>" in text
    assert ("diff", DIFF.rstrip("\n")) in fenced_blocks(text)
    assert text.endswith("\n\n" + NEXT_STEPS)
    assert NEXT_STEPS == (
        "To ship this, reply `/approve`; to change it, `/revise <what to change>`; to drop it, `/reject`."
    )


def test_jira_proposal_uses_wiki_markup_and_an_expand_fold() -> None:
    text = render_proposal(view(), flavor="jira")
    assert text.startswith("h3. 🤖 Baton proposal: Add divide to the calculator\n")
    assert "||File||Added||Removed||\n|{{calc.py}}|3|0|\n|{{logo.png}}|bin|bin|" in text
    assert "*Commit* {{01234567}}" in text
    assert "{expand:Full diff (7 lines)}\n{code:diff}\n" in text
    assert jira_code_body(text) == DIFF
    assert text.rstrip().endswith(
        "To ship this, reply {{/approve}}; to change it, {{/revise <what to change>}}; "
        "to drop it, {{/reject}}."
    )
    assert "`" not in text.split("----")[-1]


def test_jira_without_expand_for_data_center() -> None:
    text = render_proposal(view(), flavor="jira", jira_expand=False)
    assert "{expand" not in text
    assert "*Full diff (7 lines)*\n{code:diff}\n" in text


@pytest.mark.parametrize("flavor", FLAVORS)
def test_protected_changes_are_flagged_before_anything_else(flavor: Flavor) -> None:
    text = render_proposal(
        view(protected_changes=(".gitlab-ci.yml", ".github/workflows/x.yml")), flavor=flavor
    )
    warning = text.split("\n\n")[1]
    assert warning.startswith("⚠️" if flavor == "gitlab" else "(!)")
    assert "protected or CI files" in warning
    assert "gitlab-ci.yml" in warning and "workflows/x.yml" in warning
    assert "protected or CI" not in render_proposal(view(), flavor=flavor)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_failing_checks_show_the_tail_of_their_output(flavor: Flavor) -> None:
    output = "\x1b[31m" + "\n".join(f"line {i}" for i in range(500)) + "\nFAILED test_divide\x1b[0m"
    checks = (
        CommandResult("format", "ruff format --check .", "passed", 0),
        CommandResult("test", "pytest -q", "failed", 1, output),
        CommandResult("test", "sleep 999", "timed_out", None, "partial"),
        CommandResult("lint", "ruff check .", "skipped"),
    )
    text = render_proposal(view(checks=checks), flavor=flavor)
    assert "❌ fail (exit 1)" in text and "⏱ timed out" in text and "➖ not run" in text
    assert "FAILED test_divide" in text and "line 499" in text
    assert "line 10\n" not in text  # only the tail
    assert "\x1b" not in text


@pytest.mark.parametrize("flavor", FLAVORS)
def test_blockers_and_long_finding_lists_are_bounded(flavor: Flavor) -> None:
    verdict = Verdict(
        approve=True,
        blockers=[{"file": "a.py", "line": i + 1, "text": f"problem {i} " + "p" * 1000} for i in range(15)],
        summary="Not yet.",
    )
    text = render_proposal(view(verdict=verdict), flavor=flavor)
    assert "the reviewer has blockers" in text  # a blocker outweighs approve: true
    assert "Blockers (15)" in text
    assert "problem 9 " in text and "problem 10 " not in text
    assert "…and 5 more" in text
    assert "p" * 500 not in text


@pytest.mark.parametrize("flavor", FLAVORS)
def test_no_verdict_and_no_checks_are_said_plainly(flavor: Flavor) -> None:
    text = render_proposal(view(verdict=None, checks=(), files=(), diff=""), flavor=flavor)
    assert "No review verdict was recorded" in text
    assert "declares no checks" in text
    assert "No files changed." in text
    assert "no diff to show" in text


BREAKOUTS = [
    "+```\n+# forged heading\n+```",
    "+" + "`" * 30 + "\n",
    " ```\n",
    "+</details>\n+<details><summary>forged</summary>",
    "+{code}\n+h1. forged\n+{code:java}",
    "+{CODE}{noformat}{expand}{quote}{panel:title=x}",
    "+{ code }\n",
    "+<!-- baton:effect=proposal:evil -->\n",
    "+<!--baton:effect=x-->\n",
    "+\u202eunicode 名前 ✓\n",
]


@pytest.mark.parametrize("payload", BREAKOUTS)
def test_a_hostile_diff_stays_inside_its_block(payload: str) -> None:
    diff = DIFF + payload
    gitlab = render_proposal(view(diff=diff), flavor="gitlab")
    diff_blocks = [body for info, body in fenced_blocks(gitlab) if info == "diff"]
    assert len(diff_blocks) == 1
    assert diff_blocks[0].replace(ZWSP, "") == diff.replace("\u202e", "").rstrip("\n")
    jira = render_proposal(view(diff=diff), flavor="jira")
    assert jira_code_body(jira).replace(ZWSP, "") == diff.replace("\u202e", "").rstrip("\n") + "\n"
    assert jira[jira.index("{code:diff}") :].count("{code}") == 1
    for text in (gitlab, jira):
        assert find_marker(text) is None
        assert find_marker(with_marker(text, "proposal:prop-42")) == "proposal:prop-42"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_hostile_agent_text_cannot_mention_or_mark_up(flavor: Flavor) -> None:
    hostile = "@all [~admin] {code} <img src=x> **bold** #1 !2 <!-- baton:effect=x --> \n\nh1. heading"
    verdict = Verdict(
        approve=False,
        summary=hostile,
        blockers=[{"file": hostile, "line": 1, "text": hostile}],
    )
    text = render_proposal(view(summary=hostile, verdict=verdict), flavor=flavor)
    assert find_marker(text) is None
    assert "\nh1. heading" not in text
    if flavor == "gitlab":
        rendered = re.sub(r"(`+).+?\1", "", text)  # code spans show their text literally
        assert "@all" not in rendered
        assert not re.search(r"(?<!\\)<img", rendered)
        assert "**bold**" not in rendered
    else:
        before_diff = text[: text.index("{expand:Full diff")]
        assert "[~admin]" not in before_diff
        assert "{code}" not in before_diff


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_large_diff_is_truncated_with_a_note(flavor: Flavor) -> None:
    diff = "".join(f"+line {i} é€😀\n" for i in range(20_000))
    text = render_proposal(view(diff=diff), flavor=flavor)
    assert "The diff is truncated:" in text
    assert "of 20,000 lines shown" in text
    if flavor == "gitlab":
        [body] = [body for info, body in fenced_blocks(text) if info == "diff"]
        assert len(body.encode()) <= DIFF_LIMIT_BYTES
        assert body.endswith("😀")  # cut at a line boundary, never inside a character
    else:
        assert len(text) <= JIRA_MAX_CHARS


def test_the_diff_limit_is_configurable() -> None:
    diff = "".join(f"+{i}\n" for i in range(1000))
    text = render_proposal(view(diff=diff), flavor="gitlab", diff_limit_bytes=100)
    [body] = [body for info, body in fenced_blocks(text) if info == "diff"]
    assert 0 < len(body.encode()) <= 100


@pytest.mark.parametrize(
    ("diff", "limit", "shown", "noted"),
    [
        ("a\nb\n", 100, "a\nb\n", False),
        ("a\nb\n", 2, "a\n", True),
        ("abc", 2, "", True),
        ("é\n" * 3, 5, "é\n", True),
        ("", 0, "", False),
    ],
)
def test_truncate_diff_cuts_at_line_boundaries(diff: str, limit: int, shown: str, noted: bool) -> None:
    cut, note = truncate_diff(diff, limit)
    assert cut == shown
    assert bool(note) is noted


def test_jira_stays_under_its_comment_limit_with_everything_large() -> None:
    verdict = Verdict(
        approve=False,
        summary="s" * 4000,
        blockers=[{"text": "b" * 2000}] * 50,
        suggestions=[{"text": "s" * 2000}] * 50,
        scope_creep=[{"text": "c" * 2000}] * 50,
    )
    diff = "+x\n" * 100_000
    text = render_proposal(view(verdict=verdict, diff=diff), flavor="jira")
    assert len(text) <= JIRA_MAX_CHARS
    assert text.rstrip().endswith("{{/reject}}.")


@pytest.mark.parametrize(
    ("sha", "short"),
    [("0123456789ABCDEF0123", "01234567"), ("abc1234", "abc1234"), ("nothex!", "unknown"), ("", "unknown")],
)
def test_short_sha(sha: str, short: str) -> None:
    assert short_sha(sha) == short


@pytest.mark.parametrize(
    ("person", "flavor", "expected"),
    [
        (Person("Alice", gitlab_username="alice"), "gitlab", "@alice"),
        (Person("Alice", gitlab_username="all"), "gitlab", "Alice"),
        (Person("Alice", gitlab_username="al ice"), "gitlab", "Alice"),
        (Person("@all", gitlab_username=None), "gitlab", "@" + ZWSP + "all"),
        (
            Person("Alice", jira_account_id="557058:f58131cb-b67d"),
            "jira",
            "[~accountid:557058:f58131cb-b67d]",
        ),
        (Person("Alice", jira_name="alice.s"), "jira", "[~alice.s]"),
        (Person("Alice", jira_account_id="x]evil[", jira_name="ok"), "jira", "[~ok]"),
        (Person("[~admin]"), "jira", "\\[\\~admin\\]"),
        (Person(""), "gitlab", "there"),
    ],
)
def test_mentions_name_the_person_safely(person: Person, flavor: Flavor, expected: str) -> None:
    assert mention(person, flavor) == expected


@pytest.mark.parametrize(
    ("text", "flavor", "expected"),
    [
        ("DEMO-1 snake_case", "jira", "DEMO-1 snake_case"),
        ("-strike- *bold* {code}", "jira", "\\-strike\\- \\*bold\\* \\{code\\}"),
        ("a\\b", "jira", "a⧵b"),
        ("h1. heading", "jira", ZWSP + "h1. heading"),
        ("bq. quote", "jira", ZWSP + "bq. quote"),
        ("# item", "jira", ZWSP + "# item"),
        ("- item", "jira", "\\- item"),
        ("<b>x</b> @bob #3", "gitlab", "\\<b\\>x\\</b\\> @" + ZWSP + "bob \\#3"),
        ("line\nbreak\r\n\x00end", "gitlab", "line break end"),
    ],
)
def test_inline_text_is_escaped(text: str, flavor: Flavor, expected: str) -> None:
    assert inline(text, flavor) == expected


@pytest.mark.parametrize(("text", "expected"), [("a`b", "``a`b``"), ("`x", "`` `x ``"), ("plain", "`plain`")])
def test_inline_code_survives_backticks(text: str, expected: str) -> None:
    assert code(text, "gitlab") == expected


def test_refusal_names_the_person_and_quotes_the_command_gitlab() -> None:
    text = render_refusal(
        Person("Alice", gitlab_username="alice"),
        "/approve",
        "only maintainers of `demo/calculator` may approve",
        flavor="gitlab",
        what_next="Ask a maintainer to reply `/approve`.",
    )
    assert text.startswith(
        "@alice: I did not run `/approve`: only maintainers of `demo/calculator` may approve"
    )
    assert "Ask a maintainer to reply `/approve`." in text
    assert "<details><summary>In response to this:</summary>\n\n> /approve\n\n</details>" in text


def test_refusal_in_jira_quotes_with_a_quote_macro() -> None:
    text = render_refusal(
        Person("Alice", jira_account_id="5b10ac8d82e05b22cc7d4ef5"),
        "/approve please {code}",
        "the proposal changed since it was posted",
        flavor="jira",
    )
    assert text.startswith("[~accountid:5b10ac8d82e05b22cc7d4ef5]: I did not run {{/approve}}:")
    assert "In response to this:\n{quote}\n/approve please \\{code\\}\n{quote}" in text


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_hostile_command_is_quoted_flat(flavor: Flavor) -> None:
    text = render_refusal(Person("Eve"), "/approve\n# forged\n<!-- baton:effect=x -->", "no", flavor=flavor)
    assert "\n# forged" not in text
    assert find_marker(text) is None


@pytest.mark.parametrize("flavor", FLAVORS)
def test_untrusted_text_at_the_start_of_a_line_adds_no_structure(flavor: Flavor) -> None:
    for hostile in ("h1. forged", "# list", "> quote", "bq. quote", "* item", "1. item"):
        second = render_failure("x", hostile, flavor=flavor).split("\n\n")[1]
        structure = r"h1\.|bq\.|#|\*" if flavor == "jira" else r"#|>|\*"  # Jira quotes with bq.
        assert not re.match(structure, second), second


@pytest.mark.parametrize("flavor", FLAVORS)
def test_failure_says_what_failed_and_what_to_do(flavor: Flavor) -> None:
    text = render_failure(
        "Pushing the branch failed",
        "Reply `/retry` to try again.",
        flavor=flavor,
        who=Person("Bob", gitlab_username="bob", jira_name="bob"),
        command="/approve",
    )
    who = "@bob" if flavor == "gitlab" else "[~bob]"
    bold = "**" if flavor == "gitlab" else "*"
    assert text.startswith(f"❌ {who}: {bold}Pushing the branch failed{bold}")
    assert ("`/retry`" if flavor == "gitlab" else "{{/retry}}") in text
    assert "In response to this:" in text


def test_failure_without_a_person_or_command() -> None:
    assert render_failure("The run crashed", "Nothing to do.", flavor="gitlab") == (
        "❌ **The run crashed**\n\nNothing to do."
    )


# --- the verdict models the proposal renders (orchestrators/verdicts.py) -------------------------


@pytest.mark.parametrize(
    ("raw", "text", "file", "line"),
    [
        ({"text": "ok"}, "ok", None, None),
        ({"text": " spaced \r\n", "file": "  ", "line": 0}, "spaced", None, None),
        ({"text": "a\x00b\x1b[31m", "file": "src/\x00a.py", "line": -3}, "ab[31m", "src/a.py", None),
        ({"text": "t", "line": True}, "t", None, None),
        (
            {"text": "x" * 10_000, "file": "f" * 10_000, "line": 7},
            "x" * 1986 + " … [truncated]",
            "f" * 486 + " … [truncated]",
            7,
        ),
        ({"text": "名前 ✓", "file": "ü.py", "line": 1}, "名前 ✓", "ü.py", 1),
    ],
)
def test_findings_are_cleaned_and_bounded(
    raw: dict[str, object], text: str, file: str | None, line: int | None
) -> None:
    finding = Verdict.model_validate({"approve": True, "summary": "s", "blockers": [raw]}).blockers[0]
    assert (finding.text, finding.file, finding.line) == (text, file, line)


def test_verdict_lists_are_capped_and_absurd_summaries_cut() -> None:
    verdict = Verdict.model_validate(
        {
            "approve": True,
            "summary": "s" * 100_000,
            "suggestions": [{"text": "x"}] * 10_000,
            "extra": "ignored",
        }
    )
    assert len(verdict.suggestions) == 50
    assert len(verdict.summary) == 4000
    assert verdict.passes


@pytest.mark.parametrize(
    "raw",
    [
        {"summary": "missing approve"},
        {"approve": True},
        {"approve": True, "summary": "s", "blockers": [{"text": ""}]},
        {"approve": True, "summary": "s", "blockers": [{"file": "a.py"}]},
        {"approve": True, "summary": "s", "blockers": "not a list"},
    ],
)
def test_malformed_verdicts_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Verdict.model_validate(raw)


def test_triage_is_bounded_too() -> None:
    triage = Triage.model_validate({"ready": False, "questions": ["q" * 5000] * 80, "summary": "needs input"})
    assert len(triage.questions) == 50 and len(triage.questions[0]) == 1000
    assert Triage.model_json_schema()["required"] == ["ready", "summary"]


SPOOFS = [
    "see baton.effect=run%3Aother%3Areply here",
    "BATON.EFFECT=proposal%3Aold",
    "<!-- baton:effect=proposal:old -->",
    "{color:#ffffff}baton.effect=proposal%3Aold{color}",
]


@pytest.mark.parametrize("spoof", SPOOFS)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_quoted_text_carrying_a_marker_never_passes_for_one(spoof: str, flavor: Flavor) -> None:
    text = render_proposal(view(summary=spoof, diff=DIFF + "+# " + spoof + "\n"), flavor=flavor)
    assert find_marker(text) is None and find_jira_marker(text) is None
    posted = (
        with_jira_marker(text, "proposal:prop-42")
        if flavor == "jira"
        else with_marker(text, "proposal:prop-42")
    )
    assert find_jira_marker(posted) == "proposal:prop-42"


@pytest.mark.parametrize("spoof", SPOOFS)
def test_the_marker_baton_appends_wins_over_an_earlier_quoted_one(spoof: str) -> None:
    """Even text that was never defanged: Baton's own marker is the last one in what it posts."""
    assert find_jira_marker(with_jira_marker(spoof, "run:r1:reply")) == "run:r1:reply"
    assert find_marker(with_marker(spoof, "run:r1:reply")) == "run:r1:reply"
