"""Proposals: what a run offers for approval, bound to a commit SHA, moved by compare-and-set."""

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
    """Record a proposal (once per run and SHA) and mark the subject's older open proposals stale."""
    async with sm.begin() as session:
        same = await session.execute(select(Proposal).where(Proposal.run_id == run_id, Proposal.sha == sha))
        existing = same.scalar_one_or_none()
        if existing is not None:
            return _row(existing)
        await session.execute(
            update(Proposal)
            .where(Proposal.subject == subject, Proposal.status == PROPOSED)
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
