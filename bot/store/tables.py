"""SQLAlchemy tables of the state store (deliveries, runs, phases, proposals, effects, activity)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.store.redacted import RedactedJSON, RedactedText


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


# TEXT and JSON columns stored as they are, and why. Every other one is RedactedText/RedactedJSON (free
# text passes through the engine's redactor, see bot/store/redacted.py); a test fails on a new TEXT or
# JSON column that is in neither group.
UNREDACTED_COLUMNS = {
    "deliveries.reason": "what the webhook endpoint answered about a delivery kept as sent",
    "deliveries.payload": "the delivery as GitLab or Jira sent it (deduplication and replay need it)",
    "proposals.target": (
        "routing the push depends on (worktree, branch, project, remote); a knowledge proposal's pages "
        "land in the wiki as stored, so orchestrators/wiki_proposal.py redacts them before storing"
    ),
}


class Delivery(Base):
    """One webhook delivery as received, deduplicated by (source, dedup_key)."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("source", "dedup_key", name="uq_deliveries_source_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))
    dedup_key: Mapped[str] = mapped_column(String(255))
    event: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # enqueued | replied | ignored | joined
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    run_id: Mapped[str | None] = mapped_column(String(32), default=None)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    received_at: Mapped[datetime]


class Run(Base):
    """A unit of work for one orchestrator, started by a delivery (or a CLI retry)."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_updated", "status", "updated_at"),
        Index("ix_runs_created", "created_at", "id", "status", "subject"),  # the dashboard's listings
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255), index=True)
    origin: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    input: Mapped[dict[str, Any]] = mapped_column(RedactedJSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(RedactedText, default=None)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"), default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


# The dashboard's figures per run (cost, tokens, rounds), in one index so that it never reads the large rows.
PHASE_FIGURES = (
    "run_id",
    "position",
    "name",
    "status",
    "attempts",
    "cost_usd",
    "input_tokens",
    "output_tokens",
)


class Phase(Base):
    """One named step of a run, its persisted input/output, timing, attempts and cost."""

    __tablename__ = "phases"
    __table_args__ = (
        UniqueConstraint("run_id", "name", name="uq_phases_run_name"),
        Index("ix_phases_run_figures", *PHASE_FIGURES),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    input: Mapped[dict[str, Any] | None] = mapped_column(RedactedJSON, default=None)
    output: Mapped[dict[str, Any] | None] = mapped_column(RedactedJSON, default=None)
    error: Mapped[str | None] = mapped_column(RedactedText, default=None)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class Proposal(Base):
    """What a run proposes; approval binds to `sha` and moves `status` by compare-and-set."""

    __tablename__ = "proposals"
    __table_args__ = (Index("ix_proposals_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16))  # proposed | approved | shipped | rejected | stale
    sha: Mapped[str | None] = mapped_column(String(64), default=None)
    diff_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Effect(Base):
    """One external write, keyed so that a retried job finds it instead of writing twice."""

    __tablename__ = "effects"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # pending | done
    run_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    external_id: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Activity(Base):
    """The audit trail: who did what, when, to which run."""

    __tablename__ = "activity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    delivery_id: Mapped[int | None] = mapped_column(Integer, default=None)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(RedactedText)
    data: Mapped[dict[str, Any] | None] = mapped_column(RedactedJSON, default=None)


class GraphTask(Base):
    """One task of a multi-repository ticket's graph (orchestrators/taskgraph.py): what it does, where, what
    it waits for, and how it stands; `run_id` is its current `task` run, `result` what its dependants read."""

    __tablename__ = "graph_tasks"
    __table_args__ = (UniqueConstraint("graph_run_id", "task_id", name="uq_graph_tasks_run_task"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    graph_run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    task_id: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)
    repository: Mapped[str] = mapped_column(String(255))
    spec: Mapped[dict[str, Any]] = mapped_column(RedactedJSON)  # the planned TaskSpec
    status: Mapped[str] = mapped_column(String(16))  # pending | queued | running | done | failed | blocked
    run_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(RedactedJSON, default=None)
    error: Mapped[str | None] = mapped_column(RedactedText, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
