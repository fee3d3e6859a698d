"""The workflow table is static and read-only: nothing registers workflows at import or at run time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import pytest

import orchestrators
from config.skills import default_skills
from orchestrators import registry
from orchestrators.registry import WORKFLOWS

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_is_read_only_and_nothing_registers() -> None:
    assert isinstance(WORKFLOWS, MappingProxyType)
    with pytest.raises(TypeError):
        WORKFLOWS["teleport"] = WORKFLOWS["help"]  # type: ignore[index]
    assert not hasattr(registry, "register")
    assert not hasattr(orchestrators, "ORCHESTRATORS")


def test_the_table_has_the_event_kinds_and_every_packaged_command() -> None:
    assert {"implement", "mr_pushed", "reply"} <= set(WORKFLOWS)
    default_skills().check_workflows(WORKFLOWS.keys())  # raises if a packaged command has no workflow


PROBE = """
import importlib, sys
import orchestrators.registry as first
import shell.worker, shell.app, shell.cli  # once, the worker's import registered every workflow
second = importlib.reload(first)
workflows = set(map(id, first.WORKFLOWS.values())) | set(map(id, second.WORKFLOWS.values()))
tables = [
    f"{name}.{attr}"
    for name, module in list(sys.modules.items())
    if name.split(".")[0] in ("orchestrators", "shell")
    for attr, value in vars(module).items()
    if isinstance(value, dict | list | set) and any(id(v) in workflows for v in
        (value.values() if isinstance(value, dict) else value))
]
print(tables)
"""


def test_no_module_holds_a_mutable_table_of_workflows_in_a_fresh_interpreter() -> None:
    """Import what starts Baton, reload the registry, and look for any mutable global holding a workflow."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
