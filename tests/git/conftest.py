"""Fixtures for the git tests: a real bare repository, served over smart HTTP by uvicorn on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sandbox.git_http import GitHttpBackend, RefUpdate
from tests.git.repos import TOKEN, Served, Upstream, make_upstream, serve


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return make_upstream(tmp_path)


@pytest.fixture
def served(upstream: Upstream) -> Iterator[Served]:
    updates: list[RefUpdate] = []

    async def on_push(update: RefUpdate) -> None:
        updates.append(update)

    backend = GitHttpBackend(upstream.root, TOKEN, on_push=on_push)
    with serve(backend) as base:
        yield Served(f"{base}/group/project.git", base, backend, updates)
