"""The agent's environment, built from an allowlist: no Baton, GitLab or Jira variable reaches the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# Copied from the caller's environment when present; everything else is dropped.
INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
# Set by claude-agent-sdk for its own control protocol; the launcher passes these through.
SDK_PROTOCOL = (
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_AGENT_SDK_VERSION",
    "CLAUDE_CODE_SDK_READS_SESSION_STATE",
    "CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING",
    "CLAUDE_AGENT_SDK_CLIENT_APP",
    "PWD",
)
FIXED = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_DISABLE_AUTO_MEMORY": "1",
    "CLAUDE_CODE_DISABLE_BACKGROUND_TASKS": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
    # No git status snapshot (branch, changed files, recent commits) or commit/PR instructions in the
    # system prompt: Baton does the git work, and a CLI started ahead of its prompt would describe the
    # worktree as it was then, not as the call finds it.
    "CLAUDE_CODE_DISABLE_GIT_INSTRUCTIONS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in the worktree, so none in the proposed commit
}
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# The CLI's requests go over the relay's unix socket; the URL only names the scheme and the path.
RELAY_BASE_URL = "http://localhost"


def build_agent_env(
    base: Mapping[str, str], *, home: Path, tmpdir: Path, socket: Path, token: str
) -> dict[str, str]:
    """The complete environment for the CLI: allowlisted basics, a private HOME, the model relay.

    The model key is deliberately absent: the CLI reaches the model only through the run's relay
    (`ANTHROPIC_UNIX_SOCKET`), presenting `token`, a per-run placeholder the relay swaps for the key.
    """
    env = {name: base[name] for name in INHERITED if name in base}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(FIXED)
    env.update(
        {
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            "TMPDIR": str(tmpdir),
            "ANTHROPIC_BASE_URL": RELAY_BASE_URL,
            "ANTHROPIC_UNIX_SOCKET": str(socket),
            "ANTHROPIC_API_KEY": token,
        }
    )
    return env
