"""The arrows point one way: the shell calls into orchestrators, orchestrators use adapters and pure
models, and nothing below calls back up. Every import is read from the source (also those inside
functions and `if TYPE_CHECKING:`), so the rule stays true as the code grows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The shell is its own package (`shell/`): web app and webhook plumbing, worker and its wiring, CLI,
# `up`, onboarding. `bot.worker_context` moved to orchestrators.resources and must never come back.
SHELL_PACKAGE = "shell"
GONE = frozenset({"bot.worker_context"})
# The sandbox (simulators, scripted model, `baton demo`) drives Baton from outside, as a team's
# GitLab and Jira would, so it may start the shell; it is not an adapter.
SANDBOX = "bot.sandbox"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, absolute names (`from x import y` counts as x and x.y)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def is_shell(name: str) -> bool:
    return name == SHELL_PACKAGE or name.startswith(f"{SHELL_PACKAGE}.") or name in GONE


def shell_imports(path: Path) -> list[str]:
    return sorted(name for name in imports_of(path) if is_shell(name))


@pytest.mark.parametrize("path", modules("orchestrators", "handlers"), ids=module_name)
def test_orchestrators_and_handlers_never_import_the_shell(path: Path) -> None:
    assert shell_imports(path) == []


ADAPTERS = [p for p in modules("bot") if not module_name(p).startswith(SANDBOX)]


@pytest.mark.parametrize("path", ADAPTERS, ids=module_name)
def test_adapters_never_import_an_orchestrator_or_the_shell(path: Path) -> None:
    upward = [n for n in imports_of(path) if n == "orchestrators" or n.startswith("orchestrators.")]
    assert upward == [] and shell_imports(path) == []


@pytest.mark.parametrize("path", modules("config"), ids=module_name)
def test_config_imports_neither_the_shell_nor_an_orchestrator(path: Path) -> None:
    assert [n for n in imports_of(path) if is_shell(n) or n.split(".")[0] == "orchestrators"] == []


def test_the_shell_is_a_package_of_its_own_and_bot_keeps_no_shell_module() -> None:
    """The modules that moved out of `bot/` stay out: `bot/` holds adapters, pure models, the sandbox."""
    moved = {"app", "body", "webhooks", "openapi", "metrics", "services", "worker", "wiring", "cli", "up"}
    assert sorted(p.stem for p in (ROOT / "bot").glob("*.py") if p.stem in moved | {"worker_context"}) == []
    assert moved <= {p.stem for p in (ROOT / SHELL_PACKAGE).glob("*.py")}


@pytest.mark.parametrize("path", modules("handlers"), ids=module_name)
def test_handlers_are_pure_they_import_no_orchestrator(path: Path) -> None:
    assert [n for n in imports_of(path) if n.split(".")[0] == "orchestrators"] == []


def test_the_rule_sees_what_it_must_refuse(tmp_path: Path) -> None:
    """The walker itself: a function-level import and a TYPE_CHECKING one are both seen."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shell.wiring import build_clients\n"
        "def f() -> None:\n    import shell.worker\n"
    )
    assert {"shell.wiring", "shell.worker"} <= imports_of(sample)
    assert shell_imports(sample) == ["shell.wiring", "shell.wiring.build_clients", "shell.worker"]
