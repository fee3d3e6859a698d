"""Proposals of wiki pages: what the learning loop (`learn.py`) and the architecture step (`design.py`)
offer on a ticket, and what `/approve` does with them (`ship.py` hands them here).

A knowledge proposal is an ordinary proposal row (`proposals.target["kind"] == "knowledge"`) whose target
holds the pages exactly as they will land, so `/approve` lands what people read: the same checks as a code
proposal (the latest here, the approver's rights from config/projects.yaml, compare-and-set), then one
wiki commit per proposal, exactly once through the effect ledger. Facts an agent drew land `inferred`
(the comment says so, and `/verify <page>` promotes one); an ADR lands `verified` because a person
approved it explicitly, after the comment said so.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ValidationError

from bot.clients.retry import exactly_once
from bot.effects import JIRA_MARKER_TEXT
from bot.knowledge import Page, PageError
from bot.knowledge.pages import MAX_MODULES, MAX_TITLE_CHARS, check_module
from bot.store import proposals, runs, status
from bot.store.proposals import ProposalRow
from bot.store.runs import RunRow
from orchestrators.proposal import JIRA_MAX_CHARS, block, code, inline
from orchestrators.resources import WorkerContext
from orchestrators.venue import author_of

KNOWLEDGE = "knowledge"  # `proposal.target["kind"]` of a proposal of wiki pages
Origin = Literal["learn", "design"]
BODY_SHOWN = 2_500  # characters of each page shown in the comment (the page lands whole)
COMMENT_BUDGET = JIRA_MAX_CHARS - 2_000  # room left for the header, the replies and the marker
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_NO_MARKER_RE = re.compile(re.escape(JIRA_MARKER_TEXT), re.IGNORECASE)  # quoted text never passes for one
_ZWSP = "\u200b"

HEADERS: dict[Origin, str] = {
    "learn": (
        "📚 *Knowledge proposal {id}*: what Baton learned from {ref} on {key}. "
        "These {count} page(s) are drawn from the run's review findings, failed checks and the replies "
        "on this ticket; they land in the team's wiki tagged *inferred* (not confirmed by a person) "
        "until someone replies {{{{/verify <page>}}}}."
    ),
    "design": (
        "📐 *Architecture decision proposal {id}* for {key}: an ADR drafted by Baton's planner from this "
        "ticket. Approving it lands it in the team's wiki as *verified* (a person confirmed it), and later "
        "implementation and review briefs for its modules include it."
    ),
}
NEXT: dict[Origin, str] = {
    "learn": "To land these pages in the wiki, reply {{/approve}}; to drop them, reply {{/reject}}.",
    "design": (
        "To land this decision in the wiki, reply {{/approve}}; to change it, {{/revise <what to change>}}; "
        "to drop it, {{/reject}}."
    ),
}


class ProposedPagesError(ValueError):
    """A knowledge proposal whose stored pages do not validate (written by another version?)."""


def is_knowledge(proposal: ProposalRow) -> bool:
    return proposal.target.get("kind") == KNOWLEDGE


def pages_of(proposal: ProposalRow) -> list[Page]:
    """The pages a knowledge proposal will land, validated."""
    stored = proposal.target.get("pages")
    if not isinstance(stored, list) or not stored:
        raise ProposedPagesError(f"proposal {proposal.id} holds no pages")
    try:
        return [Page.model_validate(item) for item in stored]
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ProposedPagesError(f"proposal {proposal.id}: a stored page is invalid ({where})") from None


def title_of(text: str, limit: int = 120) -> str:
    """A page title from untrusted text: one line without control characters, at most `limit` characters."""
    flat = " ".join(_CONTROL_RE.sub(" ", text).split())
    limit = min(limit, MAX_TITLE_CHARS)
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def modules_of(paths: Sequence[str]) -> tuple[str, ...]:
    """The paths usable as a page's `modules` (relative paths or globs; anything else is left out)."""
    kept: list[str] = []
    for path in paths:
        try:
            module = check_module(path)
        except ValueError:
            continue
        if module not in kept:
            kept.append(module)
    return tuple(kept[:MAX_MODULES])


def digest(pages: Sequence[Page]) -> str:
    """A content hash of the pages (what the proposal is bound to, like a code proposal's SHA)."""
    hashed = hashlib.sha256()
    for page in pages:
        hashed.update(page.model_dump_json().encode())
        hashed.update(b"\0")
    return hashed.hexdigest()


def _page_section(number: int, page: Page) -> str:
    body = (
        page.body if len(page.body) <= BODY_SHOWN else page.body[:BODY_SHOWN] + "\n… (the whole page lands)"
    )
    modules = ", ".join(code(m, "jira", 120) for m in page.modules[:12]) or "none (applies everywhere)"
    more = f" and {len(page.modules) - 12} more" if len(page.modules) > 12 else ""
    return "\n".join(
        [
            f"h4. {number}. {page.kind}: {inline(page.title, 'jira', MAX_TITLE_CHARS)}",
            f"Page {code(page.path, 'jira')} · lands as *{page.status}* · modules {modules}{more} · "
            f"source {inline(page.source, 'jira', 200)}",
            block(body or "(no text)", "jira"),
        ]
    )


def render(proposal_id: str, origin: Origin, key: str, ref: str, pages: Sequence[Page]) -> str:
    """The proposal comment (Jira wiki markup): every page with its path, status, modules and text,
    every untrusted piece escaped or fenced; pages that do not fit are named, not dropped silently.
    Quoted text that looks like Baton's Jira marker (`baton.effect=`) is broken up, so only the marker
    added when the comment is posted identifies it."""
    header = HEADERS[origin].format(
        id=proposal_id, ref=inline(ref, "jira", 200), key=inline(key, "jira", 40), count=len(pages)
    )
    parts, used, left_out = [header], len(header), []
    for number, page in enumerate(pages, 1):
        section = _page_section(number, page)
        if used + len(section) > COMMENT_BUDGET:
            left_out.append(page)
            continue
        parts.append(section)
        used += len(section)
    if left_out:
        names = ", ".join(code(p.path, "jira") for p in left_out[:20])
        parts.append(f"Not shown for length (they land too): {names}.")
    parts.append(NEXT[origin])
    return _NO_MARKER_RE.sub(lambda m: m.group(0)[:-1] + _ZWSP + "=", "\n\n".join(parts))


async def propose(
    wctx: WorkerContext,
    run: RunRow,
    origin: Origin,
    key: str,
    pages: Sequence[Page],
    *,
    project_path: str,
    ref: str,
) -> ProposalRow:
    """Record the pages as the ticket's latest proposal (once per run and content) and post it there."""
    if not pages:
        raise ValueError("a knowledge proposal needs at least one page")
    content = digest(pages)
    target: dict[str, Any] = {
        "kind": KNOWLEDGE,
        "origin": origin,
        "issue_key": key,
        "project_path": project_path,
        "ref": ref,
        "pages": [page.model_dump(mode="json") for page in pages],
    }
    proposal = await proposals.create(wctx.sm, run.id, f"jira:{key}", content[:40], content, target)
    text = render(proposal.id, origin, key, ref, pages)
    await wctx.need_clients().jira.add_comment(
        key, text, f"run:{run.id}:knowledge:{content[:12]}", run_id=run.id
    )
    return proposal


async def land(wctx: WorkerContext, run: RunRow, proposal: ProposalRow) -> str:
    """`/approve` of a knowledge proposal (already moved to approved by compare-and-set): one wiki commit
    exactly once, a comment naming the pages, then the proposal is shipped and its run settled."""
    clients, pages = wctx.need_clients(), pages_of(proposal)
    key = str(proposal.target.get("issue_key") or run.subject.removeprefix("jira:"))
    approver = author_of(run).called()
    title = f"[{key}] {len(pages)} page(s) from {proposal.target.get('origin', 'a proposal')}"
    message = f"{title}\n\nBaton proposal {proposal.id}, approved by {approver} with /approve (run {run.id})."

    async def earlier() -> str | None:
        """An earlier job's write whose answer was lost: every page is in the wiki as proposed."""
        try:
            found = [await clients.knowledge.wiki.get(page.path) for page in pages]
        except PageError:  # a page there that does not parse: not ours; the write replaces it
            return None
        return "" if found == pages else None  # "": landed, the commit is not known any more

    async def write() -> str:
        return await clients.knowledge.land(pages, message)

    sha = await exactly_once(
        clients.ledger, f"proposal:{proposal.id}:wiki", "wiki", find=earlier, post=write, run_id=run.id
    )
    listed = "\n".join(f"* {code(p.path, 'jira')} ({p.kind}, *{p.status}*)" for p in pages)
    verify = "" if all(p.status == "verified" for p in pages) else (
        "\n\nInferred pages are shown to agents as unconfirmed; reply {{/verify <page>}} to confirm one."
    )  # fmt: skip
    commit = f" at commit {{{{{sha[:12]}}}}}" if sha else ""
    text = f"📚 Landed {len(pages)} page(s) in the wiki{commit}:\n{listed}{verify}"
    await clients.jira.add_comment(key, text, f"proposal:{proposal.id}:landed", run_id=run.id)
    await proposals.move(wctx.sm, proposal.id, proposals.APPROVED, proposals.SHIPPED)
    await runs.settle(wctx.sm, proposal.run_id, status.SUCCEEDED, "baton", f"landed in the wiki{commit}")
    return sha
