"""The arrows point one way: the shell calls into orchestrators, orchestrators use adapters and pure
models, and nothing below calls back up. Every import is read from the source (also those inside
functions and `if TYPE_CHECKING:`), so the rule stays true as the code grows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The shell: web app and webhook plumbing, worker and its wiring, CLI, `up`, onboarding, the demo.
SHELL = frozenset(
    {
        "bot.app",
        "bot.webhooks",
        "bot.body",
        "bot.openapi",
        "bot.metrics",
        "bot.services",
        "bot.worker",
        "bot.wiring",
        "bot.worker_context",  # moved to orchestrators.resources; never again in the shell
        "bot.cli",
        "bot.up",
        "bot.redis_local",
        "bot.onboarding",
        "bot.demo",
        "bot.demo_steps",
        "bot.demo_watch",
    }
)


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


def shell_imports(path: Path) -> list[str]:
    return sorted(name for name in imports_of(path) if name in SHELL)


@pytest.mark.parametrize("path", modules("orchestrators", "handlers"), ids=module_name)
def test_orchestrators_and_handlers_never_import_the_shell(path: Path) -> None:
    assert shell_imports(path) == []


ADAPTERS = [p for p in modules("bot") if module_name(p) not in SHELL]


@pytest.mark.parametrize("path", ADAPTERS, ids=module_name)
def test_adapters_never_import_an_orchestrator_or_the_shell(path: Path) -> None:
    upward = [n for n in imports_of(path) if n == "orchestrators" or n.startswith("orchestrators.")]
    assert upward == [] and shell_imports(path) == []


@pytest.mark.parametrize("path", modules("handlers"), ids=module_name)
def test_handlers_are_pure_they_import_no_orchestrator(path: Path) -> None:
    assert [n for n in imports_of(path) if n.split(".")[0] == "orchestrators"] == []


def test_the_rule_sees_what_it_must_refuse(tmp_path: Path) -> None:
    """The walker itself: a function-level import and a TYPE_CHECKING one are both seen."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.wiring import build_clients\n"
        "def f() -> None:\n    import bot.worker\n"
    )
    assert {"bot.wiring", "bot.worker"} <= imports_of(sample)
    assert shell_imports(sample) == ["bot.wiring", "bot.worker"]
