"""The GitLab simulator served with uvicorn in a background thread (tests, `baton sandbox`, `baton demo`)."""

from __future__ import annotations

from pathlib import Path

from bot.sandbox.gitlab_sim.app import create_gitlab_app
from bot.sandbox.gitlab_sim.state import GitLabState
from bot.sandbox.serve import ServerThread

__all__ = ["GitLabServer", "ServerThread"]


class GitLabServer(ServerThread):
    """The simulator over `state`, served; `state.instance_url` becomes the real base URL.

    Pass `git_root` (e.g. `Demo.repos_root`) and `git_token` to serve the repositories over git too.
    """

    def __init__(
        self,
        state: GitLabState,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        git_root: Path | None = None,
        git_token: str | None = None,
    ) -> None:
        super().__init__(create_gitlab_app(state, git_root=git_root, git_token=git_token), host, port)
        self.state = state
        state.instance_url = self.base_url

    def stop(self) -> None:
        self.state.faults.release()
        super().stop()
