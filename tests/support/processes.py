"""Run Baton's real processes (`baton serve`, `baton worker`, the CLI) with an explicit environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.deliveries import GITLAB_SECRET, JIRA_SECRET
from tests.support.servers import terminate

CANARY = "canary-secret-7f3a9c"


def baton_env(state: Path, db_url: str, redis_url: str, port: int, **extra: str) -> dict[str, str]:
    """A clean environment for a Baton process (nothing inherited but PATH/HOME/LANG)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update(
        {
            "BATON_STATE_DIR": str(state),
            "BATON_DATABASE_URL": db_url,
            "BATON_REDIS_URL": redis_url,
            "BATON_PORT": str(port),
            "BATON_GITLAB_URL": "http://127.0.0.1:9",
            "BATON_GITLAB_TOKEN": CANARY + "-gitlab",
            "BATON_GITLAB_WEBHOOK_SECRET": GITLAB_SECRET,
            "BATON_JIRA_URL": "http://127.0.0.1:9",
            "BATON_JIRA_TOKEN": CANARY + "-jira",
            "BATON_JIRA_WEBHOOK_SECRET": JIRA_SECRET,
            "BATON_SWEEP_INTERVAL_S": "1",
            "BATON_SWEEP_GRACE_S": "0.5",
        }
    )
    env.update({f"BATON_{k.upper()}": v for k, v in extra.items()})
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shell.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def cli_json(env: dict[str, str], *args: str) -> Any:
    done = cli(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class BatonProcess:
    """One `baton serve|worker|up` child with its stderr captured to a file."""

    def __init__(self, role: str, env: dict[str, str], log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{role}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shell.cli", role], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_http(self, url: str, timeout_s: float = 30.0, status: int = 200) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"process exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if httpx.get(url, timeout=1).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{url} did not answer {status} within {timeout_s} s:\n{self.logs()}")

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 15.0) -> int:
        code = terminate(self.process, timeout_s)
        self._log.close()
        return code


def wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
