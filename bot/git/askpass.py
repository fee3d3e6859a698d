"""Credentials for git over HTTPS through GIT_ASKPASS: the token lives only in one child's environment."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from bot.git.errors import UnsafeInput

TOKEN_VAR = "BATON_GIT_TOKEN"  # noqa: S105 (the variable name, not a value)
USERNAME_VAR = "BATON_GIT_USERNAME"
HOST_VAR = "BATON_GIT_HOST"
DEFAULT_USERNAME = "oauth2"  # GitLab accepts `oauth2:<token>`, or any username with a personal access token
_HOST_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_USERNAME_RE = re.compile(r"[A-Za-z0-9_.+@-]{1,64}")

# git asks "Username for 'https://host': " and "Password for 'https://user@host': ". The helper answers
# only for the expected host (quoted words in a `case` pattern match literally), so a redirect or a
# rewritten URL cannot make it hand the token to anyone else. It holds no secret itself.
SCRIPT = f"""#!/bin/sh
# Baton's GIT_ASKPASS helper: answers from its own environment, for one host only.
[ -n "${HOST_VAR}" ] || exit 1
case "$1" in
  Username*[/@]"${HOST_VAR}'"*) printf '%s\\n' "${USERNAME_VAR}" ;;
  Password*[/@]"${HOST_VAR}'"*) printf '%s\\n' "${TOKEN_VAR}" ;;
  *) exit 1 ;;
esac
"""


def check_remote_url(url: str) -> str:
    """Return `url` if it is an http(s) URL without credentials, a file:// URL or an absolute path."""
    if not url or url.startswith("-") or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UnsafeInput("remote URL is empty, starts with '-' or contains whitespace/control characters")
    if url.startswith("/") or url.startswith("file:///"):
        return url
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"}:
        raise UnsafeInput(f"remote URL scheme must be https, http or file (got {parts.scheme[:20]!r})")
    if "@" in parts.netloc:
        raise UnsafeInput("remote URL must not carry credentials; the token goes through askpass")
    if not _HOST_RE.fullmatch(parts.netloc):
        raise UnsafeInput("remote URL has an invalid host")
    return url


def needs_credentials(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def askpass_env(script: Path, url: str, token: str, username: str = DEFAULT_USERNAME) -> dict[str, str]:
    """The variables one git child needs to authenticate to `url`'s host through the helper."""
    if not _USERNAME_RE.fullmatch(username):
        raise UnsafeInput("git username has unsupported characters")
    if not token or any(ord(ch) < 32 for ch in token):
        raise UnsafeInput("token is empty or contains control characters")
    host = urlsplit(check_remote_url(url)).netloc
    return {"GIT_ASKPASS": str(script), HOST_VAR: host, USERNAME_VAR: username, TOKEN_VAR: token}


def install_script(directory: Path) -> Path:
    """Write the helper (mode 0700) into `directory` unless an identical one is there already."""
    target = directory / "askpass"
    if target.is_file() and target.read_text() == SCRIPT and os.access(target, os.X_OK):
        return target
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".askpass-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(SCRIPT)
        os.chmod(tmp, 0o700)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
