"""Run git safely: argv lists, an explicit minimal environment, hardening flags, timeouts that kill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.git.errors import GitError, GitTimeout

MASK = "***"
STDERR_TAIL = 2000
DEFAULT_TIMEOUT_S = 300.0
ALLOWED_PROTOCOLS = ("https", "http", "file")
# Config Baton forces on every git call: no hooks, no fsmonitor or helper programs from config, no
# credential helpers that could store a token, no redirects to another host, no ext:: or ssh transports.
HARDENING: tuple[str, ...] = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.excludesFile=/dev/null",
    "core.attributesFile=/dev/null",
    "credential.helper=",
    "transfer.credentialsInUrl=die",
    "http.followRedirects=false",
    "protocol.allow=never",
    *(f"protocol.{name}.allow=always" for name in ALLOWED_PROTOCOLS),
    "submodule.recurse=false",
    "gc.autoDetach=false",
    "maintenance.autoDetach=false",
    "init.defaultBranch=main",
    "advice.detachedHead=false",
)
# The whole environment a git child gets, apart from PATH and what the caller adds per call.
BASE_ENV: Mapping[str, str] = {
    "LC_ALL": "C",
    "LANG": "C",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_PROTOCOL_FROM_USER": "0",
    "GCM_INTERACTIVE": "never",
}
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")

Observer = Callable[[tuple[str, ...], Path | None], None]


@dataclass(frozen=True)
class GitResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        """Stdout decoded, without the trailing newline."""
        return self.stdout.decode("utf-8", "replace").rstrip("\n")


def redact(text: str, secrets: Sequence[str]) -> str:
    """Mask each secret and any `user:password@` part of a URL."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _URL_USERINFO.sub(rf"\g<1>{MASK}@", text)


def command_name(args: Sequence[str]) -> str:
    """The git subcommand in `args` (the first word that is not an option)."""
    return next((arg for arg in args if not arg.startswith("-")), "git")


def hardened_argv(git: str, args: Sequence[str]) -> tuple[str, ...]:
    """`git -c … <args>`: the hardening flags always come before the caller's arguments."""
    flags = [part for setting in HARDENING for part in ("-c", setting)]
    return (git, *flags, *args)


def child_env(path: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The complete environment of one git child: nothing inherited except PATH."""
    env = {"PATH": path, **BASE_ENV, **extra}
    bad = [key for key, value in env.items() if "\x00" in key or "\x00" in value or "=" in key]
    if bad:
        raise ValueError(f"environment entries with NUL or '=': {', '.join(k[:30] for k in bad)}")
    return env


def kill_process_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group a child was started in (`start_new_session=True`), if still running."""
    if proc.returncode is None:  # once reaped, its group id could belong to someone else
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


class GitRunner:
    """Spawns git with hardening flags and a minimal environment; one instance per worker."""

    def __init__(
        self,
        *,
        git: str = "git",
        path: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        extra_env: Mapping[str, str] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._git = git
        self._path = path if path is not None else os.environ.get("PATH", os.defpath)
        self._timeout = timeout
        self._extra_env = dict(extra_env or {})
        self._observer = observer

    async def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        stdin: bytes | None = None,
        time_limit: float | None = None,
        check: bool = True,
    ) -> GitResult:
        """Run `git <args>`; raise GitError (redacted) on a non-zero exit when `check`."""
        argv = hardened_argv(self._git, args)
        if self._observer is not None:
            self._observer(argv, cwd)
        limit = self._timeout if time_limit is None else time_limit
        environment = child_env(self._path, {**self._extra_env, **(env or {})})
        name = command_name(args)
        returncode, out, err = await self._spawn(name, argv, cwd, environment, stdin, limit)
        result = GitResult(argv, returncode, out, err)
        if check and returncode != 0:
            raise GitError(name, returncode, self._tail(err, secrets))
        return result

    @staticmethod
    async def _spawn(
        name: str,
        argv: tuple[str, ...],
        cwd: Path | None,
        env: dict[str, str],
        stdin: bytes | None,
        limit: float,
    ) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
        except TimeoutError:
            kill_process_group(proc)
            await proc.wait()
            raise GitTimeout(name, limit, "") from None
        except BaseException:
            kill_process_group(proc)
            await proc.wait()
            raise
        return proc.returncode if proc.returncode is not None else -1, out, err

    @staticmethod
    def _tail(stderr: bytes, secrets: Sequence[str]) -> str:
        text = redact(stderr.decode("utf-8", "replace"), secrets).strip()
        return text[-STDERR_TAIL:]
