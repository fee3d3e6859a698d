"""Pure text of a multi-repository ticket: the plan proposal, a task's brief (with what the tasks it depends
on did), the live graph (/status, baton show), the one proposal over every repository, the MR links."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrators.brief import fence
from orchestrators.proposal import block, code, collapsible, inline
from orchestrators.taskgraph import Plan, TaskSpec
from orchestrators.verdicts import Verdict

TASK_MARKER = "Baton task: {task} in {repository}"
PLAN_MARKER = "Baton plan for {key}"
REVIEW_MARKER = "Baton review of the task graph for {key}"
DIFF_SHOWN = 6000
_DEFINITION_RE = re.compile(
    r"^([+-])\s*((?:async\s+)?def\s+\w+\s*\([^)]*\)?[^:]*|class\s+\w+[^:]*|export\s+[\w\s]+?\w+\s*[(=:{]"
    r"|func\s+\w+[^{]*|(?:pub\s+)?fn\s+\w+[^{]*)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class TaskResult:
    """What a finished task hands to the tasks that depend on it (and to the final proposal)."""

    task_id: str
    repository: str
    goal: str
    files: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    summary: str = ""


@dataclass(frozen=True)
class TaskLine:
    """One row of the live graph."""

    task_id: str
    repository: str
    status: str
    depends_on: tuple[str, ...] = ()
    duration_s: float | None = None
    cost_usd: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class RepoChange:
    """One repository's part of the final proposal."""

    task_id: str
    repository: str
    branch: str
    sha: str
    files: tuple[tuple[str, int | None, int | None], ...]
    checks: tuple[str, ...]
    diff: str
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class GraphProposal:
    proposal_id: str
    key: str
    changes: tuple[RepoChange, ...]
    verdict: Verdict | None
    cost_usd: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)


def interfaces(diff: str, limit: int = 30) -> tuple[str, ...]:
    """The definitions a diff adds or removes (`+ def f(a, b)`, `- class C`), in order, at most `limit`."""
    found: list[str] = []
    for sign, text in _DEFINITION_RE.findall(diff):
        line = f"{'added' if sign == '+' else 'removed'}: {' '.join(text.split())[:160]}"
        if line not in found:
            found.append(line)
    return tuple(found[:limit])


def _task_line(task: TaskSpec) -> str:
    needs = ", ".join(task.depends_on) or "nothing"
    criteria = "; ".join(task.acceptance) or "(none given)"
    return (
        f"| {inline(task.id, 'jira', 20)} | {inline(task.repository, 'jira', 120)} | "
        f"{inline(task.goal, 'jira', 400)} | {inline(criteria, 'jira', 600)} | {inline(needs, 'jira', 120)} |"
    )


def render_plan(key: str, plan: Plan, proposal_id: str) -> str:
    """The plan proposal on the ticket, before any code is written."""
    rows = "\n".join(_task_line(t) for t in plan.tasks)
    return (
        f"h3. Baton's plan for {key}: {len(plan.tasks)} tasks in "
        f"{len({t.repository for t in plan.tasks})} repositories\n\n"
        f"*Plan* {{{{{proposal_id}}}}}. Nothing is written until you approve. Tasks run in parallel "
        "where nothing they depend on is unfinished; each task's brief carries what the tasks it depends "
        "on did.\n\n"
        f"|| task || repository || goal || acceptance || depends on ||\n{rows}\n\n"
        f"Reply */approve {proposal_id}* to start it, */revise <what to change>* to plan again, */reject* to "
        "drop it."
    )


def task_brief(
    key: str,
    task: TaskSpec,
    upstream: Sequence[TaskResult],
    ticket_brief: str,
    attempt: int,
    review_notes: Sequence[str] = (),
) -> str:
    """A task's brief: the marker line, its goal and acceptance, the results of the tasks it depends on
    (interfaces, files, decisions; as data), then the ticket's brief."""
    marker = TASK_MARKER.format(task=task.id, repository=task.repository)
    head = marker + (f" (attempt {attempt})" if attempt > 1 else "")
    criteria = "\n".join(f"- {c}" for c in task.acceptance) or "- (none given)"
    parts = [
        head,
        f"## Your task ({task.id}) in {task.repository}, part of {key}\n\n{fence(task.goal)}\n\n"
        f"Acceptance:\n{fence(criteria)}\n\nChange only this repository; other tasks change the others.",
    ]
    if upstream:
        parts.append(
            "## Results of the tasks this one depends on\n\nThese are done (not yet merged); build on their "
            "interfaces as they are.\n\n" + "\n\n".join(_result(r) for r in upstream)
        )
    if review_notes:
        parts.append(
            "## What the cross-repository review found last time\n\nFix what concerns this repository.\n\n"
            + fence("\n".join(f"- {note}" for note in review_notes))
        )
    parts.append(ticket_brief)
    return "\n\n".join(parts)


MAX_FILES = 40
"""At most this many of a dependency's files are named in a brief (a big change names the rest by count)."""


def _files(files: Sequence[str]) -> str:
    named = [f[:200] for f in files[:MAX_FILES]]
    more = f" and {len(files) - MAX_FILES} more" if len(files) > MAX_FILES else ""
    return (", ".join(named) or "(none)") + more


def _result(result: TaskResult) -> str:
    lines = [
        f"Task {result.task_id} in {result.repository}: {result.goal[:300]}",
        "Interfaces changed:",
        *(f"  {i}" for i in result.interfaces or ("(none detected)",)),
        "Files touched: " + _files(result.files),
        "Decisions (the implementer's summary):",
        result.summary[:1500] or "(none given)",
    ]
    return f"### Task {result.task_id} ({result.repository})\n\n" + fence("\n".join(lines))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def render_graph(lines: Sequence[TaskLine], flavor: str = "jira") -> str:
    """The live graph: task, repository, status, duration, cost (and why a task failed)."""
    if flavor == "text":
        rows = [f"{'task':<8} {'repository':<28} {'status':<8} {'needs':<12} {'duration':>9} {'cost':>9}"]
        rows += [
            f"{t.task_id:<8} {t.repository[:28]:<28} {t.status:<8} {','.join(t.depends_on)[:12]:<12} "
            f"{_duration(t.duration_s):>9} {f'${t.cost_usd:.4f}':>9}"
            + (f"  {t.error[:120]}" if t.error else "")
            for t in lines
        ]
        return "\n".join(rows)
    body = "\n".join(
        f"| {inline(t.task_id, 'jira', 20)} | {inline(t.repository, 'jira', 120)} | {t.status} | "
        f"{inline(', '.join(t.depends_on) or '-', 'jira', 80)} | {_duration(t.duration_s)} | "
        f"${t.cost_usd:.4f} |"
        f" {inline(t.error or '', 'jira', 200) or ' '} |"
        for t in lines
    )
    return f"|| task || repository || status || depends on || duration || cost || note ||\n{body}"


def review_prompt(
    key: str, ticket_brief: str, changes: Sequence[RepoChange], specs: Sequence[TaskSpec]
) -> str:
    """The cross-repository reviewer's prompt: every repository's diff together, in dependency order."""
    goals = {t.id: t for t in specs}
    sections = []
    for change in changes:
        spec = goals.get(change.task_id)
        needs = ", ".join(change.depends_on) or "nothing"
        sections.append(
            f"## Task {change.task_id}: {change.repository} (depends on {needs})\n\n"
            + (fence(spec.goal) + "\n\n" if spec else "")
            + "Checks:\n"
            + fence("\n".join(change.checks) or "no checks declared")
            + "\n\nDiff:\n"
            + fence(change.diff[:40_000] or "(empty diff)", "diff")
        )
    return "\n\n".join(
        [
            f"[baton:review] {key}",
            REVIEW_MARKER.format(key=key),
            "You are Baton's reviewer for a change that spans several repositories. You may read but change "
            "nothing. Review the diffs below together: each against its task, and above all the contracts "
            "between them. Where a repository uses what another one changed (a function, its parameters, "
            "a field, a return value), check that both sides agree. A mismatch between repositories is a "
            "blocker naming both. Answer only through the StructuredOutput tool: approve, blockers, "
            "suggestions, scope_creep, summary.",
            ticket_brief,
            *sections,
        ]
    )


def _files_line(files: Sequence[tuple[str, int | None, int | None]]) -> str:
    shown = [
        f"{inline(p, 'jira', 120)} (+{a if a is not None else '?'} -{d if d is not None else '?'})"
        for p, a, d in files[:30]
    ]
    more = f" and {len(files) - 30} more" if len(files) > 30 else ""
    return ", ".join(shown) + more or "(no files)"


def render_graph_proposal(p: GraphProposal) -> str:
    """One proposal over every repository: per repository its files, checks and diff; the review."""
    parts = [
        f"h3. Baton's proposal for {p.key}: {len(p.changes)} repositories",
        f"*Proposal* {{{{{p.proposal_id}}}}}. Approving opens one merge request per repository, each linking "
        "the others and this ticket.",
    ]
    for change in p.changes:
        needs = ", ".join(change.depends_on) or "nothing"
        parts.append(
            f"h4. {inline(change.task_id, 'jira', 20)}: {inline(change.repository, 'jira', 120)} "
            f"(commit {{{{{change.sha[:12]}}}}}, depends on {inline(needs, 'jira', 80)})\n"
            f"Files: {_files_line(change.files)}\n"
            + collapsible("Checks", block("\n".join(change.checks) or "no checks declared", "jira"), "jira")
            + "\n"
            + collapsible("Diff", block(change.diff[:DIFF_SHOWN] or "(empty diff)", "jira", "diff"), "jira")
        )
    parts.append(_verdict(p.verdict))
    parts.extend(inline(n, "jira", 500) for n in p.notes)
    parts.append(f"Cost so far: ${p.cost_usd:.4f}.")
    parts.append(
        f"Reply */approve {p.proposal_id}* to open the merge requests, */retry <task>* to redo one task, "
        "*/reject* to drop it."
    )
    return "\n\n".join(parts)


def _verdict(verdict: Verdict | None) -> str:
    if verdict is None:
        return "*Review:* none."
    head = "approves" if verdict.passes else "found blockers"
    lines = [f"*Cross-repository review:* {head}. {inline(verdict.summary, 'jira', 800)}"]
    lines += [f"* blocker: {inline(b.text, 'jira', 400)}" for b in verdict.blockers or []]
    lines += [f"* suggestion: {inline(s.text, 'jira', 400)}" for s in verdict.suggestions or []]
    return "\n".join(lines)


def mr_description(
    key: str, jira_url: str, task: TaskSpec, others: Sequence[tuple[str, str]], proposal_id: str
) -> str:
    """A merge request's description: the ticket, its task, and the other repositories' branches."""
    listed = "\n".join(
        f"- {inline(repo, 'gitlab', 255)} (branch {code(branch, 'gitlab', 255)})" for repo, branch in others
    )
    goal = inline(task.goal, "gitlab", 500)  # one line, escaped: no quick action, no mention
    return (
        f"Implements task {task.id} of [{key}]({jira_url.rstrip('/')}/browse/{key}): {goal}\n\n"
        f"Part of one change across {len(others) + 1} repositories (Baton proposal `{proposal_id}`); the "
        f"others:\n{listed}\n\nThe merge requests of the others are linked in a note below once all are open."
    )


def mr_links(key: str, jira_url: str, mine: str, links: Sequence[tuple[str, str, str]]) -> str:
    """The note on each merge request linking the others (repository, task, URL) and the ticket."""
    others = "\n".join(f"- task {task}: {repo} {url}" for task, repo, url in links if repo != mine)
    return (
        f"This merge request is one of {len(links)} for [{key}]({jira_url.rstrip('/')}/browse/{key}). "
        f"Merge them together:\n{others}"
    )
