"""Pure pkt-line parsing for git's receive-pack exchange: the pushed commands and the report-status."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

FLUSH = None
_HEX4 = re.compile(rb"[0-9a-fA-F]{4}")
_OID = r"(?:[0-9a-f]{40}|[0-9a-f]{64})"
_COMMAND_RE = re.compile(rf"({_OID}) ({_OID}) (refs/\S+)")


@dataclass(frozen=True)
class PushCommand:
    old: str
    new: str
    ref: str


class Incomplete(ValueError):
    """The data ends before the part being parsed does."""


def iter_pkt_lines(data: bytes) -> Iterator[bytes | None]:
    """Payloads of consecutive pkt-lines (None for flush/delim/response-end); Incomplete at a cut."""
    pos = 0
    while pos < len(data):
        head = data[pos : pos + 4]
        if len(head) < 4:
            raise Incomplete("truncated pkt-line length")
        if not _HEX4.fullmatch(head):
            raise ValueError(f"bad pkt-line length {head!r}")
        size = int(head, 16)
        if size < 4:
            pos += 4
            yield FLUSH
            continue
        if pos + size > len(data):
            raise Incomplete("truncated pkt-line payload")
        yield data[pos + 4 : pos + size]
        pos += size


def parse_push_commands(data: bytes) -> tuple[list[PushCommand], frozenset[str]]:
    """The `old new ref` commands and capabilities at the start of a receive-pack request body."""
    commands: list[PushCommand] = []
    capabilities: frozenset[str] = frozenset()
    for payload in iter_pkt_lines(data):
        if payload is FLUSH:
            return commands, capabilities
        line, _, caps = payload.rstrip(b"\n").partition(b"\0")
        if not commands and caps:
            capabilities = frozenset(caps.decode("ascii", "replace").split())
        match = _COMMAND_RE.fullmatch(line.decode("utf-8", "replace"))
        if match:  # "shallow <oid>" and push-cert lines carry no command for us
            commands.append(PushCommand(*match.groups()))
    raise Incomplete("command list has no flush yet")


def demultiplex(data: bytes) -> bytes:
    """The band-1 (data) bytes of a side-band response, up to the closing flush."""
    out = bytearray()
    for payload in iter_pkt_lines(data):
        if payload is FLUSH:
            break
        if payload[:1] == b"\x01":
            out += payload[1:]
    return bytes(out)


def parse_report_status(data: bytes, *, sideband: bool) -> dict[str, str | None]:
    """ref → None when receive-pack reported `ok`, or the reason it gave with `ng`."""
    report = demultiplex(data) if sideband else data
    results: dict[str, str | None] = {}
    for payload in iter_pkt_lines(report):
        if payload is FLUSH:
            break
        status, _, rest = payload.rstrip(b"\n").decode("utf-8", "replace").partition(" ")
        ref, _, reason = rest.partition(" ")
        if status == "ok":
            results[ref] = None
        elif status == "ng":
            results[ref] = reason or "rejected"
    return results
