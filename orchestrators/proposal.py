"""Proposal, refusal and failure comments for people: Jira wiki markup on tickets, GitLab markdown on MRs.

Everything that came from the agent, the repository or a person is neutralised before it is placed:
inline text is flattened and escaped, blocks are fenced so they cannot close early, and Baton's
hidden marker (`<!-- baton:`) is broken up so only the caller's own marker identifies the comment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from orchestrators.validate import CommandResult, clean_output, tail
from orchestrators.verdicts import Finding, Verdict

Flavor = Literal["jira", "gitlab"]

DIFF_LIMIT_BYTES = 60_000
JIRA_MAX_CHARS = 32_000  # Jira Cloud refuses comments over 32,767 characters
FINDINGS_SHOWN = 10
FINDING_CHARS = 400
OUTPUT_TAIL_LINES = 30
OUTPUT_TAIL_CHARS = 2_000
NEXT_STEPS = (
    "To ship this, reply `/approve`; to change it, `/revise <what to change>`; to drop it, `/reject`."
)

_ZWSP = "\u200b"
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
_MARKER_RE = re.compile(r"<!--(\s*)baton", re.IGNORECASE)
_JIRA_MARKER_RE = re.compile(r"baton\.(effect=)", re.IGNORECASE)
_BACKTICKS_RE = re.compile(r"`+")
_JIRA_MACRO_RE = re.compile(r"\{(?=\s*(?:code|noformat|expand|quote|panel)\b)", re.IGNORECASE)
# `-` and `_` only mark up text at word edges, so `DEMO-1` and `snake_case` stay as they are.
_JIRA_SPECIAL_RE = re.compile(r"[{}\[\]|*+^~!?]|(?<![^\W_])[-_]|[-_](?![^\W_])")
_JIRA_LINE_START_RE = re.compile(r"\s*(?:h[1-6]\.|bq\.|[#*-])", re.IGNORECASE)  # headings, quotes, lists
_MD_SPECIAL_RE = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")
_MENTION_RE = re.compile(r"@(?=[\w.-])")
_GITLAB_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
_JIRA_ACCOUNT_RE = re.compile(r"[A-Za-z0-9:_-]{1,128}")
_JIRA_NAME_RE = re.compile(r"[A-Za-z0-9._@-]{1,128}")
_SHA_RE = re.compile(r"[0-9a-fA-F]{7,64}")
_GITLAB_RESERVED = frozenset({"all", "here", "channel"})


@dataclass(frozen=True)
class FileChange:
    """One changed file; `added`/`deleted` are None for a binary file."""

    path: str
    added: int | None
    deleted: int | None


@dataclass(frozen=True)
class ProposalView:
    """Everything a proposal comment shows."""

    proposal_id: str
    summary: str
    commit_sha: str
    files: tuple[FileChange, ...] = ()
    checks: tuple[CommandResult, ...] = ()
    verdict: Verdict | None = None
    protected_changes: tuple[str, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    diff: str = ""


@dataclass(frozen=True)
class Person:
    """Who a reply is addressed to; the mention used depends on the flavor and what is known."""

    display_name: str
    gitlab_username: str | None = None
    jira_account_id: str | None = None
    jira_name: str | None = None


@dataclass(frozen=True)
class _Limits:
    diff_bytes: int
    findings: int = FINDINGS_SHOWN
    finding_chars: int = FINDING_CHARS


# --- neutralising untrusted text ---------------------------------------------------------------


def defang(text: str) -> str:
    """Break Baton's markers (the hidden HTML comment and Jira's `baton.effect=` line) so a quoted
    text can never pass for a Baton comment."""
    text = _MARKER_RE.sub(lambda m: f"<!{_ZWSP}--{m.group(1)}baton", text)
    return _JIRA_MARKER_RE.sub(lambda m: f"baton{_ZWSP}.{m.group(1)}", text)


def _flat(text: str, limit: int) -> str:
    flat = " ".join(_CONTROL_RE.sub("", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _escape(text: str, flavor: Flavor) -> str:
    if flavor == "jira":
        escaped = _JIRA_SPECIAL_RE.sub(lambda m: "\\" + m.group(0), text.replace("\\", "⧵"))
        return _ZWSP + escaped if _JIRA_LINE_START_RE.match(escaped) else escaped
    return _MENTION_RE.sub("@" + _ZWSP, _MD_SPECIAL_RE.sub(r"\\\1", text))


def inline(text: str, flavor: Flavor, limit: int = 300) -> str:
    """One line of untrusted text, escaped so it renders as the literal text and mentions nobody."""
    return _escape(defang(_flat(text, limit)), flavor)


def code(text: str, flavor: Flavor, limit: int = 300) -> str:
    """Untrusted text shown as inline code."""
    flat = defang(_flat(text, limit))
    if flavor == "jira":
        return "{{" + _escape(flat, flavor) + "}}"
    longest = max((len(run) for run in _BACKTICKS_RE.findall(flat)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def block(text: str, flavor: Flavor, language: str = "text") -> str:
    """A verbatim block that nothing inside can close early."""
    body = defang(_CONTROL_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")))
    if flavor == "jira":
        body = _JIRA_MACRO_RE.sub("{" + _ZWSP, body)
        opening = "{code:" + language + "}" if language != "text" else "{noformat}"
        closing = "{code}" if language != "text" else "{noformat}"
        return f"{opening}\n{body}\n{closing}"
    longest = max((len(run) for run in _BACKTICKS_RE.findall(body)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{language}\n{body}\n{ticks}"


def collapsible(title: str, content: str, flavor: Flavor, *, jira_expand: bool = True) -> str:
    """A section folded by default: `<details>` on GitLab, `{expand}` on Jira Cloud."""
    if flavor == "gitlab":
        return f"<details><summary>{title}</summary>\n\n{content}\n\n</details>"
    if jira_expand:
        return "{expand:" + title.replace("}", ")").replace("|", "/") + "}\n" + content + "\n{expand}"
    return f"*{title}*\n{content}"


def mention(person: Person, flavor: Flavor) -> str:
    """`@username` on GitLab, `[~accountid:…]` or `[~name]` on Jira; else the escaped display name."""
    if flavor == "gitlab":
        user = person.gitlab_username
        if user and _GITLAB_USER_RE.fullmatch(user) and user.lower() not in _GITLAB_RESERVED:
            return f"@{user}"
    elif person.jira_account_id and _JIRA_ACCOUNT_RE.fullmatch(person.jira_account_id):
        return f"[~accountid:{person.jira_account_id}]"
    elif person.jira_name and _JIRA_NAME_RE.fullmatch(person.jira_name):
        return f"[~{person.jira_name}]"
    return inline(person.display_name or "there", flavor, 100)


# --- pieces of a proposal ----------------------------------------------------------------------


def _bold(text: str, flavor: Flavor) -> str:
    return f"*{text}*" if flavor == "jira" else f"**{text}**"


def _heading(text: str, flavor: Flavor, level: int = 4) -> str:
    return f"h{level}. {text}" if flavor == "jira" else f"{'#' * level} {text}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], flavor: Flavor) -> str:
    if flavor == "jira":
        lines = ["||" + "||".join(header) + "||"]
        lines += ["|" + "|".join(cell or " " for cell in row) + "|" for row in rows]
        return "\n".join(lines)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def prose(text: str, flavor: Flavor, limit: int = 500) -> str:
    """A sentence whose `backtick spans` become inline code; everything else is escaped like `inline`."""
    pieces = re.split(r"`([^`]+)`", defang(_flat(text, limit)))
    return "".join(code(piece, flavor) if odd else _escape(piece, flavor) for odd, piece in _odd(pieces))


def _odd(pieces: Sequence[str]) -> list[tuple[bool, str]]:
    return [(index % 2 == 1, piece) for index, piece in enumerate(pieces) if piece]


def short_sha(sha: str) -> str:
    return sha[:8].lower() if _SHA_RE.fullmatch(sha) else "unknown"


def _count(value: int | None) -> str:
    return "bin" if value is None else f"{value:,}"


def _files(p: ProposalView, flavor: Flavor) -> str:
    if not p.files:
        return _heading("Files changed", flavor) + "\n\nNo files changed."
    rows = [[code(f.path, flavor), _count(f.added), _count(f.deleted)] for f in p.files]
    added = sum(f.added or 0 for f in p.files)
    deleted = sum(f.deleted or 0 for f in p.files)
    rows.append(
        [
            _bold(f"{len(p.files)} file{'s' if len(p.files) != 1 else ''}", flavor),
            f"{added:,}",
            f"{deleted:,}",
        ]
    )
    return _heading("Files changed", flavor) + "\n\n" + _table(["File", "Added", "Removed"], rows, flavor)


_CHECK_ICONS = {"passed": "✅ pass", "failed": "❌ fail", "timed_out": "⏱ timed out", "error": "❌ error"}


def _check_cell(result: CommandResult) -> str:
    if result.status == "skipped":
        return "➖ not run"
    suffix = f" (exit {result.exit_code})" if result.status == "failed" else ""
    return _CHECK_ICONS[result.status] + suffix


def _checks(p: ProposalView, flavor: Flavor, jira_expand: bool) -> str:
    if not p.checks:
        return _heading("Checks", flavor) + "\n\nThe repository declares no checks in `.baton.yml`."
    rows = [[r.stage, code(r.command, flavor), _check_cell(r)] for r in p.checks]
    parts = [_heading("Checks", flavor), _table(["Stage", "Command", "Result"], rows, flavor)]
    for r in p.checks:
        if r.failed and r.output:
            output = tail(clean_output(r.output), max_lines=OUTPUT_TAIL_LINES, max_chars=OUTPUT_TAIL_CHARS)
            title = f"Output of the failing command ({r.stage})"
            parts.append(collapsible(title, block(output, flavor), flavor, jira_expand=jira_expand))
    return "\n\n".join(parts)


def _finding(f: Finding, flavor: Flavor, limits: _Limits) -> str:
    where = f.file + (f":{f.line}" if f.line else "") if f.file else ""
    prefix = code(where, flavor) + " " if where else ""
    return f"* {prefix}{inline(f.text, flavor, limits.finding_chars)}"


def _findings(title: str, items: Sequence[Finding], flavor: Flavor, limits: _Limits) -> list[str]:
    if not items:
        return []
    lines = [_finding(f, flavor, limits) for f in items[: limits.findings]]
    if len(items) > limits.findings:
        lines.append(f"* …and {len(items) - limits.findings} more")
    return [f"{_bold(f'{title} ({len(items)})', flavor)}\n" + "\n".join(lines)]


def _review(p: ProposalView, flavor: Flavor, limits: _Limits) -> str:
    heading = _heading("Review", flavor)
    verdict = p.verdict
    if verdict is None:
        return heading + "\n\nNo review verdict was recorded for this proposal."
    state = "✅ approved by the reviewer" if verdict.passes else "❌ the reviewer has blockers"
    parts = [heading, f"{_bold(state, flavor)}: {inline(verdict.summary, flavor, 1000)}"]
    parts += _findings("Blockers", verdict.blockers, flavor, limits)
    parts += _findings("Suggestions", verdict.suggestions, flavor, limits)
    parts += _findings("Scope creep", verdict.scope_creep, flavor, limits)
    return "\n\n".join(parts)


def _protected(p: ProposalView, flavor: Flavor) -> str:
    if not p.protected_changes:
        return ""
    paths = ", ".join(code(path, flavor) for path in p.protected_changes[:50])
    more = f" and {len(p.protected_changes) - 50} more" if len(p.protected_changes) > 50 else ""
    text = "This change touches protected or CI files; check them line by line before approving:"
    icon = "(!)" if flavor == "jira" else "⚠️"
    return f"{icon} {_bold(text, flavor)} {paths}{more}"


def _facts(p: ProposalView, flavor: Flavor) -> str:
    tokens = f"{p.input_tokens + p.output_tokens:,} ({p.input_tokens:,} in / {p.output_tokens:,} out)"
    facts = [
        f"{_bold('Commit', flavor)} {code(short_sha(p.commit_sha), flavor)}",
        f"{_bold('Proposal', flavor)} {code(p.proposal_id, flavor, 80)}",
        f"{_bold('Tokens', flavor)} {tokens}",
        f"{_bold('Cost', flavor)} ${p.cost_usd:,.2f}",
    ]
    return " · ".join(facts)


def truncate_diff(diff: str, limit_bytes: int) -> tuple[str, str]:
    """The diff cut at a line boundary within `limit_bytes` (UTF-8), and a note when it was cut."""
    raw = diff.encode("utf-8", "replace")
    if len(raw) <= limit_bytes:
        return diff, ""
    cut = raw[: max(0, limit_bytes)].decode("utf-8", "ignore")
    cut = cut[: cut.rfind("\n") + 1] if "\n" in cut else ""
    shown, total = cut.count("\n"), diff.count("\n") + (0 if diff.endswith("\n") else 1)
    note = (
        f"The diff is truncated: {shown:,} of {total:,} lines shown "
        f"({len(cut.encode()):,} of {len(raw):,} bytes). "
        "The full change is the commit above."
    )
    return cut, note


def _diff(p: ProposalView, flavor: Flavor, limit_bytes: int, jira_expand: bool) -> str:
    if not p.diff.strip():
        return "The proposal has no diff to show."
    shown, note = truncate_diff(p.diff, limit_bytes)
    lines = p.diff.count("\n") + (0 if p.diff.endswith("\n") else 1)
    content = block(shown.rstrip("\n"), flavor, "diff") if shown else ""
    if note:
        content = f"{content}\n\n{note}" if content else note
    return collapsible(f"Full diff ({lines:,} lines)", content, flavor, jira_expand=jira_expand)


def _summary_line(p: ProposalView, flavor: Flavor) -> str:
    title = f"Baton proposal: {inline(p.summary, flavor, 200)}"
    return f"h3. 🤖 {title}" if flavor == "jira" else f"### 🤖 {title}"


def _render(p: ProposalView, flavor: Flavor, limits: _Limits, jira_expand: bool) -> str:
    sections = [
        _summary_line(p, flavor),
        _protected(p, flavor),
        _facts(p, flavor),
        _files(p, flavor),
        _checks(p, flavor, jira_expand),
        _review(p, flavor, limits),
        _diff(p, flavor, limits.diff_bytes, jira_expand),
        "----" if flavor == "jira" else "---",
        prose(NEXT_STEPS, flavor),
    ]
    return "\n\n".join(s for s in sections if s)


def render_proposal(
    p: ProposalView, *, flavor: Flavor, diff_limit_bytes: int = DIFF_LIMIT_BYTES, jira_expand: bool = True
) -> str:
    """The proposal comment, ending with the replies that move it on.

    On Jira the diff shrinks further so the comment stays under Jira's size cap; `jira_expand=False`
    drops the `{expand}` fold for Jira Data Center, which has no such macro.
    """
    text = _render(p, flavor, _Limits(diff_bytes=diff_limit_bytes), jira_expand)
    if flavor == "jira" and len(text) > JIRA_MAX_CHARS:
        small = _Limits(diff_bytes=0, findings=5, finding_chars=200)
        room = min(diff_limit_bytes, JIRA_MAX_CHARS - len(_render(p, flavor, small, jira_expand)) - 300)
        text = _render(p, flavor, replace(small, diff_bytes=max(0, room)), jira_expand)
    return text


# --- replies to people -------------------------------------------------------------------------


def _in_response(command: str, flavor: Flavor) -> str:
    """Prow's "In response to this": the person's command, quoted."""
    quoted = inline(command, flavor, 500)
    if flavor == "jira":
        return "In response to this:\n{quote}\n" + quoted + "\n{quote}"
    return collapsible("In response to this:", "> " + quoted, flavor)


def render_refusal(
    who: Person, command: str, reason: str, *, flavor: Flavor, what_next: str | None = None
) -> str:
    """A refused command: who asked, why not, what they can do instead, and their command quoted."""
    name = command.strip().split(maxsplit=1)[0] if command.strip() else "that"
    lines = [f"{mention(who, flavor)}: I did not run {code(name, flavor, 40)}: {prose(reason, flavor)}"]
    if what_next:
        lines.append(prose(what_next, flavor))
    lines.append(_in_response(command, flavor))
    return "\n\n".join(lines)


def render_failure(
    what_failed: str,
    what_you_can_do: str,
    *,
    flavor: Flavor,
    who: Person | None = None,
    command: str | None = None,
) -> str:
    """Something went wrong on Baton's side: what failed and the exact next step for the person."""
    opening = f"{mention(who, flavor)}: " if who is not None else ""
    lines = [
        f"❌ {opening}{_bold(prose(what_failed, flavor), flavor)}",
        prose(what_you_can_do, flavor),
    ]
    if command:
        lines.append(_in_response(command, flavor))
    return "\n\n".join(lines)
