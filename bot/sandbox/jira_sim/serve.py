"""Serving the Jira simulator: the sandbox's shared uvicorn-in-a-thread server."""

from __future__ import annotations

from bot.sandbox.serve import ServerThread

__all__ = ["ServerThread"]
