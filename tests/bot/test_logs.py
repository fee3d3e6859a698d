"""Structured logs: JSON per line, bound ids on every line, configured secrets masked."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.logs import JsonFormatter, RedactingFilter, bind, configure
from bot.redact import Redactor


def render(formatter: JsonFormatter, message: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("baton.test", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    line = formatter.format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_bound_ids_appear_on_every_line() -> None:
    formatter = JsonFormatter()
    with bind(delivery_id=7), bind(run_id="abc123"):
        entry = render(formatter, "claimed %s", "run")
    assert entry["msg"] == "claimed run"
    assert (entry["delivery_id"], entry["run_id"], entry["level"]) == (7, "abc123", "info")
    assert "run_id" not in render(formatter, "outside")


@pytest.mark.parametrize("where", ["message", "argument", "extra"])
def test_secrets_are_masked_wherever_they_appear(where: str) -> None:
    secret = "glpat-XYZ-super-secret"
    formatter = JsonFormatter([secret, "ab"])  # too-short values are not masked (would shred text)
    if where == "message":
        entry = render(formatter, f"token {secret} leaked")
    elif where == "argument":
        entry = render(formatter, "token %s leaked", secret)
    else:
        entry = render(formatter, "request", url=f"https://oauth2:{secret}@gitlab.example.com")
    assert secret not in json.dumps(entry)
    assert "[redacted]" in json.dumps(entry)


def test_a_secret_in_base64_or_wrapped_is_masked_in_logs() -> None:
    secret = "sandbox-jira-bot-token-0123456789"
    formatter = JsonFormatter([secret])
    encoded = base64.b64encode(f"user:{secret}".encode()).decode()
    entry = render(formatter, "auth %s and %s", encoded, secret[:9] + "\n  " + secret[9:])
    line = json.dumps(entry)
    assert encoded not in line and secret not in line and secret[9:] not in line
    assert line.count("[redacted]") == 2


def test_exceptions_are_one_json_line() -> None:
    formatter = JsonFormatter(["hunter2-secret"])
    try:
        raise ValueError("bad hunter2-secret")
    except ValueError:
        import sys

        record = logging.LogRecord("baton", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    line = formatter.format(record)
    assert "hunter2-secret" not in line
    assert "ValueError" in json.loads(line)["exc"]


CANARY = "canary-log-secret-6d5c4b3a"


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("filtering", [True, False])
def test_the_filter_redacts_records_for_any_formatter(filtering: bool) -> None:
    """The filter rewrites the record itself, so even a plain `%(message)s` formatter prints no secret:
    message arguments, extra fields, the exception text."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(detail)s"))
    if filtering:
        handler.addFilter(RedactingFilter(Redactor([CANARY])))
    logger = logging.getLogger("baton.test.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError(f"git push failed for https://oauth2:{CANARY}@gitlab")
        except RuntimeError:
            logger.exception("push %s failed", f"token={CANARY}", extra={"detail": {"env": CANARY}})
    finally:
        logger.removeHandler(handler)
    printed = stream.getvalue()
    assert (CANARY in printed) is not filtering
    if filtering:
        assert printed.count("[redacted]") == 3 and "RuntimeError" in printed


def test_configure_installs_the_filter_for_every_logger(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("INFO", redactor=Redactor([CANARY]))
    (handler,) = logging.getLogger().handlers
    assert [f for f in handler.filters if isinstance(f, RedactingFilter)]
    logging.getLogger("uvicorn.error").warning("bad token %s", CANARY)  # propagated to the root's handler
    logging.getLogger("baton.worker").info("wrapped %s", CANARY[:10] + "\n    " + CANARY[10:])
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [entry["msg"] for entry in lines] == ["bad token [redacted]", "wrapped [redacted]"]
