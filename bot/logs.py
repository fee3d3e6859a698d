"""Structured JSON logs: one object per line, the delivery/run id on each, secrets masked."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bot.redact import Redactor

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("baton_log_context", default={})  # noqa: B039
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Attach fields (e.g. delivery_id, run_id) to every log line emitted inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class RedactingFilter(logging.Filter):
    """Rewrites each record before any formatter sees it: its message (format string merged with its
    arguments), its extra fields, its exception and stack text all pass through the redactor. Installed
    on the handler (`configure`), so it covers records propagated from every logger, not only the root's.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: the handler reports it as logging always does
            return True
        record.msg, record.args = self.redactor.redact(message), None
        for key, value in list(vars(record).items()):
            if (
                key not in _STANDARD
                and not key.startswith("_")
                and isinstance(value, str | dict | list | tuple)
            ):
                setattr(record, key, self.redactor.redact_data(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """Formats records as JSON with context fields, masking every configured secret value (again: a
    record that reached it without the filter, or a secret in a bound context field)."""

    def __init__(self, secrets: Sequence[str] = (), *, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor or Redactor(secrets)

    def mask(self, text: str) -> str:
        return self._redactor.redact(text)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_context.get(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_text:
            entry["exc"] = record.exc_text
        elif record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # strings are redacted before encoding (a secret split by a line break is still one text then)
        # and the line after it (whatever `default=str` turned into text)
        clean = self._redactor.redact_data(entry)
        return self.mask(json.dumps(clean, default=str, ensure_ascii=False))


def configure(level: str = "INFO", secrets: Sequence[str] = (), *, redactor: Redactor | None = None) -> None:
    """Route every logger (Baton's, uvicorn's, arq's) through the redacting filter and the JSON formatter
    on stderr. `redactor` (normally `Redactor.from_settings(settings)`) wins over `secrets`."""
    redactor = redactor or Redactor(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(JsonFormatter(redactor=redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # arq logs every job start and end (the sweeper's too) at INFO; Baton logs what matters per run.
    for chatty in ("arq.worker", "alembic"):
        logging.getLogger(chatty).setLevel(max(root.level, logging.WARNING))
