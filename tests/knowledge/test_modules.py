"""Module coverage: which page patterns (paths or globs) cover the paths a change touches, and how closely."""

from __future__ import annotations

import pytest

from bot.knowledge.modules import AROUND, EXACT, GLOB, INSIDE, coverage, literal_key, lookup_keys

CASES = [
    ("bot/clients/gitlab.py", "bot/clients/gitlab.py", EXACT),
    ("./bot/clients/", "bot/clients/gitlab.py", INSIDE),
    ("bot/clients", "bot/clients/sub/deep.py", INSIDE),
    ("bot/clients/gitlab.py", "bot/clients", AROUND),
    ("bot/clients", "bot/clientsX/a.py", 0.0),
    ("bot/client", "bot/clients/a.py", 0.0),
    ("bot/**", "bot/clients/gitlab.py", GLOB),
    ("bot/**/*.py", "bot/clients/gitlab.py", GLOB),
    ("bot/**/*.py", "bot/x.py", GLOB),
    ("**/*.py", "shell/cli.py", GLOB),
    ("bot/*.py", "bot/clients/gitlab.py", 0.0),
    ("bot/*", "bot/clients/gitlab.py", INSIDE),
    ("bot/clients/*.py", "bot/clients/gitlab.py", GLOB),
    ("bot/clients/gitlab.py", "bot/**", 0.0),
    ("bot/clients/?itlab.py", "bot/clients/gitlab.py", GLOB),
    ("bot/clients/[gj]*.py", "bot/clients/jira.py", GLOB),
    ("bot/clients/[!g]*.py", "bot/clients/gitlab.py", 0.0),
    ("bot/{clients,store}/**", "bot/store/runs.py", GLOB),
    ("bot/store/**", "bot", AROUND),
    ("bot/[unclosed", "bot/[unclosed", GLOB),
    ("", "bot", 0.0),
    ("bot", "", 0.0),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), CASES)
def test_coverage(pattern: str, path: str, expected: float) -> None:
    assert coverage(pattern, path) == expected


def test_every_covering_pattern_is_found_by_its_literal_key() -> None:
    for pattern, path, expected in CASES:
        if expected in (EXACT, GLOB, INSIDE) and pattern and path:
            assert literal_key(pattern) in lookup_keys(path), (pattern, path)
    assert literal_key("bot/**/x.py") == "bot"
    assert literal_key("**/*.py") == ""
    assert lookup_keys("bot/git/runner.py") == ["", "bot", "bot/git", "bot/git/runner.py"]
