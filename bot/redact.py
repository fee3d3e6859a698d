"""One redactor for everything Baton posts, stores or logs: configured secrets and common token shapes.

A configured secret is found as it is, URL-encoded, JSON-escaped, and inside base64 (standard and
URL-safe, at each of the three byte alignments, so it is caught within a larger encoded blob), and
also when a line break — with indentation or `> ` quote marks after it — splits any of those forms.
Tokens of well-known shapes (GitLab, Anthropic, Atlassian, AWS, GitHub, bearer tokens, PEM private
keys) are masked even when nobody configured them. Everything is one compiled pattern per kind, so a
text of a few hundred KB is scanned in milliseconds.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from config.settings import Settings

MASK = "[redacted]"
MIN_VARIANT_LEN = 8  # shorter secrets are masked as they are, without encoded variants (too noisy)
MIN_SECRET_LEN = 4
# Breaks that may split a secret when a text is wrapped or quoted: a newline, then indentation or `>`.
_BREAK_RE = re.compile(r"\r?\n[ \t>]*")
TOKEN_SHAPES = (
    r"\bglpat-[A-Za-z0-9_\-]{20,}",  # GitLab personal/project/group access token
    r"\bgl(?:dt|rt|ptt|oas|cbt|imt|ft|soat|ffct|agent|wt)-[A-Za-z0-9_\-]{16,}",  # other GitLab tokens
    r"\bsk-ant-[A-Za-z0-9_\-]{20,}",  # Anthropic API key
    r"\bATATT3x[A-Za-z0-9_\-=]{20,}",  # Atlassian API token
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"(?:(?<=Bearer )|(?<=bearer )|(?<=BEARER ))[A-Za-z0-9._~+/=\-]{16,}",  # the token after "Bearer "
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
)
_SHAPES_RE = re.compile("|".join(TOKEN_SHAPES))


def _base64_cores(secret: bytes) -> set[str]:
    """The part of base64(x + secret + y) that depends on the secret alone, for each alignment."""
    cores: set[str] = set()
    for offset in range(3):
        data = b"\0" * offset + secret + b"\0\0"
        first = -(-8 * offset // 6)  # characters that still mix in the bytes before the secret
        last = 8 * (offset + len(secret)) // 6  # characters made of the secret's bits only
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(data).decode()[first:last]
            if len(core) >= MIN_VARIANT_LEN:
                cores.add(core)
    return cores


def variants(secret: str) -> set[str]:
    """Every form of `secret` the redactor looks for (not counting line breaks)."""
    found = {secret}
    if len(secret) < MIN_VARIANT_LEN:
        return found
    found.add(quote(secret, safe=""))
    found.add(json.dumps(secret)[1:-1])
    found |= _base64_cores(secret.encode())
    return found


def _literal_pattern(literals: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(literals), key=len, reverse=True)  # longest first: a prefix never wins
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


def _unwrapped(text: str) -> tuple[str, list[int]]:
    """The text with every line break (and the indentation/quote marks after it) removed, and for each
    of its characters the index it came from."""
    kept: list[str] = []
    origin: list[int] = []
    position = 0
    for match in _BREAK_RE.finditer(text):
        kept.append(text[position : match.start()])
        origin.extend(range(position, match.start()))
        position = match.end()
    kept.append(text[position:])
    origin.extend(range(position, len(text)))
    return "".join(kept), origin


def _merged(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class Redactor:
    """Masks the given secrets (every form of them) and well-known token shapes in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}))
        self._secret_re = _literal_pattern(form for secret in self.secrets for form in variants(secret))

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        """Every secret setting's current value (tokens, keys, webhook secrets, URL passwords)."""
        return cls(tuple(settings.secrets()))

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        if not text:
            return text
        spans = [m.span() for m in _SHAPES_RE.finditer(text)]
        secret_re = self._secret_re
        if secret_re is not None:
            spans += [m.span() for m in secret_re.finditer(text)]
            if "\n" in text:
                flat, origin = _unwrapped(text)
                spans += [(origin[m.start()], origin[m.end() - 1] + 1) for m in secret_re.finditer(flat)]
        if not spans:
            return text
        parts: list[str] = []
        position = 0
        for start, end in _merged(spans):
            parts += [text[position:start], MASK]
            position = end
        parts.append(text[position:])
        return "".join(parts)

    def redact_data(self, value: object) -> object:
        """Strings anywhere inside lists, tuples and dicts (keys too), redacted; other values as they are."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_data(k): self.redact_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact_data(v) for v in value)
        return value
