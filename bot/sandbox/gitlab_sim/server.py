"""Serve an ASGI app with uvicorn on a free loopback port in a background thread (tests, `baton demo`)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from bot.sandbox.gitlab_sim.app import create_gitlab_app
from bot.sandbox.gitlab_sim.state import GitLabState

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class ServerThread:
    """uvicorn in a daemon thread; `base_url` is known once `start()` returns."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.base_url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S)
        self._socket.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


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
