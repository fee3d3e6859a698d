"""One redactor for everything Baton posts, stores or logs: configured secrets and common token shapes.

What is found, and why:

* **Configured secrets** (`Redactor.from_settings`: every `SecretStr` setting, plus the password of every
  URL setting such as the database and Redis URLs). A secret of `MIN_VARIANT_LEN` characters or more is
  found anywhere, raw and in every form it commonly travels in: URL-encoded (`quote`, `quote_plus`,
  upper- and lower-case hex), JSON-escaped (ASCII or not, `/` escaped or not), HTML-escaped, and inside
  base64 (standard and URL-safe). Base64 works on 3-byte groups, so the encoding of a secret embedded in
  a larger blob depends on where it starts modulo 3: for each of the three alignments the redactor
  looks for the run of base64 characters made of the secret's bits alone (`_base64_cores`), which is
  what every blob containing the secret at that alignment contains, whatever surrounds it.
* **Line breaks.** A text may be hard-wrapped at any column (an e-mail, a quoted reply, base64 at 76,
  a JSON string where the break is the two characters `\\n`). Every text with a break is also searched
  with its breaks removed — a break being optional trailing blanks, a newline (`\\n`, `\\r\\n`, or their
  JSON-escaped forms) and the indentation or `>` quote marks that follow — and a secret found there is
  masked across the lines it spans.
* **Short secrets** (`MIN_SECRET_LEN` to `MIN_VARIANT_LEN` - 1 characters) are masked raw only, and only
  where they stand as a whole token (not inside a longer word, path or branch name): their encoded
  variants would be short enough to turn up by chance, and a five-letter database password such as
  `baton` must not rewrite `.baton/worktrees/…`, `baton/DEMO-1` or Baton's own effect markers. Values
  shorter than `MIN_SECRET_LEN` are no secret worth the name and are ignored (masking `ab` would only
  garble text).
* **Token shapes** that are masked even when nobody configured them (`TOKEN_SHAPES`): GitLab tokens
  (`glpat-`, `gldt-`, `glrt-`, …), Anthropic keys (`sk-ant-`), Atlassian API tokens (`ATATT3x`), AWS
  access key ids, GitHub and Slack tokens, the credential after `Bearer`/`Basic`, and PEM private keys
  (to the end of the text when the END line was cut off).

Every form of every secret is one compiled alternation (longest literal first, so a secret that is a
prefix of another never hides the longer one; inside a lookahead, so secrets that overlap in a text are
all found), and the token shapes are another; a text is scanned by both, and by the first once more with
its line breaks removed when it has any, so a text of a few hundred KB takes milliseconds. Overlapping
matches are merged into one mask.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus, unquote, urlsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from config.settings import Settings

MASK = "[redacted]"
MIN_VARIANT_LEN = 8  # shorter secrets are masked as they are, as whole tokens, without encoded variants
MIN_SECRET_LEN = 4  # shorter values are ignored: masking them would only garble text
# A line break that may split a secret when a text is wrapped or quoted: trailing blanks, a newline (or
# its JSON-escaped form), then indentation or `>` quote marks.
_BREAK_RE = re.compile(r"[ \t]*(?:\r?\n|\\r\\n|\\n)[ \t>]*")
# Characters that make a short secret part of a longer word, path or branch name (see the module doc).
_WORD_BEFORE = r"(?<![A-Za-z0-9_\-./])"
_WORD_AFTER = r"(?![A-Za-z0-9_\-/])(?!\.[A-Za-z0-9])"
TOKEN_SHAPES = (
    r"(?<![A-Za-z0-9])glpat-[A-Za-z0-9_\-]{20,}(?:\.[A-Za-z0-9_\-]+){0,2}",  # GitLab personal/project token
    r"(?<![A-Za-z0-9])gl(?:dt|rt|ptt|oas|cbt|imt|ft|soat|ffct|agent|wt)-[A-Za-z0-9_\-]{16,}",  # other GitLab
    r"(?<![A-Za-z0-9])sk-ant-[A-Za-z0-9_\-]{20,}",  # Anthropic API key
    r"(?<![A-Za-z0-9])ATATT3x[A-Za-z0-9_\-=]{20,}",  # Atlassian API token
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
    r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{30,}",
    r"(?<![A-Za-z0-9])xox[abeprs]-[A-Za-z0-9\-]{10,}",  # Slack tokens
    r"(?<=(?i:bearer)[ \t])[A-Za-z0-9._~+/=\-]{16,}",  # the credential after "Bearer " (the word is kept)
    r"(?<=(?i:basic)[ \t])[A-Za-z0-9+/]{16,}={0,2}",  # the credential after "Basic "
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
)
# Shapes are matched consuming (a match is skipped over), so a text of repeated BEGIN lines is scanned once.
_SHAPES_RE = re.compile("|".join(TOKEN_SHAPES))


def _base64_cores(secret: bytes) -> set[str]:
    """The part of base64(x + secret + y) that depends on the secret alone, for each alignment.

    With `offset` bytes (mod 3) before the secret, its bits start at bit 8*offset: the first base64
    character made only of its bits is number ceil(8*offset/6), and the last one ends before character
    floor(8*(offset+len)/6). The characters outside that range mix in bits of the neighbours and differ
    from blob to blob; the range itself is the same in every blob."""
    cores: set[str] = set()
    for offset in range(3):
        data = b"\0" * offset + secret + b"\0\0"
        first = -(-8 * offset // 6)
        last = 8 * (offset + len(secret)) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(data).decode()[first:last]
            if len(core) >= MIN_VARIANT_LEN:
                cores.add(core)
    return cores


def _url_forms(secret: str) -> set[str]:
    forms = {quote(secret, safe=""), quote(secret), quote_plus(secret, safe=""), quote_plus(secret)}
    lower = {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), form) for form in forms}
    return forms | lower


def _json_forms(secret: str) -> set[str]:
    forms = {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    return forms | {form.replace("/", "\\/") for form in forms}


def variants(secret: str) -> set[str]:
    """Every form of `secret` the redactor looks for (line breaks are handled separately)."""
    found = {secret}
    if len(secret) < MIN_VARIANT_LEN:
        return found
    found |= _url_forms(secret) | _json_forms(secret)
    found.add(html.escape(secret))
    found |= _base64_cores(secret.encode())
    return found


def _alternation(literals: Iterable[str]) -> list[str]:
    ordered = sorted(set(literals), key=lambda s: (-len(s), s))  # longest first: a prefix never wins
    return [re.escape(literal) for literal in ordered]


def _unwrapped(text: str) -> tuple[str, list[int]]:
    """The text with every line break (and the blanks/quote marks around it) removed, and for each of its
    characters the index it came from."""
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


def url_passwords(url: str) -> list[str]:
    """The password inside `scheme://user:password@host/…`, decoded and as written; none if no URL."""
    if "://" not in url:
        return []
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [p for p in {password, unquote(password)} if p] if password else []


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value in `settings`: what `Settings.secrets()` lists, plus — so that a secret setting
    added later is covered without anyone remembering this module — the value of every `SecretStr`
    field and the password of every URL-valued field."""
    found = list(settings.secrets())
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, str):
            found += url_passwords(value)
    return found


class Redactor:
    """Masks the given secrets (every form of them) and well-known token shapes in any text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}))
        long = [form for s in self.secrets if len(s) >= MIN_VARIANT_LEN for form in variants(s)]
        short = [s for s in self.secrets if len(s) < MIN_VARIANT_LEN]
        alternatives = _alternation(long)
        if short:
            alternatives.append(f"{_WORD_BEFORE}(?:{'|'.join(_alternation(short))}){_WORD_AFTER}")
        # Configured secrets, searched in the text and in the text without its line breaks. A lookahead
        # finds a match at every position, so two secrets that overlap in the text are both masked.
        self._secret_re = re.compile(f"(?=({'|'.join(alternatives)}))") if alternatives else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        """Every secret setting's current value (tokens, keys, webhook secrets, URL passwords)."""
        return cls(settings_secrets(settings))

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        if not text:
            return text
        spans = [m.span() for m in _SHAPES_RE.finditer(text)]
        if self._secret_re is not None:
            spans += [m.span(1) for m in self._secret_re.finditer(text)]
            if "\n" in text or "\\n" in text:
                flat, origin = _unwrapped(text)
                if len(flat) != len(text):
                    found = (m.span(1) for m in self._secret_re.finditer(flat))
                    spans += [(origin[start], origin[end - 1] + 1) for start, end in found if end > start]
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
        """Strings anywhere inside lists, tuples and dicts (keys too), redacted; other values as they are.
        Redacting each string (rather than a serialized form) keeps JSON well-formed whatever is masked."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_data(k): self.redact_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact_data(v) for v in value)
        return value


def redact_except_tail(redactor: Redactor, text: str, tails: Iterable[str]) -> str:
    """`text` redacted, except a trailing effect marker (one of `tails`) kept as it is, so a retried
    post is still found by its marker."""
    for tail in tails:
        if tail and text.endswith(tail):
            return redactor.redact(text[: -len(tail)]) + tail
    return redactor.redact(text)
