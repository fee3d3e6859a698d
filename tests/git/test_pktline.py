"""pkt-line parsing of receive-pack commands and report-status, including side-band and truncation."""

from __future__ import annotations

import pytest

from bot.git.pktline import Incomplete, PushCommand, iter_pkt_lines, parse_push_commands, parse_report_status

A, B, Z = "a" * 40, "b" * 40, "0" * 40


def pkt(payload: bytes) -> bytes:
    return f"{len(payload) + 4:04x}".encode() + payload


def band(n: int, payload: bytes) -> bytes:
    return pkt(bytes([n]) + payload)


def test_commands_and_capabilities() -> None:
    body = (
        pkt(f"shallow {A}\n".encode())
        + pkt(f"{Z} {A} refs/heads/new\0report-status side-band-64k agent=git/2.39\n".encode())
        + pkt(f"{A} {B} refs/heads/main\n".encode())
        + b"0000PACK\x00\x00\x00\x02garbage"
    )
    commands, caps = parse_push_commands(body)
    assert commands == [PushCommand(Z, A, "refs/heads/new"), PushCommand(A, B, "refs/heads/main")]
    assert caps == {"report-status", "side-band-64k", "agent=git/2.39"}


@pytest.mark.parametrize("cut", [2, 10, 60])
def test_truncated_command_list_is_incomplete(cut: int) -> None:
    body = pkt(f"{Z} {A} refs/heads/new\0report-status\n".encode()) + b"0000"
    with pytest.raises(Incomplete):
        parse_push_commands(body[:cut])


def test_bad_length_is_an_error() -> None:
    with pytest.raises(ValueError, match="bad pkt-line"):
        list(iter_pkt_lines(b"zzzzhello"))


def test_report_status_plain_and_side_band() -> None:
    report = (
        pkt(b"unpack ok\n") + pkt(b"ok refs/heads/a\n") + pkt(b"ng refs/heads/b non-fast-forward\n") + b"0000"
    )
    expected = {"refs/heads/a": None, "refs/heads/b": "non-fast-forward"}
    assert parse_report_status(report, sideband=False) == expected
    muxed = band(2, b"progress...\n") + band(1, report[:20]) + band(1, report[20:]) + b"0000"
    assert parse_report_status(muxed, sideband=True) == expected


def test_failed_unpack_reports_refs_as_not_ok() -> None:
    report = pkt(b"unpack index-pack abnormal exit\n") + pkt(b"ng refs/heads/a unpacker error\n") + b"0000"
    assert parse_report_status(report, sideband=False) == {"refs/heads/a": "unpacker error"}
