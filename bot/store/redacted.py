"""Column types that pass what is written through the engine's redactor (see `engine.create_engine`).

The free-text columns — run input and errors, phase input/output/errors (the repository's command output
lives there), the activity trail — are typed `RedactedText` / `RedactedJSON`. JSON is redacted value by
value before it is serialized, so a mask never breaks the document (a cut-off private key inside one
string cannot swallow the rest of it) and a secret split by a line break inside a string is still found.
Identifiers, effect keys, proposal targets (worktree, branch, remote) and webhook deliveries are not
redacted: changing them would break lookups and pushes, and they carry no free text (deliveries are
kept as GitLab or Jira sent them). The same type redacts a value compared in a WHERE clause, so a
lookup by a stored text still matches.

The redactor belongs to the engine: `create_engine(url, redactor)` sets it on the engine's dialect
(each engine has its own), which is what SQLAlchemy hands a type when it binds a value. An engine built
without one stores text as it is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from bot.redact import Redactor

_ATTRIBUTE = "baton_redactor"


def install(dialect: Dialect, redactor: Redactor) -> None:
    """Make `redactor` the one every redacted column of this engine's writes passes through."""
    setattr(dialect, _ATTRIBUTE, redactor)


def redactor_of(dialect: Dialect) -> Redactor | None:
    redactor = getattr(dialect, _ATTRIBUTE, None)
    return redactor if isinstance(redactor, Redactor) else None


class RedactedText(TypeDecorator[str]):
    """TEXT whose written values pass through the engine's redactor."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        redactor = redactor_of(dialect)
        return redactor.redact(value) if redactor is not None and value else value


class RedactedJSON(TypeDecorator[Any]):
    """JSON whose strings (keys and values, at any depth) pass through the engine's redactor."""

    impl = JSON
    cache_ok = True

    should_evaluate_none = True  # as JSON does: an explicit None is written (as JSON null), not skipped

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        redactor = redactor_of(dialect)
        return redactor.redact_data(value) if redactor is not None and value is not None else value
