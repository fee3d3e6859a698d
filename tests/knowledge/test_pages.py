"""Pages: the front matter format round-trips, and hostile files are refused with a message saying why."""

from __future__ import annotations

import contextlib
import datetime

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.knowledge.pages import (
    HARD_CAP_BYTES,
    KINDS,
    SOFT_CAP_BYTES,
    STATUSES,
    Page,
    PageError,
    adr_body,
    page_path,
    parse_page,
    render_page,
)
from config import projects
from config.projects import YamlRefused, load_yaml
from tests.knowledge.support import page

GOOD = b"""---
title: Retries must honour Retry-After
kind: pitfall
status: inferred
modules: [bot/clients/gitlab.py, "bot/clients/**"]
source: PROJ-12
updated: 2024-08-07
---

GitLab answers 429 with `Retry-After`.
"""


def doc(front: str, body: str = "Body.") -> bytes:
    return f"---\n{front}\n---\n\n{body}\n".encode()


FRONT = "title: T\nkind: pitfall\nstatus: inferred\nsource: me\nupdated: 2024-01-01"


def test_a_well_formed_page_is_read_field_by_field() -> None:
    got = parse_page("pitfalls/retry.md", GOOD)
    assert got == Page(
        path="pitfalls/retry.md",
        title="Retries must honour Retry-After",
        kind="pitfall",
        status="inferred",
        modules=("bot/clients/gitlab.py", "bot/clients/**"),
        source="PROJ-12",
        updated=datetime.date(2024, 8, 7),
        body="GitLab answers 429 with `Retry-After`.",
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", STATUSES)
def test_every_kind_and_status_round_trips(kind: str, status: str) -> None:
    original = page("Ünïcode: title — with 'quotes' & #hash", "line 1\n\n- item\n", kind=kind, status=status)  # type: ignore[arg-type]
    assert parse_page(original.path, render_page(original).encode()) == original


def test_an_adr_body_round_trips_with_its_three_sections() -> None:
    body = adr_body("We retry blindly.", "Honour Retry-After.", "Slower under load.")
    original = page("Use Retry-After", body, kind="decision", modules=("bot/clients/",))
    back = parse_page(original.path, render_page(original).encode())
    assert back == original
    assert [line for line in back.body.splitlines() if line.startswith("## ")] == [
        "## Context",
        "## Decision",
        "## Consequences",
    ]
    assert back.modules == ("bot/clients",)


def test_an_empty_body_and_no_modules_round_trip() -> None:
    original = page("Glossary: MR", kind="glossary").model_copy(update={"body": ""})
    assert parse_page(original.path, render_page(original).encode()) == original


def test_a_string_date_crlf_line_ends_and_a_bom_are_accepted() -> None:
    front = "title: T\r\nkind: history\r\nstatus: verified\r\nsource: MR !4\r\nupdated: '2024-02-03'"
    data = f"\ufeff---\r\n{front}\r\n---\r\nx\r\n"
    got = parse_page("history/t.md", data.encode())
    assert (got.updated, got.body, got.modules) == (datetime.date(2024, 2, 3), "x", ())


HOSTILE = [
    ("no front matter", b"# Just markdown\n", "no front matter"),
    ("unclosed front matter", b"---\ntitle: T\n", "not closed"),
    ("front matter is a list", doc("- a\n- b"), "must be a mapping"),
    ("front matter is a scalar", doc("just text"), "must be a mapping"),
    ("empty front matter", b"---\n---\nbody\n", "must be a mapping"),
    ("broken YAML", doc("title: [unclosed"), "not valid YAML"),
    ("unknown status", doc(FRONT.replace("inferred", "probably")), "unknown status 'probably'"),
    ("status of the wrong type", doc(FRONT.replace("inferred", "[verified]")), "unknown status"),
    ("unknown kind", doc(FRONT.replace("pitfall", "rumour")), "unknown kind 'rumour'"),
    ("unknown field", doc(FRONT + "\nmodlues: [a]"), "unknown front matter field(s) modlues"),
    ("missing fields", doc("title: T\nkind: pitfall"), "lacks status, source, updated"),
    ("bad date", doc(FRONT.replace("2024-01-01", "yesterday")), "ISO date"),
    ("impossible date", doc(FRONT.replace("2024-01-01", "'2024-02-30'")), "ISO date"),
    ("empty title", doc(FRONT.replace("title: T", "title: '  '")), "title is empty"),
    ("title with control chars", doc(FRONT.replace("title: T", 'title: "a\\x1bb"')), "control characters"),
    ("huge title", doc(FRONT.replace("title: T", "title: " + "t" * 300)), "longer than 200"),
    ("modules not a list", doc(FRONT + "\nmodules: {a: b}"), "list of paths or globs"),
    ("module traversal", doc(FRONT + "\nmodules: [../../etc]"), "without '..'"),
    ("absolute module", doc(FRONT + "\nmodules: [/etc/passwd]"), "must be relative"),
    ("module with spaces", doc(FRONT + "\nmodules: ['a b']"), "not a relative path or glob"),
    (
        "too many modules",
        doc(FRONT + "\nmodules: [" + ",".join(f"m{i}" for i in range(60)) + "]"),
        "more than 50",
    ),
    ("python object tag", doc(FRONT + "\nx: !!python/object/apply:os.system ['true']"), "not valid YAML"),
    ("duplicate keys", doc(FRONT + "\ntitle: again"), "duplicate key 'title'"),
    (
        "alias bomb",
        doc(
            "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]"
        ),
        "expands to more than",
    ),
    ("front matter over its cap", doc(FRONT + "\n# " + "x" * 20_000), "front matter is larger"),
    ("NUL bytes", GOOD + b"\x00\x01\x02", "binary content"),
    ("not UTF-8", b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)), "not UTF-8"),
    ("over the hard cap", GOOD + b"x" * HARD_CAP_BYTES, "more than the"),
]


@pytest.mark.parametrize(("data", "message"), [(d, m) for _, d, m in HOSTILE], ids=[n for n, _, _ in HOSTILE])
def test_hostile_pages_are_refused_naming_the_path_and_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(PageError) as caught:
        parse_page("pitfalls/x.md", data)
    assert str(caught.value).startswith("pitfalls/x.md")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "path",
    ["../x.md", "/etc/passwd.md", "a/../../x.md", "a//b.md", "./a.md", "a/./b.md", "a\\b.md", "x.txt",
     "notes", ".git/config.md", "-rf.md", "", "a" * 300 + ".md", "a/b c.md", "pit\x00falls/x.md"],
)  # fmt: skip
def test_traversal_and_odd_paths_are_refused(path: str) -> None:
    with pytest.raises(PageError, match="page path"):
        parse_page(path, GOOD)


def test_a_long_body_is_truncated_with_a_visible_note() -> None:
    body = ("Lorem ipsum é dolor. " * 3000).encode()
    got = parse_page("history/long.md", doc(FRONT.replace("pitfall", "history")).rstrip(b"\n") + body)
    assert len(got.body.encode()) < SOFT_CAP_BYTES + 200
    assert got.body.endswith(f"longer than {SOFT_CAP_BYTES} bytes; read it in the wiki]")
    whole = parse_page("history/long.md", doc(FRONT.replace("pitfall", "history")) + body, truncate=False)
    assert whole.body.endswith(body.decode().rstrip())
    assert len(whole.body.encode()) > len(body)


HOSTILE_YAML = [
    ("[" * 3000 + "]" * 3000, "nested too deeply"),
    ("{a: " * 1200 + "1" + "}" * 1200, "nested too deeply"),
    ("a: &x [1]\nb: [*x, *x, *x]\nc: &c [*c]\n", "refers to itself|undefined alias"),
    ("a: *nope\n", "undefined alias"),
    ("a: 1\na: 2\n", "duplicate key 'a' \\(line 2\\)"),
    ("a: b\x00\n", "not valid YAML"),
    ("a: \ud800\n", "not valid YAML"),
    ("a: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
]


@pytest.mark.parametrize("loader", [yaml.SafeLoader, yaml.CSafeLoader], ids=["python", "libyaml"])
def test_front_matter_yaml_is_read_and_refused_alike_by_either_loader(
    monkeypatch: pytest.MonkeyPatch, loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader]
) -> None:
    monkeypatch.setattr(projects, "_SAFE_LOADER", loader)
    for text, message in HOSTILE_YAML:
        with pytest.raises(YamlRefused, match=message):
            load_yaml(text)
    assert parse_page("pitfalls/x.md", GOOD).modules == ("bot/clients/gitlab.py", "bot/clients/**")
    assert load_yaml("a: &x {k: 1}\nb: {<<: *x, z: 2}\nc: 2024-08-07\n") == {
        "a": {"k": 1},
        "b": {"k": 1, "z": 2},
        "c": datetime.date(2024, 8, 7),
    }


def test_page_paths_are_safe_slugs() -> None:
    assert (
        page_path("pitfall", "GitLab 429: honour Retry-After!") == "pitfalls/gitlab-429-honour-retry-after.md"
    )
    assert page_path("decision", "Use FTS5 for search", 7) == "decisions/0007-use-fts5-for-search.md"
    assert page_path("glossary", "../../etc/passwd") == "glossary/etc-passwd.md"
    assert page_path("ownership", "Équipe données") == "ownership/equipe-donnees.md"
    long = page_path("history", "word " * 100)
    assert len(long) < 80
    assert page_path("history", "!!!").startswith("history/")
    for kind in ("decision", "pitfall", "ownership", "glossary", "history"):
        parse_page(page_path(kind, "日本語のタイトル"), GOOD)  # non-Latin titles still give a valid path


def test_page_path_refuses_unknown_kinds_and_bad_numbers() -> None:
    with pytest.raises(PageError, match="unknown kind"):
        page_path("rumour", "x")  # type: ignore[arg-type]
    with pytest.raises(PageError, match="1 to 9999"):
        page_path("decision", "x", 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_give_a_page_or_a_page_error(data: bytes) -> None:
    with contextlib.suppress(PageError):
        parse_page("pitfalls/fuzz.md", data)


@settings(max_examples=100, deadline=None)
@given(
    title=st.text(min_size=1, max_size=80).filter(
        lambda t: t.strip() and not any(ord(c) < 32 or ord(c) == 127 for c in t)
    ),
    body=st.text(max_size=400).filter(lambda t: "\x00" not in t),
    source=st.sampled_from(["PROJ-1", "group/project!12", "Alice Example", "ü: # tricky"]),
)
def test_rendered_pages_always_parse_back_to_themselves(title: str, body: str, source: str) -> None:
    try:
        original = page(title, body, source=source)
    except ValueError:
        return  # a page the model itself refuses (e.g. a title of only unicode separators)
    assert parse_page(original.path, render_page(original).encode()) == original
