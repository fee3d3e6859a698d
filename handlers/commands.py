"""Slash commands in comments (Prow/Atlantis style): line-anchored, any case, never quoted or in code."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from config.skills import SkillManifest, Where

Syntax = Literal["markdown", "jira", "any"]
"""Which markup's code and quote blocks to honour; "any" applies both (the strictest)."""

# Which commands exist is the skill manifest's to say (config/skills.yaml, or a team's own file): the
# shell loads it once at start-up and every function here takes it; nothing is read at import.
MAX_COMMANDS = 50
MAX_ARGS = 2000

_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")
_COMMAND_RE = re.compile(r"\s*/(\w[\w-]{0,31})(?:\s+(.*))?")
_FENCE_RE = re.compile(r"\s*(`{3,}|~{3,})")
_MD_QUOTE_RE = re.compile(r"\s*>")
_JIRA_QUOTE_RE = re.compile(r"\s*bq\.(?:\s|$)", re.IGNORECASE)
_INDENTED_RE = re.compile(r"(?: {0,3}\t| {4})\s*\S")
_TOKEN_RE = re.compile(r"\{(code|noformat|quote)(?::[^}\n]*)?\}|<!--|-->", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_VERBATIM_MACROS = ("code", "noformat")
_HTML_OPEN, _HTML_CLOSE = "<!--", "-->"


@dataclass(frozen=True)
class Command:
    """One `/name args` line; `name` is lower-case with aliases resolved."""

    name: str
    args: str = ""


@dataclass
class _Scanner:
    """Tracks, line by line, whether the text is inside a code block, a quote or an HTML comment."""

    markdown: bool
    jira: bool
    fence: str = ""
    macros: list[str] = field(default_factory=list)
    html_comment: bool = False
    quoting: bool = False
    indented_code: bool = False
    after_blank: bool = True

    def visible(self, line: str) -> bool:
        """Update the state with `line`; True when the line is plain text a command may start."""
        if self.fence:
            self._close_fence(line)
            return False
        if self.macros or self.html_comment:
            self._scan_tokens(line)
            return False
        opening = _FENCE_RE.match(line) if self.markdown else None
        if opening and not (opening.group(1)[0] == "`" and "`" in line[opening.end() :]):
            self.fence = opening.group(1)  # (a backtick run followed by another backtick is inline code)
            return False
        shown = not self._quoted(line) and not self._in_indented_code(line)
        self._scan_tokens(line)
        self.after_blank = not line.strip()
        return shown

    def _close_fence(self, line: str) -> None:
        stripped = line.strip()
        if len(stripped) >= len(self.fence) and stripped == self.fence[0] * len(stripped):
            self.fence = ""
            self.after_blank = True

    def _quoted(self, line: str) -> bool:
        marker = (self.markdown and _MD_QUOTE_RE.match(line)) or (self.jira and _JIRA_QUOTE_RE.match(line))
        if marker:
            self.quoting = bool(line[marker.end() :].strip())
            return True
        if not line.strip():
            self.quoting = False
        return self.quoting  # a lazy continuation line still renders inside the quote

    def _in_indented_code(self, line: str) -> bool:
        if not self.markdown:
            return False
        if _INDENTED_RE.match(line) and (self.after_blank or self.indented_code):
            self.indented_code = True
        elif line.strip():
            self.indented_code = False
        return self.indented_code

    def _scan_tokens(self, line: str) -> None:
        for found in _TOKEN_RE.finditer(line):
            self._mark(found.group(0).lower(), (found.group(1) or "").lower())

    def _mark(self, mark: str, macro: str) -> None:
        if self.html_comment:
            self.html_comment = mark != _HTML_CLOSE
        elif self.macros and self.macros[-1] in _VERBATIM_MACROS:
            if mark == "{" + self.macros[-1] + "}":
                self.macros.pop()
        elif mark == _HTML_OPEN:
            self.html_comment = self.markdown
        elif macro and self.jira:
            self._jira_macro(macro)

    def _jira_macro(self, macro: str) -> None:
        if macro == "quote" and self.macros and self.macros[-1] == "quote":
            self.macros.pop()
        else:
            self.macros.append(macro)


def _unmention(line: str, mentions: Iterable[str]) -> str:
    """`@baton-bot fix this` is `/fix this`: a line that starts with the bot's mention."""
    stripped = line.lstrip()
    for handle in mentions:
        if handle and stripped[: len(handle)].lower() == handle.lower():
            rest = stripped[len(handle) :]
            if rest[:1] in (" ", "\t", ":", ",") and rest.strip(" \t:,"):
                word = rest.strip(" \t:,")
                return word if word.startswith("/") else "/" + word
    return line


def parse_command(line: str, aliases: Mapping[str, str], mentions: Iterable[str] = ()) -> Command | None:
    """The command a single line starts with, if any (ASCII names only, so look-alikes never count)."""
    match = _COMMAND_RE.fullmatch(_unmention(line, mentions))
    if not match or not match.group(1).isascii():
        return None
    name = match.group(1).lower()
    args = _CONTROL_RE.sub("", match.group(2) or "").strip()[:MAX_ARGS]
    return Command(aliases.get(name, name), args)


def parse_commands(
    text: str, *, skills: SkillManifest, syntax: Syntax = "any", mentions: Iterable[str] = ()
) -> list[Command]:
    """Every command in `text`, in order, skipping code blocks, quotes and mid-line slashes.

    `mentions` are the bot's handles (`@baton-bot`, `[~accountid:…]`): a line starting with one
    followed by a command word counts as that command.
    """
    scanner = _Scanner(markdown=syntax != "jira", jira=syntax != "markdown")
    aliases = skills.aliases
    commands: list[Command] = []
    for line in _LINE_BREAK_RE.split(text):
        command = parse_command(line, aliases, mentions) if scanner.visible(line) else None
        if command:
            commands.append(command)
            if len(commands) >= MAX_COMMANDS:
                break
    return commands


def first_known(commands: Iterable[Command], skills: SkillManifest) -> Command | None:
    known = skills.names
    return next((c for c in commands if c.name in known), None)


def suggest(name: str, skills: SkillManifest) -> str | None:
    """The known command (or alias) closest to an unknown `name`, if any is close enough."""
    names = list(skills.names)
    matches = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return matches[0] if matches else None


def help_lines(skills: SkillManifest, where: Where | None = None) -> list[str]:
    """One line per command, generated from the skill manifest."""
    return skills.help_lines(where)


def did_you_mean(
    who: str, command: Command, *, skills: SkillManifest, syntax: Syntax = "markdown"
) -> str | None:
    """The reply to an unknown command that is close to a known one; None when nothing is close."""
    suggestion = suggest(command.name, skills)
    if suggestion is None:
        return None

    def code(text: str) -> str:
        return f"{{{{{text}}}}}" if syntax == "jira" else f"`{text}`"

    return (
        f"{who}, in response to {code('/' + command.name)}: I don't know that command. "
        f"Did you mean {code('/' + suggestion)}? Reply {code('/help')} to list the commands I understand."
    )
