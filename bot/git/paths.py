"""Pure naming of the workspace's directories: one per mirror, one per run; no input escapes the root."""

from __future__ import annotations

import hashlib
import re

from bot.git.branch import slugify
from bot.git.errors import UnsafeInput

RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def mirror_dirname(repo_id: str) -> str:
    """`<slug>-<hash>.git`: readable, distinct for distinct ids, a single safe path component."""
    digest = hashlib.sha256(repo_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{slugify(repo_id, max_len=48)}-{digest}.git"


def check_run_id(run_id: str) -> str:
    """Return `run_id` when it is a single safe path component, else raise UnsafeInput."""
    if not RUN_ID_RE.fullmatch(run_id) or ".." in run_id or run_id.endswith(".lock"):
        raise UnsafeInput(f"run id must match {RUN_ID_RE.pattern} (got {run_id[:40]!r})")
    return run_id
