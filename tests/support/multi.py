"""The multi-repository scenario (#13) for tests: its path, its tasks, a request naming a prompt, and
acting out a task script's tool calls on a checkout the way Claude Code would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.sandbox.scenario import Script

MULTI = Path(__file__).resolve().parents[2] / "bot" / "sandbox" / "scenarios" / "multi.yaml"
TASKS = {"A": "demo/catalog", "B": "demo/pricing", "C": "demo/inventory", "D": "demo/storefront"}


def body(prompt: str, *, system: str = "You are Claude Code.", assistant_turns: int = 0) -> dict[str, Any]:
    """A Messages API request whose first user message is `prompt` (after `assistant_turns` turns)."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    for _ in range(assistant_turns):
        messages += [{"role": "assistant", "content": "…"}, {"role": "user", "content": "tool result"}]
    return {"system": system, "messages": messages, "tools": [{"name": "Read"}]}


def apply_script(checkout: Path, script: Script) -> list[str]:
    """Act out a task script's tool calls like Claude Code (Read before Edit or overwrite, an Edit's
    `old_string` exactly once, paths inside the checkout); returns the Bash commands it asked for."""
    read: set[Path] = set()
    commands: list[str] = []
    for turn in script.turns:
        if turn.tool_use is None:
            continue
        args = {k: str(v).replace("{cwd}", str(checkout)) for k, v in turn.tool_use.input.items()}
        name = turn.tool_use.name
        if name == "Bash":
            commands.append(args["command"])
            continue
        path = Path(args["file_path"])
        assert path.is_relative_to(checkout), path
        if name == "Read":
            assert path.is_file(), path
            read.add(path)
        elif name == "Edit":
            assert path in read, f"Edit before Read: {path}"
            text = path.read_text()
            assert text.count(args["old_string"]) == 1, f"old_string not exactly once in {path}"
            path.write_text(text.replace(args["old_string"], args["new_string"]))
        elif name == "Write":
            assert not path.exists() or path in read, f"overwrite before Read: {path}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(args["content"])
        else:
            raise AssertionError(f"unexpected tool {name}")
    return commands
