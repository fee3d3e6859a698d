"""The read-only web dashboard, mounted at `/dashboard` by `shell.app` when BATON_DASHBOARD=token: what
Baton is doing, what waits for whom, and what it cost."""

from __future__ import annotations

from shell.dashboard.pages import routes

MOUNT = "/dashboard"

__all__ = ["MOUNT", "routes"]
