"""`baton wiki index | search | add | show` as a person (and a script) would use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.knowledge.pages import HARD_CAP_BYTES, SOFT_CAP_BYTES, render_page
from shell.cli import app
from tests.knowledge.support import commit_raw, page

runner = CliRunner()
PITFALL = page(
    "Honour Retry-After", "GitLab answers 429 with Retry-After.", modules=("bot/clients/gitlab.py",)
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"BATON_STATE_DIR": str(tmp_path / "state"), "BATON_SANDBOX": "1"}


def baton(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["wiki", *args], env=env, input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_add_then_show_search_and_index(env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "draft.md"
    source.write_text(render_page(PITFALL))
    code, out, _ = baton(env, "add", str(source), "--author", "Alice Example")
    assert code == 0
    assert out.startswith("pitfalls/honour-retry-after.md (inferred pitfall) at ")

    code, out, _ = baton(env, "show", PITFALL.path)
    assert (code, out) == (0, render_page(PITFALL))

    code, out, _ = baton(env, "search", "gitlab 429", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["path"], row["modules_matched"]) == (PITFALL.path, False)
    code, out, _ = baton(env, "search", "-", "--module", "bot/clients/gitlab.py", "--json",
                         stdin="Ticket: the client ignores Retry-After when GitLab says 429")  # fmt: skip
    assert json.loads(out)[0]["modules_matched"] is True

    code, out, _ = baton(env, "index")
    assert code == 0
    assert out.startswith("1 pages indexed at ")


def test_decisions_are_numbered_as_they_are_added(env: dict[str, str], tmp_path: Path) -> None:
    for n, title in enumerate(["Use FTS5", "Keep the wiki in git"], start=1):
        draft = tmp_path / f"adr{n}.md"
        draft.write_text(render_page(page(title, kind="decision")))
        code, out, _ = baton(env, "add", str(draft))
        assert code == 0
        assert out.startswith(f"decisions/{n:04d}-")


BAD_FILES = [
    ("no front matter", b"# just a heading\n", "draft.md: no front matter"),
    ("unknown status", render_page(PITFALL).replace("inferred", "maybe").encode(), "unknown status 'maybe'"),
    ("binary", b"\x00\x01garbage", "binary content"),
    ("too big", b"x" * (HARD_CAP_BYTES + 10), "larger than the"),
]


@pytest.mark.parametrize(
    ("data", "message"), [(d, m) for _, d, m in BAD_FILES], ids=[n for n, _, _ in BAD_FILES]
)
def test_add_refuses_bad_pages_with_exit_1(
    env: dict[str, str], tmp_path: Path, data: bytes, message: str
) -> None:
    draft = tmp_path / "draft.md"
    draft.write_bytes(data)
    code, _, error = baton(env, "add", str(draft))
    assert code == 1
    assert message in " ".join(error.split())
    assert baton(env, "search", "retry")[0] == 1


def test_add_refuses_a_body_over_the_soft_cap_and_show_prints_a_page_whole(
    env: dict[str, str], tmp_path: Path
) -> None:
    long_page = page(PITFALL.title, "Retry-After details. " * 2000, modules=PITFALL.modules)  # ~40 KB
    draft = tmp_path / "draft.md"
    draft.write_text(render_page(long_page))
    code, _, error = baton(env, "add", str(draft))
    assert code == 1
    assert f"an agent is shown only the first {SOFT_CAP_BYTES}" in " ".join(error.split())
    assert "nothing was stored" in " ".join(error.split())
    assert baton(env, "show", PITFALL.path)[0] == 1
    commit_raw(tmp_path / "state" / "wiki", {long_page.path: render_page(long_page).encode()})  # by git
    code, out, _ = baton(env, "show", PITFALL.path)
    assert (code, out) == (0, render_page(long_page))


def test_usage_errors(env: dict[str, str], tmp_path: Path) -> None:
    assert baton(env, "add", str(tmp_path / "missing.md"))[0] == 2
    assert baton(env, "add", str(tmp_path))[0] == 2
    draft = tmp_path / "draft.md"
    draft.write_text(render_page(PITFALL))
    assert baton(env, "add", str(draft), "--path", "../../etc/passwd")[0] == 1
    code, _, error = baton(env, "show", "pitfalls/nothing.md")
    assert (code, error.strip()) == (1, "no page 'pitfalls/nothing.md' in the wiki")
    assert baton(env, "show", "../x.md")[0] == 1
    assert baton(env, "search", 'NEAR( "*')[0] == 1
    assert baton({**env, "BATON_PORT": "99999"}, "index")[0] == 2


def test_index_lists_refused_pages(env: dict[str, str], tmp_path: Path) -> None:
    draft = tmp_path / "draft.md"
    draft.write_text(render_page(PITFALL))
    baton(env, "add", str(draft))
    commit_raw(tmp_path / "state" / "wiki", {"pitfalls/broken.md": b"---\ntitle: x\n"})
    code, out, error = baton(env, "index")
    assert code == 0
    assert out.startswith("1 pages indexed")
    assert "refused pitfalls/broken.md: pitfalls/broken.md: the front matter is not closed" in " ".join(
        error.split()
    )
    code, _, error = baton(env, "show", "pitfalls/broken.md")
    assert code == 1
    assert "not closed" in error


def test_an_unusable_wiki_directory_exits_3(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "state" / "wiki").mkdir(parents=True)
    (tmp_path / "state" / "wiki" / "notes.txt").write_text("someone else's")
    code, _, error = baton(env, "index")
    assert code == 3
    assert "not a bare git repository" in error
