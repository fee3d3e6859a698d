"""The slash-command parser: which lines count as commands, and which never do."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.skills import default_skills
from handlers.commands import (
    MAX_ARGS,
    MAX_COMMANDS,
    Command,
    did_you_mean,
    first_known,
    help_lines,
    parse_commands,
    suggest,
)

SKILLS = default_skills()
KNOWN_COMMANDS = {s.name: s.help for s in SKILLS.skills}
ALIASES = dict(SKILLS.aliases)

APPROVE = [Command("approve")]

ACCEPTED = [
    ("/approve", APPROVE),
    ("/APPROVE", APPROVE),
    ("/Approve", APPROVE),
    ("  /approve", APPROVE),
    ("   /approve", APPROVE),
    ("\u2028/approve", APPROVE),  # a Unicode line separator is whitespace before the slash
    ("/approve   ", APPROVE),
    ("/approve\r\n", APPROVE),
    ("looks good\r\n/approve\r\nthanks", APPROVE),
    ("looks good\r/approve", APPROVE),
    ("Thanks!\n\n/approve", APPROVE),
    ("/revise  use the v2 client  ", [Command("revise", "use the v2 client")]),
    ("/revise\tuse tabs", [Command("revise", "use tabs")]),
    ("/fix the null check", [Command("remediate", "the null check")]),
    ("/FIX", [Command("remediate")]),
    ("/remediate rename `x` to `y`", [Command("remediate", "rename `x` to `y`")]),
    ("/approve\n/reject", [Command("approve"), Command("reject")]),
    ("/aprove", [Command("aprove")]),
    ("/re-run now", [Command("re-run", "now")]),
    ("/approve \x00evil\x07", [Command("approve", "evil")]),
    ("```\n/reject\n```\n/approve", APPROVE),
    ("~~~~\n/reject\n~~~\n/reject\n~~~~\n/approve", APPROVE),
    ("{code:java}\n/reject\n{code}\n/approve", APPROVE),
    ("{noformat}\n/reject\n{noformat}\n/approve", APPROVE),
    ("{quote}\n/reject\n{quote}\n/approve", APPROVE),
    ("> quoted\n\n/approve", APPROVE),
    ("<!-- hidden\n/reject\n-->\n/approve", APPROVE),
    ("text\n    /approve", APPROVE),  # four spaces inside a paragraph: continuation text, not code
    ("```inline``` is not a fence\n/approve", APPROVE),
]

IGNORED = [
    "",
    "approve",
    "please /approve this",
    "LGTM, /approve",
    "`/approve`",
    "\\/approve",
    "> /approve",
    ">/approve",
    "  > /approve",
    "> I said\n/approve",  # lazy continuation: rendered inside the quote
    "bq. /approve",
    "bq. quoting\n/approve",
    "{quote}\n/approve\n{quote}",
    "{quote}said {code}\n/approve\n{code}{quote}",
    "```\n/approve\n```",
    "```python\n/approve\n```",
    "~~~ `info` may hold backticks after tildes\n/approve\n~~~",
    "~~~\n/approve\n~~~",
    "````\n```\n/approve\n````",  # a shorter fence does not close a longer one
    "```\n/approve",  # an unclosed fence runs to the end
    "  ```\n  /approve\n  ```",
    "{code}\n/approve\n{code}",
    "{code:title=Foo.java|borderStyle=solid}\n/approve\n{code}",
    "{CODE}\n/approve\n{CODE}",
    "{code}\n{code:java}\n/approve\n{code}",
    "{noformat}\n/approve\n{noformat}",
    "{code}\n{quote}\n{quote}\n/approve",
    "before {code}\n/approve\n{code}",
    "<!--\n/approve\n-->",
    "    /approve",  # indented code block
    "intro\n\n    /approve",
    "\t/approve\n",  # a tab indents as far as four spaces
    "／approve",  # fullwidth solidus
    "∕approve",  # division slash
    "/аpprove",  # Cyrillic а
    "/ａpprove",  # fullwidth a
    "/approve\u00e9",
    "/approve\x00",
    "/approve/now",
    "/usr/bin/env python",
    "/" + "a" * 33,
    "/ approve",
    "/-approve",
    "//approve",
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_accepted_forms(text: str, expected: list[Command]) -> None:
    assert parse_commands(text, skills=SKILLS) == expected


@pytest.mark.parametrize("text", IGNORED)
def test_ignored_forms(text: str) -> None:
    assert parse_commands(text, skills=SKILLS) == []


@pytest.mark.parametrize(
    ("text", "syntax", "expected"),
    [
        ("{code}\n/approve\n{code}", "markdown", APPROVE),  # braces are literal text in GitLab
        ("{code}\n/approve\n{code}", "jira", []),
        ("```\n/approve\n```", "jira", APPROVE),  # fences mean nothing in Jira wiki markup
        ("```\n/approve\n```", "markdown", []),
        ("> quoted\n/approve", "jira", APPROVE),  # ">" is not a quote in Jira wiki markup
        ("bq. quoted\n/approve", "markdown", APPROVE),
        ("<!--\n/approve\n-->", "jira", APPROVE),
        ("    /approve", "jira", APPROVE),
    ],
)
def test_syntax_specific_blocks(text: str, syntax: str, expected: list[Command]) -> None:
    assert parse_commands(text, syntax=syntax, skills=SKILLS) == expected  # type: ignore[arg-type]


def test_long_args_are_capped() -> None:
    (command,) = parse_commands("/revise " + "x" * 1_000_000, skills=SKILLS)
    assert command.name == "revise"
    assert len(command.args) == MAX_ARGS


def test_ten_thousand_lines_are_parsed_quickly_and_capped() -> None:
    text = "\n".join(["/approve"] * 10_000)
    started = time.perf_counter()
    commands = parse_commands(text, skills=SKILLS)
    assert len(commands) == MAX_COMMANDS
    assert time.perf_counter() - started < 2


def test_ten_thousand_lines_of_prose_find_the_last_command() -> None:
    text = "\n".join(["just words, /approve mid-line"] * 10_000 + ["/reject"])
    assert parse_commands(text, skills=SKILLS) == [Command("reject")]


def test_huge_single_line_without_command() -> None:
    assert parse_commands("a" * 1_000_000 + "\n" + "{" * 100_000, skills=SKILLS) == []


@pytest.mark.parametrize("text", ["\x00" * 1000, "\x00/approve", "/approve\x00\n\x00"])
def test_nul_bytes_never_make_a_command(text: str) -> None:
    assert parse_commands(text, skills=SKILLS) == []


def test_known_commands_and_aliases() -> None:
    assert set(KNOWN_COMMANDS) == {
        "approve",
        "reject",
        "revise",
        "retry",
        "status",
        "cancel",
        "help",
        "remediate",
        "verify",
        "analyze-ci",
    } | {
        name for name in ("explain", "summarize", "classify") if name in KNOWN_COMMANDS
    }  # #15's read-only skills
    assert ALIASES == {"fix": "remediate", "summarise": "summarize"}
    assert all(SKILLS.lookup(name) is not None for name in KNOWN_COMMANDS)
    assert SKILLS.lookup("aprove") is None


def test_help_is_generated_from_the_registry() -> None:
    lines = help_lines(SKILLS)
    assert len(lines) == len(KNOWN_COMMANDS)
    assert all("\n" not in text and text for text in KNOWN_COMMANDS.values())
    assert [line.split(" ", 1)[0].rstrip(":") for line in lines] == [f"/{name}" for name in KNOWN_COMMANDS]


def test_changing_the_manifest_changes_parsing_dispatch_and_help() -> None:
    from config.skills import default_skills, load_skills

    custom = load_skills(
        """
skills:
  - {name: approve, orchestrator: approve, help: ship it, usage: "/approve"}
  - {name: deploy, aliases: [ship], orchestrator: deploy-preview, help: deploy a preview of the MR}
"""
    )
    assert help_lines(custom) == [
        "/approve: ship it — `/approve`",
        "/deploy /ship: deploy a preview of the MR",
    ]
    assert help_lines(custom) != help_lines(default_skills())
    assert first_known(parse_commands("/ship now", skills=custom), custom) == Command("deploy", "now")
    assert first_known(parse_commands("/status", skills=custom), custom) is None  # not in this manifest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@baton-bot fix this please", Command("remediate", "this please")),
        ("@Baton-Bot: /approve", Command("approve")),
        ("  @baton-bot retry validate", Command("retry", "validate")),
        ("@baton-bot", None),
        ("hey @baton-bot fix this", None),  # mid-line
        ("> @baton-bot approve", None),  # quoted
        ("@baton-botty approve", None),  # another user
        ("```\n@baton-bot approve\n```", None),  # in code
    ],
)
def test_mention_form(text: str, expected: Command | None) -> None:
    assert (
        first_known(parse_commands(text, syntax="markdown", mentions=["@baton-bot"], skills=SKILLS), SKILLS)
        == expected
    )


def test_first_known_skips_unknown_commands() -> None:
    assert first_known(parse_commands("/aprove\n/status", skills=SKILLS), SKILLS) == Command("status")
    assert first_known(parse_commands("/aprove", skills=SKILLS), SKILLS) is None


@pytest.mark.parametrize(
    ("typo", "closest"),
    [
        ("aprove", "approve"),
        ("approved", "approve"),
        ("hlep", "help"),
        ("rejct", "reject"),
        ("stauts", "status"),
    ],
)
def test_suggest_closest(typo: str, closest: str) -> None:
    assert suggest(typo, SKILLS) == closest


@pytest.mark.parametrize("word", ["s", "tmp", "shrug", "x" * 32])
def test_no_suggestion_for_unrelated_words(word: str) -> None:
    assert suggest(word, SKILLS) is None
    assert did_you_mean("@ann", Command(word), skills=SKILLS) is None


def test_did_you_mean_names_the_person_quotes_the_command_and_points_to_help() -> None:
    text = did_you_mean("@ann", Command("aprove", "ZZARG"), skills=SKILLS)
    assert text is not None
    assert text.startswith("@ann")
    assert "`/aprove`" in text
    assert "`/approve`" in text
    assert "`/help`" in text
    assert "ZZARG" not in text  # arguments are never echoed back


def test_did_you_mean_in_jira_markup() -> None:
    text = did_you_mean("[~ann]", Command("aprove"), syntax="jira", skills=SKILLS)
    assert text is not None
    assert "{{/aprove}}" in text
    assert "{{/approve}}" in text
    assert "`" not in text


@settings(max_examples=500, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(list("/ab-\n\r\t >`~{}codeqtuapprove!<-\x00é")), max_size=200)
    | st.text()
)
def test_any_text_parses_to_well_formed_commands(text: str) -> None:
    commands = parse_commands(text, skills=SKILLS)
    assert len(commands) <= MAX_COMMANDS
    for command in commands:
        assert re.fullmatch(r"[a-z0-9_][a-z0-9_-]{0,31}", command.name)
        assert len(command.args) <= MAX_ARGS
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", command.args)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_nothing_inside_a_fence_ever_counts(text: str) -> None:
    body = "\n".join(line for line in text.splitlines() if "```" not in line and "~~~" not in line)
    assert parse_commands("```\n" + body + "\n```", skills=SKILLS) == []


FORMS_ACCEPTED = [
    ("/{c}", ""),
    ("/{C}", ""),  # wrong case
    ("   /{c}   ", ""),  # extra whitespace
    ("/{c} some words", "some words"),
    ("thanks!\n/{c}\nmore", ""),  # its own line inside prose
    ("/{c}\r\n", ""),  # CRLF
]
FORMS_IGNORED = [
    "> /{c}",  # quoted (markdown)
    "```\n/{c}\n```",  # fenced code
    "    /{c}",  # indented code block
    "please /{c} this",  # mid-line
    "`/{c}`",  # inline code
    "<!-- /{c} -->",  # HTML comment
    "/{c}x",  # another word
]


@pytest.mark.parametrize("command", sorted(KNOWN_COMMANDS))
@pytest.mark.parametrize(("form", "args"), FORMS_ACCEPTED)
def test_every_command_in_every_accepted_form(command: str, form: str, args: str) -> None:
    text = form.replace("{c}", command).replace("{C}", command.upper())
    assert first_known(parse_commands(text, syntax="markdown", skills=SKILLS), SKILLS) == Command(
        command, args
    )


@pytest.mark.parametrize("command", sorted(KNOWN_COMMANDS))
@pytest.mark.parametrize("form", FORMS_IGNORED)
def test_every_command_in_every_ignored_form(command: str, form: str) -> None:
    assert (
        first_known(parse_commands(form.replace("{c}", command), syntax="markdown", skills=SKILLS), SKILLS)
        is None
    )
