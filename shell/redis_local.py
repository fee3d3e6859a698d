"""Start a private `redis-server` when no BATON_REDIS_URL is configured (the embedded default)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


class RedisStartError(RuntimeError):
    """redis-server is missing or did not come up."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise RedisStartError(f"redis-server did not answer within {timeout_s:g} s") from None
                time.sleep(0.05)
    finally:
        client.close()


def start(
    data_dir: Path, port: int | None = None, persist: bool = True
) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server bound to loopback; returns the process and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisStartError(
            "redis-server not found: install it (apt-get install redis-server) or set BATON_REDIS_URL"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir.resolve())]
    argv += ["--save", "", "--appendonly", "yes" if persist else "no", "--protected-mode", "yes"]
    log = (data_dir / "redis.log").open("ab")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_ready(url, 10.0)
    except RedisStartError:
        process.kill()
        raise
    return process, url
