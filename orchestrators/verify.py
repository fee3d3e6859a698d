"""`/verify <page>`: a person confirms a wiki page, which becomes `verified` (once, through the ledger).

Briefs and reviews show every fact with its status; agent-written facts arrive `inferred` and stay so
until someone who may use `/verify` confirms them. A verified page changes the briefs and reviews of
every project, so on Jira only the people who may `/approve` on the ticket's project (config/projects.yaml
`approvers`) may use it; in a merge request, members with the access config/skills.yaml asks for (or the
users it names). The reply goes where the command was typed; an unknown page is refused with the
closest page names.
"""

from __future__ import annotations

import difflib
import re

from bot.clients.retry import RetryableError, exactly_once
from bot.knowledge import STATUSES, Page, PageError
from bot.store import status
from bot.store.runs import RunRow
from orchestrators import Outcome, approval
from orchestrators.ports import Knowledge
from orchestrators.proposal import Flavor, code, inline
from orchestrators.resources import WorkerContext
from orchestrators.venue import JiraTicket, args_of, author_of, flavor, refuse, respond, venue_of

COMMAND = "/verify"
EXAMPLE = "/verify pitfalls/retry-after.md"
CLOSE_MATCHES = 3
SEARCH_LIMIT = 20
_WIKI_PREFIX_RE = re.compile(r"^(?:\./|/)*(?:wiki/)?")


def page_name(args: str) -> str:
    """The page path a person typed: its first word, without quotes, `./` or `wiki/`; `.md` added."""
    words = args.split()
    if not words:
        return ""
    name = _WIKI_PREFIX_RE.sub("", words[0].strip("`'\"<>[](){}"))
    return name if not name or name.endswith(".md") else f"{name}.md"


def effect_key(run: RunRow) -> str:
    """The ledger key of this run's one verification."""
    return f"run:{run.id}:verify"


async def close_matches(knowledge: Knowledge, name: str) -> list[str]:
    """Up to CLOSE_MATCHES page paths like `name`: found by search, ordered by how alike the names are."""
    words = " ".join(re.split(r"[^A-Za-z0-9]+", name.removesuffix(".md")))
    try:
        hits = await knowledge.search(words, limit=SEARCH_LIMIT)
    except Exception:
        return []
    paths = list(dict.fromkeys(hit.page.path for hit in hits))
    alike = difflib.get_close_matches(name, paths, n=CLOSE_MATCHES, cutoff=0.0)
    return alike[:CLOSE_MATCHES]


def _listed(paths: list[str], shown: Flavor) -> str:
    return ", ".join(code(p, shown, 200) for p in paths)


async def _unknown(wctx: WorkerContext, run: RunRow, name: str) -> Outcome:
    matches = await close_matches(wctx.need_clients().knowledge, name)
    reason = f"there is no page `{name}` in the team's wiki."
    what_next = (
        f"Close matches: {', '.join(f'`{m}`' for m in matches)}."
        if matches
        else "No page name is close to it; page names look like `decisions/0001-use-decimal.md`."
    )
    return await refuse(wctx, run, COMMAND, reason, what_next)


def _done_text(page: Page, was: str, shown: Flavor) -> str:
    before = f" (it was {code(was, shown, 20)})" if was in STATUSES and was != "verified" else ""
    return (
        f"Verified {code(page.path, shown, 200)}: {inline(page.title, shown, 200)} is now "
        f"{code('verified', shown)}{before}. Briefs and reviews for its modules show it as verified "
        "from now on."
    )


async def _verify(wctx: WorkerContext, run: RunRow, page: Page) -> str:
    """Promote the page once per run; the status it had before ("adopted" when an earlier attempt of
    this run did it and its answer was lost)."""
    clients = wctx.need_clients()
    knowledge, path = clients.knowledge, page.path

    async def find() -> str | None:
        current = await knowledge.wiki.get(path)
        return "adopted" if current is not None and current.status == "verified" else None

    async def post() -> str:
        await knowledge.verify(path, author_of(run).called())
        return page.status

    return await exactly_once(
        clients.ledger, effect_key(run), "wiki.verify", find=find, post=post, run_id=run.id
    )


async def not_an_approver(wctx: WorkerContext, run: RunRow) -> str | None:
    """Why the author may not /verify on this Jira ticket (None: they may; a merge request thread is left
    to the skill's GitLab access check, done by the worker before this runs)."""
    venue = venue_of(run)
    if not isinstance(venue, JiraTicket):
        return None
    clients = wctx.need_clients()
    project = clients.projects.for_jira(venue.issue.rsplit("-", 1)[0])
    if project is None:
        return (
            f"the Jira project of {venue.issue} is not in the project mapping, so nobody may verify from it."
        )
    refused = await approval.refusal(clients.jira, wctx.settings, project, author_of(run), None)
    if refused is None:
        return None
    return f"{refused} A verified page changes every project's briefs and reviews: /verify takes an approver."


async def run_verify(wctx: WorkerContext, run: RunRow) -> Outcome:
    """`/verify <page>`: the page becomes `verified` (exactly once) and the person is told so here."""
    clients, name = wctx.need_clients(), page_name(args_of(run))
    refused = await not_an_approver(wctx, run)
    if refused:
        return await refuse(wctx, run, COMMAND, refused)
    if not name:
        return await refuse(wctx, run, COMMAND, "say which page to verify.", f"For example: `{EXAMPLE}`")
    try:
        page = await clients.knowledge.wiki.get(name)
    except PageError as exc:
        return await refuse(
            wctx, run, COMMAND, f"that is not a page of the wiki: {exc}", f"For example: `{EXAMPLE}`"
        )
    except Exception as exc:
        return await refuse(wctx, run, COMMAND, f"the team's wiki is unavailable ({type(exc).__name__}).")
    if page is None:
        return await _unknown(wctx, run, name)
    shown = flavor(run)
    if page.status == "verified" and await clients.ledger.get(effect_key(run)) is None:
        text = f"{code(page.path, shown, 200)} is already {code('verified', shown)}; nothing changed."
        await respond(wctx, run, COMMAND, text)
        return Outcome(status.SUCCEEDED, f"{page.path} was already verified")
    try:
        was = await _verify(wctx, run, page)
    except RetryableError:
        raise  # the worker tries the run again later; the ledger keeps the write to once
    except Exception as exc:
        why = f"the team's wiki could not be written ({type(exc).__name__})."
        return await refuse(wctx, run, COMMAND, why, f"Reply `{COMMAND} {page.path}` to try again.")
    await respond(wctx, run, COMMAND, _done_text(page, was, shown))
    return Outcome(status.SUCCEEDED, f"verified {page.path}")
