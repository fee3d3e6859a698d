"""The one result type of every handler: Enqueue a run, Reply with text, or Ignore."""

from __future__ import annotations

from dataclasses import dataclass

from bot.triggers import (
    JiraReplyTarget,
    MergeRequestMerged,
    MergeRequestPushed,
    PipelineFailed,
    ThreadCommand,
    ThreadReplyTarget,
    TicketCommand,
    TicketLabelled,
)


@dataclass(frozen=True)
class Enqueue:
    """Start a run of the orchestrator `kind` about `subject`.

    `origin` names the triggering thing itself (a Jira changelog, a comment, a note); two
    deliveries with the same origin start one run even if their delivery keys differ.
    """

    kind: str
    subject: str
    origin: str
    input: (
        TicketLabelled
        | TicketCommand
        | ThreadCommand
        | MergeRequestPushed
        | MergeRequestMerged
        | PipelineFailed
    )


@dataclass(frozen=True)
class Reply:
    """Answer the author with `text` at `target` (posted by the worker, exactly once)."""

    subject: str
    origin: str
    target: JiraReplyTarget | ThreadReplyTarget
    text: str


@dataclass(frozen=True)
class Ignore:
    """Acknowledge and do nothing; `reason` is returned to the sender and counted in metrics."""

    reason: str


Action = Enqueue | Reply | Ignore
