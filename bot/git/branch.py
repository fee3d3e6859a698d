"""Pure naming: the branch Baton creates for a ticket, and the checks every ref name must pass."""

from __future__ import annotations

import hashlib
import re
import unicodedata

PREFIX = "baton/"
SLUG_MAX = 40
FALLBACK_SLUG = "change"
RUN_TAG_LEN = 8
TICKET_KEY_RE = re.compile(r"[A-Z][A-Z0-9_]{0,30}-[0-9]{1,9}")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_RUN_ID_RE = re.compile(r"[0-9a-f]{8,64}")
_SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Characters git forbids anywhere in a ref name, plus control characters (git-check-ref-format(1)).
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def ticket_part(ticket_key: str) -> str:
    """The ticket key itself when well-formed, else a stable hash of whatever was given."""
    if TICKET_KEY_RE.fullmatch(ticket_key):
        return ticket_key
    digest = hashlib.sha256(ticket_key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"ticket-{digest}"


def slugify(text: str, max_len: int = SLUG_MAX) -> str:
    """Lowercase ASCII words joined by single dashes, at most `max_len` characters, never empty."""
    ascii_text = unicodedata.normalize("NFKD", text[: max_len * 8]).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")
    if len(slug) > max_len:  # cut at a word boundary when one is near, not mid-word
        cut = slug[: max_len + 1].rfind("-")
        slug = slug[:cut] if cut >= max_len // 2 else slug[:max_len]
    slug = slug.rstrip("-")
    return slug or FALLBACK_SLUG


def run_part(run_id: str) -> str:
    """A short, stable tag for a run: the first characters of its (hex) id, else a hash of it."""
    if _RUN_ID_RE.fullmatch(run_id):
        return run_id[:RUN_TAG_LEN]
    return hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:RUN_TAG_LEN]


def branch_name(ticket_key: str, summary: str, run_id: str | None = None) -> str:
    """`baton/<TICKET>-<slug>`, or `baton/<TICKET>-<slug>-<run>` for a ticket's later runs.

    Generated from untrusted text, safe for git and for a shell. A ticket labelled again after its
    first run shipped gets a run of its own, and that run needs a branch of its own (`run_id`): reusing
    the first branch, which GitLab already has, would make every new proposal stale at once.
    """
    name = f"{PREFIX}{ticket_part(ticket_key)}-{slugify(summary)}"
    return f"{name}-{run_part(run_id)}" if run_id is not None else name


def is_valid_refname(name: str) -> bool:
    """True when `name` (e.g. `refs/heads/x`) passes git's ref-name rules; stricter on leading dashes."""
    if not name or len(name) > 1024 or name.startswith("-") or _REF_FORBIDDEN.search(name):
        return False
    if ".." in name or "@{" in name or name == "@" or name.endswith(".") or "//" in name:
        return False
    if name.startswith("/") or name.endswith("/"):
        return False
    return all(part and not part.startswith(".") and not part.endswith(".lock") for part in name.split("/"))


def is_valid_branch(name: str) -> bool:
    """True for a branch short name that `git check-ref-format --branch` accepts and no option parser eats."""
    return is_valid_refname(name) and not name.startswith("refs/") and name != "HEAD"


def is_sha(text: str) -> bool:
    """A full lowercase SHA-1 or SHA-256 object name."""
    return _SHA_RE.fullmatch(text) is not None
