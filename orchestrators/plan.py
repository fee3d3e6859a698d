"""A ticket that spans several repositories: plan → propose the plan → (tasks run: orchestrators/graph.py)
→ review every repository's diff together → one proposal. The `implement` run of such a ticket runs this
workflow instead of the one-repository phases (`is_graph_ticket`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bot.clients.jira import JiraIssue
from bot.git.branch import branch_name
from bot.repo_config import RepoConfig, read_repo_config
from bot.store import proposals, status, tasks
from bot.store.runs import RunRow
from config.projects import Project
from orchestrators import Outcome, agents, budget, progress
from orchestrators.brief import build_brief, fence
from orchestrators.engine import PhaseContext, PhaseFailed, PhaseResult, Workflow, execute, states
from orchestrators.graph_render import (
    PLAN_MARKER,
    GraphProposal,
    RepoChange,
    render_graph_proposal,
    render_plan,
    review_prompt,
)
from orchestrators.proposal import render_failure
from orchestrators.resources import Clients, WorkerContext
from orchestrators.taskgraph import DONE, Plan, PlanAnswer, PlanRefused, TaskSpec, order, parse_plan
from orchestrators.ticket import comments, linked, ticket_info
from orchestrators.verdicts import Verdict

PLAN_TEXT = """You are Baton's planner. The ticket below needs changes in several repositories (listed
after it, each with its README and module map). Split the work into tasks: one repository per task and
one task per repository, a goal, acceptance criteria, and the tasks it depends on (a task that uses what
another changes depends on it). Use only the repositories listed. At most 12 tasks. Answer only through
the StructuredOutput tool:
{"tasks": [{"id": "A", "repository": "group/name", "goal": "...", "acceptance": ["..."],
"depends_on": []}]}"""
README_CHARS = 3000


def mapped(clients: Clients, issue: JiraIssue) -> list[Project]:
    """The configured repositories for the ticket's components (several: a multi-repository ticket); two
    components of one repository count once (the first entry's settings)."""
    found = clients.projects.all_for_jira(issue.project_key, issue.components)
    first: dict[str, Project] = {}
    for project in found:
        first.setdefault(project.gitlab_project.casefold(), project)
    return list(first.values())


async def is_graph_run(wctx: WorkerContext, run_id: str) -> bool:
    """The run is (or was) planned as a task graph."""
    return any(p.name == "plan" for p in await states(wctx.sm, WORKFLOW, run_id))


async def is_graph_ticket(wctx: WorkerContext, run: RunRow) -> bool:
    """This `implement` run works as a task graph: it was planned as one, or it has not started the
    one-repository phases and its ticket maps to several repositories."""
    if await is_graph_run(wctx, run.id):
        return True
    from orchestrators.implement import WORKFLOW as SINGLE  # the one-repository phases

    if any(p.attempts for p in await states(wctx.sm, SINGLE, run.id)):
        return False
    clients = wctx.need_clients()
    issue = await clients.jira.issue(progress.issue_key(run))
    return len(mapped(clients, issue)) > 1


async def _repository(clients: Clients, run_id: str, index: int, project: Project) -> dict[str, Any]:
    """A repository as the planner sees it (README, module map) and as tasks need it (URL, branch)."""
    found = await clients.gitlab.project(project.gitlab_project)
    repo_id = found.path_with_namespace
    target = project.target_branch or found.default_branch
    await clients.workspace.ensure_mirror(repo_id, found.http_url_to_repo, clients.gitlab_token)
    look = f"{run_id}-plan-{index}"
    worktree = await clients.workspace.create_worktree(
        repo_id, look, target, f"baton/plan-{run_id[:12]}-{index}"
    )
    try:
        readme = next(
            (worktree / n for n in ("README.md", "README.rst", "README") if (worktree / n).is_file()), None
        )
        text = (
            readme.read_text(encoding="utf-8", errors="replace")[:README_CHARS] if readme else "(no README)"
        )
        config_text, repo = read_repo_config(worktree)
    finally:
        await clients.workspace.remove_worktree(look)
    modules = {name: list(globs) for name, globs in repo.modules.items()}
    return {
        "path": repo_id, "project_id": found.id, "remote_url": found.http_url_to_repo,
        "target_branch": target, "readme": text, "modules": modules, "config": (config_text or "")[:1500],
    }  # fmt: skip


def _repo_section(repo: dict[str, Any]) -> str:
    modules = json.dumps(repo["modules"])[:1500] if repo["modules"] else "(no module map)"
    return f"### {repo['path']}\n\nREADME:\n{fence(repo['readme'])}\n\nModule map:\n{fence(modules)}"


async def _knowledge(clients: Clients, text: str) -> str:
    try:
        pages = await clients.knowledge.relevant(text, (), 1500)
    except Exception as exc:  # the plan goes on without the wiki, saying so
        return f"(team knowledge unavailable: {type(exc).__name__})"
    return "\n\n".join(fence(f"[{p.status}] {p.title}\n{p.body[:1200]}") for p in pages) or "(none found)"


async def plan(ctx: PhaseContext) -> PhaseResult:
    """The read-only planner returns a task graph over the ticket's repositories; Python checks it."""
    clients, run, key = ctx.wctx.need_clients(), ctx.run, progress.issue_key(ctx.run)
    issue = await clients.jira.issue(key)
    repos = [await _repository(clients, run.id, i, p) for i, p in enumerate(mapped(clients, issue))]
    ticket = ticket_info(issue, clients.jira.config.url)
    brief = build_brief(ticket, linked(issue), comments(issue), [], RepoConfig())
    notes = [f"A person asked for this change to the plan (/revise): {t}" for t in _revisions(run)]
    prompt = "\n\n".join(
        [
            f"[baton:plan] {key}",
            PLAN_MARKER.format(key=key),
            PLAN_TEXT,
            brief.markdown,
            "## Repositories you may use\n\n" + "\n\n".join(_repo_section(r) for r in repos),
            "## What the team knows\n\n"
            + await _knowledge(clients, f"{ticket.summary}\n{ticket.description}"),
            *(fence(n) for n in notes),
        ]
    )
    scratch = await agents.scratch_repo(ctx.wctx, run.id)
    result = await agents.call(ctx.wctx, "planner", prompt, scratch, output_model=PlanAnswer, run_id=run.id)
    try:
        checked = parse_plan(result.output(PlanAnswer).model_dump(), [r["path"] for r in repos])
    except PlanRefused as exc:  # the plan phase fails (charged its call): /retry plans again
        raise PlanUnusable(f"the plan could not be used: {exc}", agents.usage(result)) from None
    output = {
        "tasks": checked.dump(),
        "repositories": repos,
        "brief": brief.markdown,
        "summary": issue.summary,
    }
    return PhaseResult(output, **agents.usage(result))


class PlanUnusable(PhaseFailed):
    """The planner's answer is no usable task graph; carries the call's `usage` so the phase is charged."""

    def __init__(self, message: str, usage: dict[str, Any]) -> None:
        super().__init__(message)
        self.usage = usage


def _revisions(run: RunRow) -> tuple[str, ...]:
    return tuple(getattr(run.trigger, "revisions", ()) or ())


def planned(ctx: PhaseContext) -> dict[str, Any]:
    data = ctx.outputs.get("plan")
    if not data or "tasks" not in data:
        raise PhaseFailed("the plan phase has no task list; reply /retry")
    return dict(data)


def plan_of(data: dict[str, Any]) -> list[TaskSpec]:
    return [TaskSpec.model_validate(t) for t in data["tasks"]]


async def propose_plan(ctx: PhaseContext) -> PhaseResult:
    """The plan as a proposal on the ticket (bound to its content); the run waits for /approve."""
    clients, run, key = ctx.wctx.need_clients(), ctx.run, progress.issue_key(ctx.run)
    data = planned(ctx)
    checked = parse_plan({"tasks": data["tasks"]}, [r["path"] for r in data["repositories"]])
    digest = hashlib.sha256(json.dumps(checked.dump(), sort_keys=True).encode()).hexdigest()
    target = {
        "kind": "graph", "origin": "plan", "issue_key": key,
        "project_path": data["repositories"][0]["path"], "tasks": checked.dump(),
    }  # fmt: skip
    proposal = await proposals.create(ctx.wctx.sm, run.id, run.subject, digest, digest, target)
    await clients.jira.add_comment(
        key, render_plan(key, checked, proposal.id), f"run:{run.id}:plan:{digest[:12]}", run_id=run.id
    )
    stop = Outcome(status.WAITING, f"plan {proposal.id} posted on {key}; waiting for /approve")
    return PhaseResult({"proposal_id": proposal.id, "sha": digest}, stop=stop)


async def gate(ctx: PhaseContext) -> PhaseResult:
    """Go on only when every task is done (the scheduler reopens the run then); else wait."""
    rows = await tasks.of_graph(ctx.wctx.sm, ctx.run.id)
    if not rows or any(r.status != DONE for r in rows):
        return PhaseResult({"waiting": True}, stop=Outcome(status.WAITING, "waiting for the graph's tasks"))
    return PhaseResult({"tasks": {r.task_id: r.result for r in rows}})


def _changes(ctx: PhaseContext, specs: list[TaskSpec], diffs: dict[str, str]) -> list[RepoChange]:
    results = ctx.outputs["tasks"]["tasks"]
    by_id = {t.id: t for t in specs}
    changes = []
    for task_id in order(Plan(tuple(specs))):
        r = results[task_id]
        changes.append(
            RepoChange(
                task_id, r["project_path"], r["branch"], r["sha"],
                tuple((f[0], f[1], f[2]) for f in r.get("diffstat", [])), tuple(r.get("checks", [])),
                diffs.get(task_id, ""), by_id[task_id].depends_on,
            )
        )  # fmt: skip
    return changes


async def _diffs(clients: Clients, results: dict[str, Any]) -> dict[str, str]:
    return {
        task_id: await clients.workspace.diff(Path(r["worktree"]), r["base_sha"])
        for task_id, r in results.items()
    }


async def review(ctx: PhaseContext) -> PhaseResult:
    """One read-only reviewer sees every repository's diff together and checks the contracts between them."""
    clients, run, key = ctx.wctx.need_clients(), ctx.run, progress.issue_key(ctx.run)
    data = planned(ctx)
    specs = plan_of(data)
    changes = _changes(ctx, specs, await _diffs(clients, ctx.outputs["tasks"]["tasks"]))
    prompt = review_prompt(key, data["brief"], changes, specs)
    scratch = await agents.scratch_repo(ctx.wctx, run.id)
    result = await agents.call(ctx.wctx, "reviewer", prompt, scratch, output_model=Verdict, run_id=run.id)
    verdict = result.output(Verdict)
    return PhaseResult({"verdict": verdict.model_dump(mode="json")}, **agents.usage(result))


async def propose(ctx: PhaseContext) -> PhaseResult:
    """One proposal over every repository (diff, checks, review), bound to every task's commit."""
    clients, run, key = ctx.wctx.need_clients(), ctx.run, progress.issue_key(ctx.run)
    data, results = planned(ctx), ctx.outputs["tasks"]["tasks"]
    specs = plan_of(data)
    changes = _changes(ctx, specs, await _diffs(clients, results))
    digest = hashlib.sha256("\n".join(f"{c.task_id}:{c.sha}" for c in changes).encode()).hexdigest()
    shipped = [
        {"task_id": c.task_id, "repository": c.repository, "depends_on": list(c.depends_on),
         **{k: results[c.task_id][k] for k in ("worktree", "branch", "sha", "project_path", "project_id",
                                                "remote_url", "target_branch")},
         "goal": next(s.goal for s in specs if s.id == c.task_id)}
        for c in changes
    ]  # fmt: skip
    target = {"kind": "graph", "origin": "ship", "issue_key": key, "project_path": changes[0].repository,
              "tasks": shipped}  # fmt: skip
    proposal = await proposals.create(ctx.wctx.sm, run.id, run.subject, digest, digest, target)
    verdict = Verdict.model_validate(ctx.outputs["review"]["verdict"]) if "review" in ctx.outputs else None
    cost = sum(r.cost_usd for r in await tasks.of_graph(ctx.wctx.sm, run.id))
    cost += sum(p.cost_usd for p in await states(ctx.wctx.sm, WORKFLOW, run.id))
    text = render_graph_proposal(GraphProposal(proposal.id, key, tuple(changes), verdict, cost))
    await clients.jira.add_comment(key, text, f"run:{run.id}:proposal:{digest[:12]}", run_id=run.id)
    stop = Outcome(status.WAITING, f"proposal {proposal.id} over {len(changes)} repositories posted on {key}")
    return PhaseResult({"proposal_id": proposal.id, "sha": digest}, stop=stop)


WORKFLOW = Workflow(
    "graph",
    (
        ("plan", plan),
        ("propose_plan", propose_plan),
        ("tasks", gate),
        ("review", review),
        ("propose", propose),
    ),
    max_rounds=3,
)


def task_branch(key: str, task: TaskSpec) -> str:
    return branch_name(key, f"{task.id} {task.goal[:40]}")


async def run_graph(wctx: WorkerContext, run: RunRow) -> Outcome:
    """The parent run of a multi-repository ticket."""
    await progress.acknowledge(wctx, run)
    try:
        return await execute(WORKFLOW, wctx, run)
    except PhaseFailed as exc:
        step = budget.next_step(exc, "Reply /retry to run the failed phase again.")
        text = render_failure(str(exc)[:500], step, flavor="jira")
        await wctx.need_clients().jira.add_comment(
            progress.issue_key(run), text, f"run:{run.id}:failed", run_id=run.id
        )
        return Outcome(status.FAILED, str(exc))
