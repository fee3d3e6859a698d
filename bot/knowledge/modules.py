"""Module coverage (pure): does a page's module pattern (a path or glob) cover a path a change touches?"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

GLOB_CHARS = frozenset("*?[{")
EXACT = 1.0  # the pattern names the path itself
GLOB = 0.9  # a glob matches the path
INSIDE = 0.8  # the path lies inside the directory the pattern names (or a glob matches a parent)
AROUND = 0.6  # the pattern names something inside the directory that was given


def normalize(path: str) -> str:
    """`./a/b/` → `a/b`; backslashes are not separators here, they simply never match."""
    text = path.strip().removeprefix("./")
    return text.rstrip("/") or text


def has_glob(pattern: str) -> bool:
    return any(ch in GLOB_CHARS for ch in pattern)


def literal_key(pattern: str) -> str:
    """The leading segments of `pattern` that hold no glob character: what an index can look it up by."""
    parts = []
    for part in normalize(pattern).split("/"):
        if has_glob(part):
            break
        parts.append(part)
    return "/".join(parts)


def lookup_keys(path: str) -> list[str]:
    """Every key whose patterns may cover `path`: the empty key and each leading run of its segments."""
    parts = normalize(path).split("/")
    return ["", *("/".join(parts[: i + 1]) for i in range(len(parts)))]


@functools.lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """`**` crosses directories, `*` and `?` stay within one segment, `[…]` is a class, `{a,b}` a choice."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append(f"[^{body[1:]}]" if body.startswith("!") else f"[{body}]")
            i = end + 1
            continue
        elif ch == "{" and (end := pattern.find("}", i)) != -1:
            choices = pattern[i + 1 : end].split(",")
            out.append("(?:" + "|".join(re.escape(c) for c in choices) + ")")
            i = end + 1
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.compile("".join(out))
    except re.error:
        return re.compile(re.escape(pattern))


def coverage(pattern: str, path: str) -> float:
    """How closely `pattern` covers `path`: EXACT, GLOB, INSIDE, AROUND, or 0.0 when unrelated."""
    pattern, path = normalize(pattern), normalize(path)
    if not pattern or not path:
        return 0.0
    if not has_glob(pattern):
        if path == pattern:
            return EXACT
        if path.startswith(pattern + "/"):
            return INSIDE
        return AROUND if pattern.startswith(path + "/") else 0.0
    regex = _glob_regex(pattern)
    if regex.fullmatch(path):
        return GLOB
    parts = path.split("/")
    if any(regex.fullmatch("/".join(parts[:i])) for i in range(len(parts) - 1, 0, -1)):
        return INSIDE
    key = literal_key(pattern)
    return AROUND if key and key.startswith(path + "/") else 0.0


def best_coverage(patterns: Iterable[str], paths: Sequence[str]) -> float:
    """The closest coverage of any of `paths` by any of `patterns`."""
    return max((coverage(p, q) for p in patterns for q in paths), default=0.0)
