"""Branch naming from hostile ticket text: always a valid, inert branch; no side effect when git uses it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.git.branch import branch_name, is_sha, is_valid_branch, is_valid_refname, slugify, ticket_part
from bot.git.errors import UnsafeInput
from bot.git.paths import check_run_id, mirror_dirname
from bot.git.workspace import Workspace
from tests.git.repos import BOT, PLAIN_ENV, Upstream, git

SAFE = re.compile(r"baton/[A-Za-z0-9_-]+")
MARKER = "/tmp/baton-test-pwned-marker"


def hostile_texts(marker: str) -> list[str]:
    return [
        f"--upload-pack=touch {marker}",
        f"-c core.sshCommand='touch {marker}'",
        "../../x",
        "refs/heads/../../etc/passwd",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"; touch {marker} #",
        "line one\nline two\r\n\x00\x1b[31m",
        "Ünïcödé — 日本語のチケット ✨",
        "x" * 10_000,
        "ä" * 10_000,
        "",
        "   ",
        "-",
        "--",
        "a..b.lock",
        "@{upstream}",
        "HEAD",
        "x.lock",
        "name.",
        "/leading/and/trailing/",
        "\ud800 lone surrogate",
    ]


def check_ref_format(name: str) -> str:
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", name],
        env=PLAIN_ENV,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("key", "summary", "expected"),
    [
        ("PROJ-123", "Fix login redirect loop", "baton/PROJ-123-fix-login-redirect-loop"),
        ("AB_2-7", "  Multiple   spaces -- and dashes  ", "baton/AB_2-7-multiple-spaces-and-dashes"),
        ("PROJ-1", "Café déjà vu", "baton/PROJ-1-cafe-deja-vu"),
        ("PROJ-1", "日本語", "baton/PROJ-1-change"),
        ("PROJ-1", "", "baton/PROJ-1-change"),
    ],
)
def test_names_read_well(key: str, summary: str, expected: str) -> None:
    assert branch_name(key, summary) == expected


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        (None, "baton/PROJ-123-fix-login"),  # a ticket's first run
        ("1d040c37d8b847be90f9cc4fd755ab90", "baton/PROJ-123-fix-login-1d040c37"),  # a later run
        ("8de1cd36b4e14536b556c54623f1d196", "baton/PROJ-123-fix-login-8de1cd36"),
    ],
)
def test_a_later_run_on_a_ticket_gets_a_branch_of_its_own(run_id: str | None, expected: str) -> None:
    assert branch_name("PROJ-123", "Fix login", run_id) == expected


@pytest.mark.parametrize("run_id", ["../../x y", "ABCDEF12345", "", "1d040c37\n", "-f"])
def test_a_run_id_that_is_not_hex_is_hashed_into_the_branch(run_id: str) -> None:
    name = branch_name("PROJ-1", "x", run_id)
    assert re.fullmatch(r"baton/PROJ-1-x-[0-9a-f]{8}", name) and is_valid_branch(name)
    assert branch_name("PROJ-1", "x", run_id) == name  # stable: a retried assemble finds the same branch


@pytest.mark.parametrize("text", hostile_texts(MARKER))
def test_hostile_text_yields_a_safe_branch_git_accepts(text: str) -> None:
    for name in (branch_name(text, text), branch_name("PROJ-1", text)):
        assert SAFE.fullmatch(name), name
        assert len(name) <= len("baton/") + 31 + 1 + 9 + 1 + 40
        assert is_valid_branch(name)
        assert check_ref_format(name) == name


@pytest.mark.parametrize(
    "key", ["proj-1", "PROJ-", "PROJ-1\n", "PROJ-1 ", "../PROJ-1", "A" * 40 + "-1", "PROJ-1234567890"]
)
def test_malformed_ticket_keys_become_a_stable_hash(key: str) -> None:
    part = ticket_part(key)
    assert re.fullmatch(r"ticket-[0-9a-f]{12}", part)
    assert ticket_part(key) == part
    assert ticket_part(key + "x") != part


def test_slug_is_bounded_and_never_ends_with_a_dash() -> None:
    slug = slugify("word " * 50)
    assert len(slug) <= 40
    assert not slug.endswith("-")
    assert not slug.startswith("-")


@given(st.text(max_size=300), st.text(max_size=300))
def test_any_text_gives_a_valid_branch(key: str, summary: str) -> None:
    name = branch_name(key, summary)
    assert SAFE.fullmatch(name)
    assert is_valid_branch(name)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("baton/PROJ-1-x", True),
        ("feature/a.b", True),
        ("-x", False),
        ("a..b", False),
        ("a@{1}", False),
        ("a.lock", False),
        ("a/.hidden", False),
        ("a//b", False),
        ("a/", False),
        ("a.", False),
        ("a b", False),
        ("a~1", False),
        ("a^", False),
        ("a:b", False),
        ("a?*[", False),
        ("a\\b", False),
        ("@", False),
        ("HEAD", False),
        ("refs/heads/x", False),
        ("", False),
    ],
)
def test_branch_validation_matches_gits_rules(name: str, ok: bool) -> None:
    assert is_valid_branch(name) is ok


def test_refname_and_sha_checks() -> None:
    assert is_valid_refname("refs/heads/main")
    assert not is_valid_refname("refs/heads/main.lock")
    assert is_sha("a" * 40)
    assert is_sha("b" * 64)
    assert not is_sha("A" * 40)
    assert not is_sha("a" * 39)


@pytest.mark.parametrize(
    "run_id", ["../x", "a/b", "", ".hidden", "-rf", "x" * 200, "a..b", "run.lock", "a\nb"]
)
def test_unsafe_run_ids_are_refused(run_id: str) -> None:
    with pytest.raises(UnsafeInput):
        check_run_id(run_id)


def test_mirror_names_are_single_components_and_distinct() -> None:
    names = {
        mirror_dirname(repo)
        for repo in ["group/project", "group-project", "../../etc", "a/b/c", "GROUP/Project"]
    }
    assert len(names) == 5
    assert all("/" not in name and not name.startswith((".", "-")) for name in names)


async def test_hostile_branches_have_no_side_effect_in_real_git(tmp_path: Path, upstream: Upstream) -> None:
    marker = tmp_path / "pwned"
    ws = Workspace(tmp_path / "ws", BOT)
    await ws.ensure_mirror(upstream.repo_id, str(upstream.bare), None)
    for n, text in enumerate(hostile_texts(str(marker))):
        branch = branch_name(text, text)
        async with ws.run_worktree(upstream.repo_id, f"hostile-{n}", "main", branch) as worktree:
            (worktree / "change.txt").write_text(text, errors="replace")
            sha = await ws.commit_all(worktree, text if text.strip() else "empty")
            await ws.push(worktree, str(upstream.bare), branch, None, sha)
        assert git("rev-parse", f"refs/heads/{branch}", cwd=upstream.bare) == sha
    assert not marker.exists()
