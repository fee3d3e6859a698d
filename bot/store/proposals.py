"""Proposals: what a run offers for approval, bound to a commit SHA, moved by compare-and-set.

A subject (a ticket, a merge request) can hold proposals of several families at once — a code change, an
architecture decision, learned facts (`family`: the target's `kind` and `origin`). A new proposal makes
only the older open proposals of its own family stale, so one never cancels another family's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.engine import utcnow
from bot.store.tables import Proposal

PROPOSED, APPROVED, SHIPPED, REJECTED, STALE = "proposed", "approved", "shipped", "rejected", "stale"


@dataclass(frozen=True)
class ProposalRow:
    id: str
    run_id: str
    subject: str
    status: str
    sha: str
    diff_hash: str | None
    target: dict[str, Any]


def family(target: dict[str, Any]) -> tuple[str, str]:
    """Which proposals replace each other: same `kind` and `origin` in the target (code proposals have a
    kind of their own and no origin; knowledge proposals are `knowledge` from `learn` or `design`)."""
    return str(target.get("kind") or ""), str(target.get("origin") or "")


def _row(p: Proposal) -> ProposalRow:
    return ProposalRow(p.id, p.run_id, p.subject, p.status, p.sha or "", p.diff_hash, dict(p.target))


async def create(
    sm: async_sessionmaker[AsyncSession],
    run_id: str,
    subject: str,
    sha: str,
    diff_hash: str,
    target: dict[str, Any],
) -> ProposalRow:
    """Record a proposal (once per run and SHA while it is open) and mark the subject's older open
    proposals of the same family stale. A run that proposes the same SHA again after its proposal was
    closed (a `/revise` whose redraft came out identical) gets a new proposal."""
    async with sm.begin() as session:
        same = await session.execute(
            select(Proposal).where(
                Proposal.run_id == run_id, Proposal.sha == sha, Proposal.status == PROPOSED
            )
        )
        existing = same.scalars().first()
        if existing is not None:
            return _row(existing)
        open_rows = await session.execute(
            select(Proposal.id, Proposal.target).where(
                Proposal.subject == subject, Proposal.status == PROPOSED
            )
        )
        replaced = [row.id for row in open_rows if family(dict(row.target)) == family(target)]
        if replaced:
            await session.execute(
                update(Proposal)
                .where(Proposal.id.in_(replaced), Proposal.status == PROPOSED)
                .values(status=STALE, updated_at=utcnow())
            )
        now = utcnow()
        proposal = Proposal(
            id=uuid.uuid4().hex[:12], run_id=run_id, subject=subject, status=PROPOSED, sha=sha,
            diff_hash=diff_hash, target=target, created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(proposal)
        return _row(proposal)


async def latest(sm: async_sessionmaker[AsyncSession], subject: str) -> ProposalRow | None:
    """The subject's newest proposal, whatever its status."""
    query = select(Proposal).where(Proposal.subject == subject).order_by(Proposal.created_at.desc()).limit(1)
    async with sm() as session:
        found = (await session.execute(query)).scalar_one_or_none()
    return _row(found) if found else None


async def latest_open(sm: async_sessionmaker[AsyncSession], subject: str, run_id: str) -> list[ProposalRow]:
    """The newest proposal of each family on the subject that is still open (`proposed`, or `approved` by
    the run `run_id`, which is resuming it), newest first."""
    query = select(Proposal).where(Proposal.subject == subject).order_by(Proposal.created_at.desc())
    async with sm() as session:
        rows = [_row(p) for p in (await session.execute(query.limit(500))).scalars()]
    newest: dict[tuple[str, str], ProposalRow] = {}
    for row in rows:
        newest.setdefault(family(row.target), row)
    return [row for row in newest.values() if is_open(row, run_id)]


def is_open(row: ProposalRow, run_id: str) -> bool:
    """Waiting for a decision, or approved by `run_id` (a retried approve run resumes it)."""
    return row.status == PROPOSED or (row.status == APPROVED and row.target.get("approved_by_run") == run_id)


async def get(sm: async_sessionmaker[AsyncSession], proposal_id: str) -> ProposalRow | None:
    async with sm() as session:
        found = (
            await session.execute(select(Proposal).where(Proposal.id == proposal_id))
        ).scalar_one_or_none()
    return _row(found) if found else None


async def move(sm: async_sessionmaker[AsyncSession], proposal_id: str, old: str, new: str) -> bool:
    """Compare-and-set the status; False if someone else moved it first (two concurrent /approve)."""
    async with sm.begin() as session:
        result = await session.execute(
            update(Proposal)
            .where(Proposal.id == proposal_id, Proposal.status == old)
            .values(status=new, updated_at=utcnow())
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def approve(sm: async_sessionmaker[AsyncSession], proposal_id: str, run_id: str) -> bool:
    """proposed → approved by compare-and-set, remembering which run ships it (so a retry resumes)."""
    async with sm.begin() as session:
        proposal = (
            await session.execute(select(Proposal).where(Proposal.id == proposal_id).with_for_update())
        ).scalar_one_or_none()
        if proposal is None:
            return False
        if proposal.status == APPROVED and proposal.target.get("approved_by_run") == run_id:
            return True
        result = await session.execute(
            update(Proposal)
            .where(Proposal.id == proposal_id, Proposal.status == PROPOSED)
            .values(
                status=APPROVED, target={**proposal.target, "approved_by_run": run_id}, updated_at=utcnow()
            )
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]
