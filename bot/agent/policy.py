"""The tool-use policy: a pure decision for every tool call the agent attempts."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from bot.agent.profiles import EDIT_TOOLS, STRUCTURED_OUTPUT_TOOL, Profile

PATH_FIELDS = {
    "Read": "file_path",
    "Edit": "file_path",
    "Write": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
}
SEARCH_TOOLS = {"Glob": ("pattern",), "Grep": ("glob",)}
# Appended to every Grep `glob` (ripgrep: later globs win), so a search never reads git internals or
# dotenv/credential files, even when the model's own glob (`*`, `config`) would match them.
GREP_EXCLUDES = "!.git !{.env,.env.*,*.env,.netrc,.npmrc,.pypirc,.git-credentials} !.ssh !.aws !.gnupg"
NETWORK_TOOLS = frozenset({"WebFetch", "WebSearch"})
SHELL_OPERATORS = (";", "&", "|", "`", "$(", "${", ">", "<", "\n", "\r")
SECRET_NAMES = frozenset(
    {
        ".ssh",
        ".netrc",
        ".git-credentials",
        ".pypirc",
        ".npmrc",
        ".aws",
        ".gnupg",
        ".docker",
        ".kube",
        ".claude",
    }
)
DOTENV_TEMPLATES = frozenset({".env.example", ".env.sample", ".env.template"})
FORBIDDEN_PROGRAMS = frozenset(
    {"curl", "wget", "nc", "ncat", "netcat", "socat", "ssh", "scp", "sftp", "rsync", "ftp", "telnet"}
    | {"env", "printenv", "set", "export", "declare", "sudo", "su"}
)
FORBIDDEN_GIT = frozenset({"push", "remote", "config", "credential", "fetch", "pull", "clone", "submodule"})


@dataclass(frozen=True)
class Allow:
    """The call may proceed, with `updated_input` in place of the model's input when set."""

    updated_input: dict[str, Any] | None = None


@dataclass(frozen=True)
class Deny:
    """The call is refused; `reason` goes back to the model."""

    reason: str


Decision = Allow | Deny


def _is_secret_name(name: str) -> bool:
    if name in SECRET_NAMES:
        return True
    if name in DOTENV_TEMPLATES:
        return False
    return name == ".env" or name.startswith(".env.") or name.endswith(".env")


def _resolve(raw: str, worktree: str) -> str:
    joined = raw if os.path.isabs(raw) else os.path.join(worktree, raw)
    return os.path.realpath(joined)


def check_path(raw: Any, worktree: str) -> str | None:
    """Why a path may not be touched (None when it resolves to an ordinary file inside the worktree)."""
    if not isinstance(raw, str) or not raw.strip():
        return "a path is required"
    if "\x00" in raw:
        return "paths may not contain NUL bytes"
    if raw.startswith("~"):
        return "home-relative paths are not allowed; use a path inside the worktree"
    try:
        root = os.path.realpath(worktree)
        real = _resolve(raw, root)
    except (OSError, ValueError):
        return "the path cannot be resolved"
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        return f"{raw} is outside the worktree"
    parts = PurePosixPath(os.path.relpath(real, root)).parts
    if ".git" in parts:
        return "git internals (.git/) are off limits"
    if any(_is_secret_name(part) for part in parts):
        return f"{raw} may hold secrets and is off limits"
    return None


def check_pattern(raw: Any) -> str | None:
    """Why a glob pattern may not be used (absolute, home-relative, or climbing out with `..`)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or "\x00" in raw:
        return "invalid pattern"
    if raw.startswith(("/", "~")) or ".." in PurePosixPath(raw).parts:
        return "patterns must stay inside the worktree (no absolute paths, ~ or ..)"
    return None


def _file_tool(profile: Profile, tool: str, tool_input: Mapping[str, Any], worktree: str) -> Decision:
    if tool in EDIT_TOOLS and not profile.may_edit:
        return Deny(f"{tool} is not allowed: the {profile.name} profile is read-only")
    reason = check_path(tool_input.get(PATH_FIELDS[tool]), worktree)
    return Allow() if reason is None else Deny(reason)


def _search_tool(tool: str, tool_input: Mapping[str, Any], worktree: str) -> Decision:
    if tool_input.get("path") is not None:
        reason = check_path(tool_input.get("path"), worktree)
        if reason is not None:
            return Deny(reason)
    for field in SEARCH_TOOLS[tool]:
        reason = check_pattern(tool_input.get(field))
        if reason is not None:
            return Deny(reason)
    if tool != "Grep":
        return Allow()
    own = str(tool_input.get("glob") or "").strip()
    return Allow({**tool_input, "glob": f"{own} {GREP_EXCLUDES}".strip()})


def forbidden_command(command: str) -> str | None:
    """Why a command is never allowed, even when declared (network, environment dumps, git remotes)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return "the command cannot be parsed"
    if not words:
        return "empty command"
    program = os.path.basename(words[0])
    if program in FORBIDDEN_PROGRAMS:
        return f"{program} is never allowed (network access or environment dump)"
    if program == "git" and any(word in FORBIDDEN_GIT for word in words[1:]):
        return "git commands that reach remotes or read git config are not allowed"
    if "/proc/" in command and "environ" in command:
        return "reading process environments is not allowed"
    return None


def _bash(profile: Profile, tool_input: Mapping[str, Any], declared: Sequence[str]) -> Decision:
    if not profile.may_run_commands:
        return Deny(f"Bash is not allowed for the {profile.name} profile")
    command = tool_input.get("command")
    if not isinstance(command, str) or "\x00" in command:
        return Deny("a command string is required")
    if tool_input.get("run_in_background"):
        return Deny("background commands are not allowed")
    reason = forbidden_command(command)
    if reason is not None:
        return Deny(reason)
    if command.strip() in {d.strip() for d in declared}:
        return Allow()
    if any(op in command for op in SHELL_OPERATORS):
        return Deny("shell operators (; & | ` $( > < newlines) are not allowed; run one declared command")
    listing = "; ".join(declared) if declared else "none"
    return Deny(f"only the repo's declared commands may run (declared: {listing})")


def decide(
    profile: Profile,
    tool_name: str,
    tool_input: Mapping[str, Any],
    worktree: str | os.PathLike[str],
    declared_commands: Sequence[str] = (),
) -> Decision:
    """Allow or deny one tool call for a profile working in `worktree`."""
    root = os.fspath(worktree)
    if tool_name == STRUCTURED_OUTPUT_TOOL:
        return Allow()
    if tool_name in NETWORK_TOOLS or tool_name.startswith("mcp__"):
        return Deny(f"{tool_name} is not allowed: the agent has no network tools")
    if tool_name not in profile.tools:
        return Deny(f"{tool_name} is not available to the {profile.name} profile")
    if tool_name in PATH_FIELDS:
        return _file_tool(profile, tool_name, tool_input, root)
    if tool_name in SEARCH_TOOLS:
        return _search_tool(tool_name, tool_input, root)
    if tool_name == "Bash":
        return _bash(profile, tool_input, declared_commands)
    return Deny(f"{tool_name} is not a tool Baton knows how to police")
