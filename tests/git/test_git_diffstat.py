"""Parsing `git diff --numstat -z` output."""

from __future__ import annotations

from bot.git.diffstat import DiffStat, FileStat, parse_numstat


def test_text_binary_and_odd_paths() -> None:
    raw = b"3\t1\tsrc/app.py\x005\t0\tdir with space/t\xc3\xa9st.txt\x00-\t-\timg.png\x000\t4\ta\tb\x00"
    stat = parse_numstat(raw)
    assert stat.files == (
        FileStat("src/app.py", 3, 1),
        FileStat("dir with space/tést.txt", 5, 0),
        FileStat("img.png", None, None),
        FileStat("a\tb", 0, 4),
    )
    assert (stat.insertions, stat.deletions) == (8, 5)
    assert stat.summary() == "4 files changed, 8 insertions(+), 5 deletions(-)"


def test_empty_and_singular() -> None:
    assert parse_numstat(b"") == DiffStat(())
    assert parse_numstat(b"1\t1\tx\x00").summary() == "1 file changed, 1 insertion(+), 1 deletion(-)"
