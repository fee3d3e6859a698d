"""The git layer's exceptions; messages name the git command and never carry a secret."""

from __future__ import annotations

from bot.errors import BatonError


class GitError(BatonError):
    """A git command failed; `stderr` is already redacted."""

    def __init__(self, command: str, returncode: int | None, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        detail = f": {stderr}" if stderr else ""
        super().__init__(f"git {command} failed (exit {returncode}){detail}")


class GitTimeout(GitError):
    """A git command ran past its deadline and was killed with its whole process group."""

    def __init__(self, command: str, timeout: float, stderr: str) -> None:
        super().__init__(command, None, stderr)
        self.args = (f"git {command} timed out after {timeout:g}s and was killed",)


class WorkspaceError(BatonError):
    """The workspace cannot do what was asked (bad input, missing mirror, state changed)."""


class UnsafeInput(WorkspaceError, ValueError):
    """A name, ref or URL that Baton refuses to hand to git."""


class NothingToCommit(WorkspaceError):
    """The worktree has no change against its HEAD."""


class HeadMoved(WorkspaceError):
    """The worktree's HEAD is not the SHA that was proposed and approved."""


class LockTimeout(WorkspaceError):
    """Another run held the mirror's lock for too long."""
