"""Proposals of wiki pages: what the learning loop (`learn.py`) and the architecture step (`design.py`)
offer on a ticket, and what `/approve` does with them (`ship.py` hands them here).

A knowledge proposal is an ordinary proposal row (`proposals.target["kind"] == "knowledge"`) whose target
holds the pages exactly as they will land (redacted before they are stored), and its comment shows every
page whole — path, status, modules, source and full text, each text in a Jira `{expand}` section — so
`/approve` lands what people could read. A page too long to be shown whole in one Jira comment is not
proposed (the comment names it and says why). `/approve` runs the same checks as for a code proposal
(the latest of its family here, the approver's rights from config/projects.yaml, compare-and-set), then
one wiki commit per proposal, exactly once through the effect ledger. A wiki that cannot be written is
retried by the worker (the same approve run resumes); when the tries run out, or the pages cannot land,
the proposal is open again and the approver is told why. An ADR never takes the path of another
decision's page (checked when drafted and again when it lands). Facts an agent drew land `inferred`
(the comment says so, and `/verify <page>` promotes one); an ADR lands `verified` because a person
approved it explicitly, after the comment said so.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ValidationError

from bot.clients.retry import RetryableError, exactly_once
from bot.effects import JIRA_MARKER_TEXT
from bot.git.errors import GitError, LockTimeout
from bot.knowledge import Page, PageError, WikiError
from bot.knowledge.pages import MAX_MODULES, MAX_TITLE_CHARS, check_module
from bot.redact import Redactor
from bot.store import proposals, runs, status
from bot.store.proposals import ProposalRow
from bot.store.runs import RunRow
from orchestrators import Outcome
from orchestrators.ports import Knowledge
from orchestrators.proposal import JIRA_MAX_CHARS, block, code, collapsible, inline
from orchestrators.resources import WorkerContext
from orchestrators.venue import author_of, refuse

KNOWLEDGE = "knowledge"  # `proposal.target["kind"]` of a proposal of wiki pages
Origin = Literal["learn", "design"]
COMMENT_BUDGET = JIRA_MAX_CHARS - 2_000  # room left for the header, the replies and the marker
WIKI_DOWN = (WikiError, GitError, LockTimeout)  # worth trying again: the remote, a refused push, the lock
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


class NothingShowable(ValueError):
    """No proposed page can be shown whole in one Jira comment, so nothing is proposed."""


class PathTaken(ValueError):
    """An ADR's path holds another decision's page now (it was free when the ADR was drafted)."""


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


def _page_section(number: int, page: Page, replaces: bool) -> str:
    modules = ", ".join(code(m, "jira", 300) for m in page.modules) or "none (applies everywhere)"
    where = "Replaces the page now at" if replaces else "A new page at"
    text = collapsible(
        f"The page's text ({len(page.body):,} characters)", block(page.body or "(no text)", "jira"), "jira"
    )
    return "\n".join(
        [
            f"h4. {number}. {page.kind}: {inline(page.title, 'jira', MAX_TITLE_CHARS)}",
            f"{where} {code(page.path, 'jira')} · lands as *{page.status}* · modules {modules} · source "
            f"{inline(page.source, 'jira', 300)}",
            text,
        ]
    )


def fitting(
    origin: Origin, pages: Sequence[Page], replaced: frozenset[str] = frozenset()
) -> tuple[list[Page], list[Page]]:
    """(the pages whose whole text fits in the proposal comment, in order; the pages that do not)."""
    used = len(HEADERS[origin]) + len(NEXT[origin]) + 600  # the header's fields, the note on left-out pages
    shown: list[Page] = []
    left_out: list[Page] = []
    for number, page in enumerate(pages, 1):
        size = len(_page_section(number, page, page.path in replaced))
        if used + size > COMMENT_BUDGET:
            left_out.append(page)
            continue
        shown.append(page)
        used += size
    return shown, left_out


def render(
    proposal_id: str,
    origin: Origin,
    key: str,
    ref: str,
    pages: Sequence[Page],
    *,
    left_out: Sequence[Page] = (),
    replaced: frozenset[str] = frozenset(),
) -> str:
    """The proposal comment (Jira wiki markup): every page whole — its path (and whether it replaces a page
    there), status, modules, source and full text — every untrusted piece escaped or fenced; `left_out`
    pages (too long to show whole, so not proposed) are named with the reason. Quoted text that looks like
    Baton's Jira marker (`baton.effect=`) is broken up, so only the marker added when the comment is
    posted identifies it."""
    header = HEADERS[origin].format(
        id=proposal_id, ref=inline(ref, "jira", 200), key=inline(key, "jira", 40), count=len(pages)
    )
    parts = [header]
    parts += [_page_section(n, page, page.path in replaced) for n, page in enumerate(pages, 1)]
    if left_out:
        names = ", ".join(code(p.path, "jira") for p in left_out[:20])
        parts.append(
            f"Not proposed: {names} — too long to show whole in one Jira comment "
            f"(at most {COMMENT_BUDGET:,} characters in all), and nothing lands that you could not read here."
        )
    parts.append(NEXT[origin])
    return _NO_MARKER_RE.sub(lambda m: m.group(0)[:-1] + _ZWSP + "=", "\n\n".join(parts))


def redacted(pages: Sequence[Page], redactor: Redactor) -> list[Page]:
    """The pages with secrets masked in their title, source and text (the proposal's target is stored
    unredacted and lands in the wiki as it is)."""
    return [
        Page.model_validate(
            {
                **page.model_dump(),
                "title": redactor.redact(page.title),
                "source": redactor.redact(page.source),
                "body": redactor.redact(page.body),
            }
        )
        for page in pages
    ]


async def held_paths(knowledge: Knowledge, pages: Sequence[Page]) -> frozenset[str]:
    """The pages' paths that already hold a page in the wiki (an unreadable wiki: none known)."""
    held: set[str] = set()
    for page in pages:
        try:
            if await knowledge.wiki.get(page.path) is not None:
                held.add(page.path)
        except Exception:  # noqa: S112 - only what the comment says; land() reads the wiki again
            continue
    return frozenset(held)


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
    """Record the pages (redacted; those that can be shown whole) as the ticket's latest proposal of
    their family (once per run and content while it is open) and post it there. NothingShowable when no
    page can be shown whole."""
    if not pages:
        raise ValueError("a knowledge proposal needs at least one page")
    clients = wctx.need_clients()
    cleaned = redacted(pages, Redactor.from_settings(wctx.settings))
    replaced = await held_paths(clients.knowledge, cleaned)
    shown, left_out = fitting(origin, cleaned, replaced)
    if not shown:
        sizes = ", ".join(f"{p.path} ({len(p.body):,} characters)" for p in left_out[:5])
        raise NothingShowable(
            f"no page can be shown whole in one Jira comment (at most {COMMENT_BUDGET:,} characters): {sizes}"
        )
    content = digest(shown)
    target: dict[str, Any] = {
        "kind": KNOWLEDGE,
        "origin": origin,
        "issue_key": key,
        "project_path": project_path,
        "ref": ref,
        "pages": [page.model_dump(mode="json") for page in shown],
    }
    proposal = await proposals.create(wctx.sm, run.id, f"jira:{key}", content[:40], content, target)
    text = render(proposal.id, origin, key, ref, shown, left_out=left_out, replaced=replaced)
    await clients.jira.add_comment(key, text, f"run:{run.id}:knowledge:{proposal.id}", run_id=run.id)
    return proposal


async def _unclaimed_paths(knowledge: Knowledge, pages: Sequence[Page]) -> None:
    """PathTaken when an ADR's path holds another decision's page (another `source`) by now."""
    for page in pages:
        if page.kind != "decision":
            continue
        held = await knowledge.wiki.get(page.path)
        if held is not None and held.source != page.source:
            raise PathTaken(
                f"{page.path} now holds another decision, {held.title!r} (from {held.source}); "
                "landing this one would overwrite it"
            )


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
        await _unclaimed_paths(clients.knowledge, pages)
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


async def approved(wctx: WorkerContext, run: RunRow, proposal: ProposalRow) -> Outcome:
    """Land an approved knowledge proposal. A wiki that cannot be written now is retried by the worker
    (RetryableError: the same run resumes this proposal); on the last try, or when the pages cannot land
    (invalid, or an ADR's path taken), the proposal is open again and the approver is told why."""
    try:
        sha = await land(wctx, run, proposal)
    except WIKI_DOWN as exc:
        if run.attempts < max(wctx.settings.max_run_attempts, 1):
            raise RetryableError(f"the team's wiki could not be written: {exc}") from exc
        why = f"the team's wiki could not be written after {run.attempts} tries ({type(exc).__name__}: {exc})"
        return await _reopened(wctx, run, proposal, why, "Reply /approve to try again later, or /reject.")
    except (ProposedPagesError, PageError) as exc:
        return await _reopened(
            wctx, run, proposal, f"its pages cannot land: {exc}", "Reply /reject to drop it."
        )
    except PathTaken as exc:
        return await _reopened(
            wctx, run, proposal, str(exc), "Reply /revise <note> to redraft it at a free path, or /reject."
        )
    return Outcome(status.SUCCEEDED, f"landed proposal {proposal.id} in the wiki {sha[:12]}".rstrip())


async def _reopened(
    wctx: WorkerContext, run: RunRow, proposal: ProposalRow, why: str, what_next: str
) -> Outcome:
    await proposals.move(wctx.sm, proposal.id, proposals.APPROVED, proposals.PROPOSED)
    return await refuse(
        wctx, run, "/approve", f"proposal {proposal.id} did not land: {why}."[:480], what_next
    )
