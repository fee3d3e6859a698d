"""`.baton.yml`: defaults, commands in stage order, one-line refusals, and protected-path matching."""

from __future__ import annotations

import time

import pytest

from bot.repo_config import (
    ALWAYS_PROTECTED,
    DEFAULT_TIMEOUT_S,
    MAX_BYTES,
    RepoConfig,
    RepoConfigError,
    glob_matches,
    modules_for,
    normalize_path,
    parse_repo_config,
    touched_protected,
)

FULL = """
commands:
  test: [pytest -q, "python -m doctest README.md"]
  format: ruff format .
  lint: [ruff check ., mypy --strict src]
protected_paths: [migrations/, "*.lock", "docs/**/secret*"]
modules:
  calculator: [src/calc/**]
  docs: docs/
timeout_s: 120
"""


@pytest.mark.parametrize("text", [None, "", "  \n", "# nothing configured\n", "---\n"])
def test_a_missing_or_empty_file_gives_defaults(text: str | None) -> None:
    cfg = parse_repo_config(text)
    assert cfg == RepoConfig()
    assert cfg.declared_commands == ()
    assert cfg.timeout_s == DEFAULT_TIMEOUT_S
    assert cfg.all_protected == ALWAYS_PROTECTED


def test_a_full_file_is_read_in_stage_order() -> None:
    cfg = parse_repo_config(FULL)
    assert cfg.commands.staged() == [
        ("format", "ruff format ."),
        ("lint", "ruff check ."),
        ("lint", "mypy --strict src"),
        ("test", "pytest -q"),
        ("test", "python -m doctest README.md"),
    ]
    assert cfg.declared_commands[0] == "ruff format ."
    assert cfg.all_protected == (*ALWAYS_PROTECTED, "migrations/", "*.lock", "docs/**/secret*")
    assert cfg.modules == {"calculator": ("src/calc/**",), "docs": ("docs/",)}
    assert cfg.timeout_s == 120


def test_always_protected_paths_are_not_listed_twice() -> None:
    cfg = parse_repo_config("protected_paths: [.gitlab-ci.yml, src/secret.py]\n")
    assert cfg.all_protected == (*ALWAYS_PROTECTED, "src/secret.py")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("commands: {test: 'pytest \"unclosed'}\n", "commands.test: cannot split"),
        ("commands: {test: ['']}\n", "commands.test"),
        ('commands: {test: ["pytest\\nrm -rf /"]}\n', "one line"),
        ('commands: {test: ["pytest\\r\\nrm"]}\n', "one line"),
        ('commands: {test: ["pytest\\x00"]}\n', "commands.test"),
        ("commands: {test: ['" + "x" * 2001 + "']}\n", "one line of 1-2000 characters"),
        ("commands: {deploy: [make deploy]}\n", "commands.deploy: unknown field"),
        ("commands: [pytest]\n", "commands"),
        ("commands: {test: {a: b}}\n", "commands.test"),
        ("commands: {test: [1]}\n", "commands.test[0]"),
        ("protected_paths: 3\n", "protected_paths"),
        ("protected_paths: ['']\n", "protected_paths"),
        ('protected_paths: ["a\\tb"]\n', "protected_paths"),
        ("modules: {'': [src]}\n", "invalid module name"),
        ("modules: [src]\n", "modules"),
        ("timeout_s: 0\n", "timeout_s"),
        ("timeout_s: 100000\n", "timeout_s"),
        ("timeout_s: soon\n", "timeout_s"),
        ("tests: pytest\n", "tests: unknown field"),
        ("- pytest\n", "the top level must be a mapping"),
        ("pytest -q\n", "the top level must be a mapping"),
        ("a: &a [*a]\n", "an alias refers to itself"),
        ("commands: {test: [x]}\ncommands: {}\n", "duplicate key 'commands'"),
        ("commands: {\n", "not valid YAML"),
        ("#" + "x" * MAX_BYTES, "larger than"),
    ],
)
def test_invalid_files_are_refused_in_one_line(text: str, reason: str) -> None:
    with pytest.raises(RepoConfigError) as info:
        parse_repo_config(text)
    message = str(info.value)
    assert message.startswith(".baton.yml: ")
    assert reason in message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        (".gitlab-ci.yml", ".gitlab-ci.yml", True),
        (".gitlab-ci.yml", "sub/.gitlab-ci.yml", True),  # no slash: any depth
        (".gitlab-ci.yml", ".gitlab-ci.yml.bak", False),
        (".github/**", ".github/workflows/ci.yml", True),
        (".github/**", ".github", True),
        (".github/**", ".githubx/a", False),
        (".github/**", "sub/.github/a", False),  # a slash anchors at the root
        ("migrations/", "migrations/0001.sql", True),
        ("migrations/", "app/migrations/0001.sql", True),  # as in .gitignore: only a leading slash anchors
        ("/migrations/", "app/migrations/0001.sql", False),
        ("migrations", "app/migrations/0001.sql", True),  # a matching directory protects what is below
        ("*.lock", "poetry.lock", True),
        ("*.lock", "deep/down/Cargo.lock", True),
        ("*.lock", "lockfile", False),
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/pkg/a.py", False),
        ("src/**/*.py", "src/a.py", True),
        ("src/**/*.py", "src/pkg/deep/a.py", True),
        ("docs/**/secret*", "docs/secret.md", True),
        ("docs/**/secret*", "docs/a/b/secret-plan.md", True),
        ("docs/**/secret*", "docs/a/public.md", False),
        ("a/[!b]c", "a/xc", True),
        ("a/[!b]c", "a/bc", False),
        ("a/?c", "a/xc", True),
        ("a/?c", "a/c", False),
        ("/rooted.txt", "rooted.txt", True),
        ("[z-a]x", "zx", False),
        ("名前/*", "名前/ファイル", True),
        ("**", "anything/at/all", True),
    ],
)
def test_glob_semantics(pattern: str, path: str, expected: bool) -> None:
    assert glob_matches(pattern, path) is expected


def test_a_hostile_pattern_cannot_make_matching_slow() -> None:
    pattern = "**/" * 60 + "*a*a*a*a*a*a*a*a*a*a*a*a*b"
    path = "a/" * 2000 + "a" * 250
    started = time.monotonic()
    assert glob_matches(pattern, path) is False
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("src/a.py", "src/a.py"),
        ("./src//a.py", "src/a.py"),
        ("src/../.gitlab-ci.yml", ".gitlab-ci.yml"),
        ("src\\..\\.baton.yml", ".baton.yml"),
        ("../outside", None),
        ("a/../../outside", None),
        ("/etc/passwd", None),
        ("", None),
        (".", None),
    ],
)
def test_paths_are_normalised_and_escapes_detected(path: str, normal: str | None) -> None:
    assert normalize_path(path) == normal


@pytest.mark.parametrize(
    ("paths", "protected"),
    [
        (["src/calc.py", "tests/test_calc.py"], []),
        ([".gitlab-ci.yml"], [".gitlab-ci.yml"]),
        (["./.gitlab-ci.yml", "src/x/../../.baton.yml"], ["./.gitlab-ci.yml", "src/x/../../.baton.yml"]),
        ([".github/workflows/deploy.yml", "src/a.py"], [".github/workflows/deploy.yml"]),
        (["migrations/0002.sql", "poetry.lock"], ["migrations/0002.sql", "poetry.lock"]),
        (["../../etc/passwd", "/abs/path"], ["../../etc/passwd", "/abs/path"]),
        ([".gitlab-ci.yml", ".gitlab-ci.yml"], [".gitlab-ci.yml"]),
        (["src/\x00.gitlab-ci.yml"], []),
        (["src/a.py\r\n.gitlab-ci.yml"], []),
        (["docs/x/secret.txt"], ["docs/x/secret.txt"]),
        ([".GITLAB-CI.YML"], []),
    ],
)
def test_touched_protected_lists_hits_in_order_once(paths: list[str], protected: list[str]) -> None:
    cfg = parse_repo_config(FULL)
    assert touched_protected(paths, cfg) == protected


def test_ci_files_are_protected_even_without_a_config() -> None:
    assert touched_protected([".gitlab-ci.yml", ".github/x", ".baton.yml", "a.py"], RepoConfig()) == [
        ".gitlab-ci.yml",
        ".github/x",
        ".baton.yml",
    ]


def test_modules_for_names_the_modules_a_change_touches() -> None:
    cfg = parse_repo_config(FULL)
    assert modules_for(["src/calc/core.py", "docs/index.md"], cfg.modules) == ["calculator", "docs"]
    assert modules_for(["README.md", "../src/calc/x.py"], cfg.modules) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("checkout: src", ("src",)),
        ("checkout: [django/utils/, /tests, django/utils]", ("django/utils", "tests")),
        ("checkout: [.github, .gitlab/ci]", (".github", ".gitlab/ci")),
        ("commands: {test: [pytest]}", ()),
    ],
)
def test_checkout_directories_are_normalized(text: str, expected: tuple[str, ...]) -> None:
    assert parse_repo_config(text).checkout == expected


@pytest.mark.parametrize(
    "value",
    [
        *("../up", "a/../../b", "src/*", "[ab]", "-rf", ".git", ".git/hooks", "."),
        *("''", "'a\\nb'", "a\\\\b", "{x: 1}"),
    ],
)
def test_checkout_refuses_what_is_not_a_plain_directory(value: str) -> None:
    with pytest.raises(RepoConfigError, match="checkout"):
        parse_repo_config(f"checkout: [{value}]")


def test_checkout_is_capped() -> None:
    many = ", ".join(f"d{n}" for n in range(101))
    with pytest.raises(RepoConfigError, match="checkout"):
        parse_repo_config(f"checkout: [{many}]")
