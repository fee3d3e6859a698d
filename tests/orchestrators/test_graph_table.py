"""The task graph's scheduler, /retry, /cancel, /reject and /approve on a real SQLite store with the port
fakes (orchestrators/graph.py, graph_ship.py, commands.py, cancel.py, ship.py): the cases an independent
review of #13 found wrong, each as the state the graph is in → the step → what the store and fakes show.

A graph here is the `implement` run of TES-41 (the recorded label delivery) with its plan recorded and its
tasks created, as `/approve` of the plan leaves it; task runs are finished the way the worker finishes
them, without running an agent.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import update

from bot.clients.gitlab import GitLabConflict, GitLabError, GitLabForbidden, GitLabNotFound
from bot.clients.jira import JiraIssue
from bot.git.errors import GitError, HeadMoved
from bot.store import proposals, runs, status, tasks
from bot.store.proposals import ProposalRow
from bot.store.tables import Phase, Run
from config.projects import Approvers, Project, ProjectMap
from orchestrators import graph, plan
from orchestrators.engine import PhaseContext, prepare, states
from orchestrators.resources import Clients
from tests.support.tables import (
    APPROVER,
    APPROVERS_GROUP,
    ISSUE,
    Table,
    jira_comment,
    labelled,
    seed_jira,
    table,
)

REPOS = ("demo/catalog", "demo/pricing", "demo/inventory", "demo/storefront")
SPECS = [
    {"id": "A", "repository": "demo/catalog", "goal": "a", "depends_on": []},
    {"id": "B", "repository": "demo/pricing", "goal": "b", "depends_on": []},
    {"id": "C", "repository": "demo/inventory", "goal": "c", "depends_on": []},
    {"id": "D", "repository": "demo/storefront", "goal": "d", "depends_on": ["A", "B", "C"]},
]


def projects(pricing_approvers: Approvers | None = None) -> ProjectMap:
    """TES's four repositories, approved by the usual group (pricing: as given)."""
    usual = Approvers(jira_groups=(APPROVERS_GROUP,))
    return ProjectMap(
        projects=tuple(
            Project(
                jira_project="TES", component=repo.split("/")[1], gitlab_project=repo,
                approvers=(pricing_approvers or usual) if repo == "demo/pricing" else usual,
            )
            for repo in REPOS
        )
    )  # fmt: skip


async def set_phase(t: Table, run_id: str, name: str, output: dict[str, Any], state: str = "done") -> None:
    async with t.sm.begin() as session:
        await session.execute(
            update(Phase)
            .where(Phase.run_id == run_id, Phase.name == name)
            .values(status=state, output=output)
        )


async def graph_run(t: Table, *, with_tasks: bool = True) -> str:
    """TES-41's run waiting on its tasks: plan and propose_plan done, the gate stopped to wait."""
    seed_jira(t)
    run_id = await labelled(t)
    await t.waiting(run_id, "waiting for the graph's tasks")
    await prepare(t.sm, plan.WORKFLOW, run_id)
    await set_phase(t, run_id, "plan", {"tasks": SPECS, "repositories": []})
    await set_phase(t, run_id, "propose_plan", {"proposal_id": "p", "sha": "s"})
    await set_phase(t, run_id, "tasks", {"waiting": True})
    if with_tasks:
        assert await tasks.create(t.sm, run_id, SPECS)
    return run_id


async def task_worktree(t: Table, index: int, run_id: str) -> Path:
    """A task run's worktree in its repository (`REPOS[index]`), as assemble leaves it."""
    repo, workspace = REPOS[index], t.fakes.workspace
    project = t.fakes.gitlab.add_project(repo, 900 + index)
    workspace.seed(project.http_url_to_repo, "main", {"README.md": f"{repo}\n"})
    await workspace.ensure_mirror(repo, project.http_url_to_repo, None)
    return await workspace.create_worktree(repo, run_id, "main", f"baton/TES-41-{index}")


async def by_id(t: Table, run_id: str) -> dict[str, tasks.TaskRow]:
    return {r.task_id: r for r in await tasks.of_graph(t.sm, run_id)}


async def ended(t: Table, run_id: str, new_status: str, message: str) -> None:
    """A task run finished by the worker itself (claimed, then its outcome), not by the task workflow."""
    assert await runs.claim(t.sm, run_id, "other-worker") is not None
    await runs.finish(t.sm, run_id, new_status, "other-worker", message)


async def all_done(t: Table, gid: str) -> None:
    await graph.advance(t.wctx, gid)
    for row in (await by_id(t, gid)).values():
        if row.run_id:
            await tasks.mark(t.sm, gid, [row.task_id], "done", result={"sha": "x"})
    await tasks.mark(t.sm, gid, ["D"], "done", result={"sha": "x"})


async def command(t: Table, text: str) -> str:
    """A reply on TES-41 by the approver, run as a worker job; what Baton answered."""
    t.fakes.jira.calls.clear()
    run_id = await t.deliver("jira", jira_comment(text, APPROVER))
    await t.job(run_id)
    said = [str(c[2]) for c in t.fakes.jira.calls if c[0] == "add_comment"]
    return said[-1] if said else ""


# --- 1, 12: a task whose run ended without the task hearing of it ---------------------------------


@pytest.mark.parametrize(
    "how",
    ["gave up after 5 tries: GitLab is unavailable", "gave up after 4 attempts without an outcome"],
)
async def test_a_task_whose_run_ended_unseen_is_failed_and_retry_runs_it(tmp_path: Path, how: str) -> None:
    async with table(tmp_path) as t:
        gid = await graph_run(t)
        await graph.advance(t.wctx, gid)
        first = await by_id(t, gid)
        assert [first[x].status for x in "ABCD"] == ["queued", "queued", "queued", "pending"]
        await ended(t, str(first["A"].run_id), status.FAILED, how)

        shown = await graph.status_text(t.wctx, await t.run(gid), "text")
        after = await by_id(t, gid)
        assert after["A"].status == "failed" and after["A"].error == how and how[:20] in shown
        said = await graph.retry(t.wctx, await t.run(gid), "A")
        assert said.startswith("Retrying task A"), said
        again = await by_id(t, gid)
        assert again["A"].status == "queued" and again["A"].run_id != first["A"].run_id
        assert again["A"].attempts == 2 and again["B"].run_id == first["B"].run_id


async def test_a_task_run_the_worker_gives_up_on_fails_its_task_and_blocks_its_dependants(
    tmp_path: Path,
) -> None:
    async with table(tmp_path) as t:
        gid = await graph_run(t)
        await graph.advance(t.wctx, gid)
        for x in "BC":
            await tasks.mark(t.sm, gid, [x], "done")
        a_run = str((await by_id(t, gid))["A"].run_id)
        async with t.sm.begin() as session:  # claimed (deferred, crashed) as often as the cap allows
            await session.execute(update(Run).where(Run.id == a_run).values(attempts=99))
        assert (await t.job(a_run)).status == status.FAILED
        after = await by_id(t, gid)
        assert after["A"].status == "failed" and "gave up after" in str(after["A"].error)
        assert after["D"].status == "blocked"


async def test_a_failure_is_recorded_before_the_worktree_is_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with table(tmp_path) as t:
        gid = await graph_run(t)
        await graph.advance(t.wctx, gid)
        row = (await by_id(t, gid))["A"]

        async def broken(run_id: str, *, keep_branch: bool = False) -> None:
            raise OSError("disk gone")

        monkeypatch.setattr(t.fakes.workspace, "remove_worktree", broken)
        with pytest.raises(OSError, match="disk gone"):
            await graph._failed(t.wctx, await t.run(str(row.run_id)), row, "implement failed")
        assert (await by_id(t, gid))["A"].status == "failed"


async def test_a_replayed_old_attempt_never_overwrites_the_current_one(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        gid = await graph_run(t)
        await graph.advance(t.wctx, gid)
        old = (await by_id(t, gid))["A"]
        await ended(t, str(old.run_id), status.FAILED, "validate failed")
        assert (await graph.retry(t.wctx, await t.run(gid), "A")).startswith("Retrying task A")
        await graph._failed(t.wctx, await t.run(str(old.run_id)), old, "the old attempt, replayed")
        now = (await by_id(t, gid))["A"]
        assert now.status == "queued" and now.run_id != old.run_id and now.error is None


# --- 10: reopening the parent -------------------------------------------------------------------------


async def test_the_last_task_done_reopens_the_parent_at_its_gate(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        gid = await graph_run(t)
        await all_done(t, gid)
        t.queue.jobs.clear()
        await graph.advance(t.wctx, gid)
        assert (await t.run(gid)).status == status.QUEUED and gid in t.queue.jobs
        gate = next(p for p in await states(t.sm, plan.WORKFLOW, gid) if p.name == "tasks")
        assert gate.status == "pending"


async def test_a_replayed_step_does_not_reopen_a_parent_waiting_on_its_final_proposal(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        gid = await graph_run(t)
        await all_done(t, gid)
        for name, output in (("tasks", {"tasks": {}}), ("review", {}), ("propose", {"proposal_id": "f"})):
            await set_phase(t, gid, name, output)
        t.queue.jobs.clear()
        await graph.advance(t.wctx, gid)
        assert (await t.run(gid)).status == status.WAITING and gid not in t.queue.jobs
        assert all(p.status == "done" for p in await states(t.sm, plan.WORKFLOW, gid))


# --- 4, 11: /cancel stops the graph ------------------------------------------------------------------


class Aborts:
    def __init__(self) -> None:
        self.ids: list[str] = []

    async def zadd(self, key: str, mapping: dict[str, int]) -> int:
        self.ids.extend(mapping)
        return len(mapping)


async def test_cancel_stops_the_graphs_task_runs_and_nothing_starts_after_it(tmp_path: Path) -> None:
    async with table(tmp_path, projects()) as t:
        gid = await graph_run(t)
        await graph.advance(t.wctx, gid)
        started = await by_id(t, gid)
        aborts = Aborts()
        t.queue.redis = aborts  # type: ignore[attr-defined]  # arq's abort set, as /cancel writes it
        worktree = await task_worktree(t, 0, str(started["A"].run_id))
        said = await command(t, "/cancel")
        assert "A, B, C were stopped too" in said and "Add the label again" in said, said
        assert set(aborts.ids) >= {gid, *(str(started[x].run_id) for x in "ABC")}
        for x in "ABC":
            assert (await t.run(str(started[x].run_id))).status == status.CANCELLED
        after = await by_id(t, gid)
        assert [after[x].status for x in "ABCD"] == ["failed", "failed", "failed", "pending"]
        (live,) = [c for c in t.fakes.jira.calls if c[0] == "edit_comment"][-1:]  # the live graph
        assert str(live[3]).count("| failed |") == 3, live
        assert not worktree.exists()
        await tasks.mark(t.sm, gid, ["A", "B", "C"], "done")
        t.queue.jobs.clear()
        await graph.advance(t.wctx, gid)  # a task that still finished: nothing starts, nothing reopens
        assert (await by_id(t, gid))["D"].status == "pending" and not t.queue.jobs
        assert (await graph.retry(t.wctx, await t.run(gid), "A")).startswith(f"run {gid[:12]} was cancelled")


async def plan_proposal(t: Table, gid: str) -> ProposalRow:
    target = {"kind": "graph", "origin": "plan", "issue_key": ISSUE, "project_path": REPOS[0], "tasks": SPECS}
    return await proposals.create(t.sm, gid, f"jira:{ISSUE}", "d" * 64, "d" * 64, target)


async def test_approving_the_plan_after_cancel_starts_no_task(tmp_path: Path) -> None:
    async with table(tmp_path, projects()) as t:
        gid = await graph_run(t, with_tasks=False)
        proposal = await plan_proposal(t, gid)
        t.queue.redis = Aborts()  # type: ignore[attr-defined]
        await command(t, "/cancel")
        said = await command(t, f"/approve {proposal.id}")
        assert "starts nothing" in said, said
        assert not await tasks.of_graph(t.sm, gid)
        assert (await proposals.get(t.sm, proposal.id)).status == proposals.STALE  # type: ignore[union-attr]


# --- 5: every repository's approvers --------------------------------------------------------------------


async def test_the_plan_needs_the_approval_of_every_repository_it_changes(tmp_path: Path) -> None:
    async with table(tmp_path, projects(Approvers(jira_users=("someone-else",)))) as t:
        gid = await graph_run(t, with_tasks=False)
        proposal = await plan_proposal(t, gid)
        said = await command(t, f"/approve {proposal.id}")
        assert "only these may approve" in said and "someone-else" in said, said
        assert not await tasks.of_graph(t.sm, gid)
        assert (await proposals.get(t.sm, proposal.id)).status == proposals.PROPOSED  # type: ignore[union-attr]


# --- 2, 3: the parent's own phases ------------------------------------------------------------------


async def test_a_failed_review_after_every_task_is_retried_at_the_review(tmp_path: Path) -> None:
    async with table(tmp_path, projects()) as t:
        gid = await graph_run(t)
        await all_done(t, gid)
        await set_phase(t, gid, "tasks", {"tasks": {}})
        await set_phase(t, gid, "review", {}, "failed")
        assert await runs.settle(t.sm, gid, status.FAILED, "w", "phase review failed: timeout")
        for asked in ("/retry", "/retry review"):
            said = await command(t, asked)
            assert said.startswith(f"Retrying run {gid[:12]} from review"), said
            assert (await t.run(gid)).status == status.QUEUED
            assert await runs.claim(t.sm, gid, "w") is not None
            await runs.finish(t.sm, gid, status.FAILED, "w", "phase review failed again")


async def test_a_refused_plan_fails_the_plan_phase_so_retry_plans_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrators import agents
    from orchestrators.taskgraph import PlanAnswer

    class Answer:
        usage = type("U", (), {"prompt_tokens": 10, "output_tokens": 5})()
        total_cost_usd = 0.01

        def output(self, model: type[PlanAnswer]) -> PlanAnswer:
            return PlanAnswer(tasks=[{"id": "A", "repository": "evil/elsewhere", "goal": "x"}])

    async def call(*args: Any, **kwargs: Any) -> Answer:
        return Answer()

    async def scratch(*args: Any) -> Path:
        return tmp_path

    monkeypatch.setattr(agents, "call", call)
    monkeypatch.setattr(agents, "scratch_repo", scratch)
    async with table(tmp_path, ProjectMap()) as t:
        gid = await graph_run(t, with_tasks=False)
        ctx = PhaseContext(t.wctx, await t.run(gid), {}, 1)
        with pytest.raises(plan.PlanUnusable, match="is not one of") as failed:
            await plan.plan(ctx)
        assert failed.value.usage["cost_usd"] == 0.01  # the phase is charged its call

        await set_phase(t, gid, "plan", {}, "pending")  # the whole parent: the plan phase fails, /retry
        assert await runs.reopen(t.sm, gid, "test", "run it") and await runs.claim(t.sm, gid, "w")
        outcome = await plan.run_graph(t.wctx, await t.run(gid))
        assert outcome.status == status.FAILED and "could not be used" in outcome.message
        phases = {p.name: p for p in await states(t.sm, plan.WORKFLOW, gid)}
        assert phases["plan"].status == "failed" and phases["plan"].cost_usd == 0.01
        await runs.finish(t.sm, gid, outcome.status, "w", outcome.message)
        said = await command(t, "/retry")
        assert said.startswith(f"Retrying run {gid[:12]} from plan"), said


# --- 6, 8, 11: the final proposal: half-ship, /reject, a /retry racing /approve, freed worktrees -------


async def finished_graph(t: Table) -> tuple[str, ProposalRow, list[Path]]:
    """Every task done with a commit in its worktree, the parent waiting on its final proposal."""
    gid = await graph_run(t)
    await graph.advance(t.wctx, gid)
    await tasks.mark(t.sm, gid, ["A", "B", "C"], "done")
    await graph.advance(t.wctx, gid)  # D starts
    await tasks.mark(t.sm, gid, ["D"], "done")
    shipped: list[dict[str, Any]] = []
    worktrees: list[Path] = []
    for index, row in enumerate((await by_id(t, gid)).values()):
        worktree = await task_worktree(t, index, str(row.run_id))
        (worktree / "change.py").write_text(f"task = {row.task_id!r}\n")
        sha = await t.fakes.workspace.commit_all(worktree, f"task {row.task_id}")
        project = t.fakes.gitlab.projects[900 + index]
        shipped.append(
            {"task_id": row.task_id, "repository": row.repository, "depends_on": [],
             "worktree": str(worktree), "branch": f"baton/TES-41-{index}", "sha": sha,
             "project_path": row.repository,
             "project_id": project.id, "remote_url": project.http_url_to_repo, "target_branch": "main",
             "goal": row.task_id}
        )  # fmt: skip
        worktrees.append(worktree)
    passed: dict[str, dict[str, Any]] = {"tasks": {"tasks": {}}, "review": {}, "propose": {}}
    for name, output in passed.items():
        await set_phase(t, gid, name, output)
    target: dict[str, Any] = {"kind": "graph", "origin": "ship", "issue_key": ISSUE, "project_path": REPOS[0]}
    target["tasks"] = shipped
    proposal = await proposals.create(t.sm, gid, f"jira:{ISSUE}", "e" * 64, "e" * 64, target)
    return gid, proposal, worktrees


async def current(t: Table, proposal: ProposalRow) -> ProposalRow:
    found = await proposals.get(t.sm, proposal.id)
    assert found is not None
    return found


def stopped_comments(t: Table) -> list[str]:
    return [str(c[2]) for c in t.fakes.jira.calls if c[0] == "add_comment" and "stopped at task" in str(c[2])]


async def test_every_failed_shipping_attempt_says_what_shipped_and_reject_still_works(tmp_path: Path) -> None:
    async with table(tmp_path, projects()) as t:
        gid, proposal, worktrees = await finished_graph(t)
        faults = t.fakes.gitlab.faults.fail
        faults["create_merge_request"] = GitLabError("500 Internal Server Error (as a permanent error)")
        await command(t, f"/approve {proposal.id}")
        assert len(stopped_comments(t)) == 1 and "Not shipped: A, B, C, D" in stopped_comments(t)[0]
        approver = str((await current(t, proposal)).target["approved_by_run"])
        t.fakes.jira.calls.clear()
        said = await command(t, "/retry")
        assert said.startswith("Shipping the rest of proposal"), said
        faults["create_merge_request"] = GitLabForbidden("403 Forbidden", 403)  # a permission: fixable
        t.fakes.jira.calls.clear()
        await t.job(approver)
        assert len(stopped_comments(t)) == 1, "the second attempt says what it shipped too"
        assert (await current(t, proposal)).status == proposals.APPROVED
        said = await command(t, "/reject")
        assert said.startswith(f"Rejected proposal {proposal.id}"), said
        assert (await current(t, proposal)).status == proposals.REJECTED
        assert (await t.run(gid)).status == status.CANCELLED
        assert not any(w.exists() for w in worktrees)


@pytest.mark.parametrize(
    "fault",
    [
        GitLabNotFound("404 Project Not Found", 404),
        GitLabConflict("409 Branch cannot be merged", 409),
        HeadMoved("worktree HEAD is abc, not the approved def"),
        GitError("push", 1, "! [rejected] baton/TES-41-0 (non-fast-forward)"),
    ],
)
async def test_a_permanent_shipping_error_makes_the_proposal_stale(tmp_path: Path, fault: Exception) -> None:
    async with table(tmp_path, projects()) as t:
        _, proposal, _ = await finished_graph(t)
        key = "create_merge_request" if isinstance(fault, GitLabError) else "push"
        assert (await current(t, proposal)).status == proposals.PROPOSED
        t.fakes.gitlab.faults.fail[key] = fault
        t.fakes.workspace.faults.fail[key] = fault
        await command(t, f"/approve {proposal.id}")
        assert (await current(t, proposal)).status == proposals.STALE
        assert f"Proposal {proposal.id} is stale; reply /retry A" in stopped_comments(t)[0]


async def test_shipping_every_repository_frees_every_task_worktree(tmp_path: Path) -> None:
    async with table(tmp_path, projects()) as t:
        _, proposal, worktrees = await finished_graph(t)
        await command(t, f"/approve {proposal.id}")
        assert (await current(t, proposal)).status == proposals.SHIPPED
        assert len(t.fakes.gitlab.mrs) == 4 and not any(w.exists() for w in worktrees)


async def test_a_retry_racing_an_approve_undoes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with table(tmp_path, projects()) as t:
        gid, proposal, worktrees = await finished_graph(t)
        seen = await current(t, proposal)  # what /retry read, just before /approve won

        async def as_read(*args: Any) -> ProposalRow:
            return seen

        monkeypatch.setattr(graph, "_final_proposal", as_read)
        assert await proposals.approve(t.sm, proposal.id, "approve-run")
        said = await graph.retry(t.wctx, await t.run(gid), "A")
        assert said == f"proposal {proposal.id} was approved just now; its tasks are not redone."
        assert all(w.exists() for w in worktrees) and (await by_id(t, gid))["A"].status == "done"


def test_two_components_of_one_repository_are_one_repository() -> None:
    mapping = ProjectMap(
        projects=(
            Project(jira_project="TES", component="api", gitlab_project="demo/catalog"),
            Project(jira_project="TES", component="web", gitlab_project="demo/storefront"),
            Project(jira_project="TES", component="admin", gitlab_project="Demo/Catalog"),
        )
    )
    clients = cast(Clients, SimpleNamespace(projects=mapping))
    issue = cast(JiraIssue, SimpleNamespace(project_key="TES", components=("api", "web", "admin")))
    assert [p.component for p in plan.mapped(clients, issue)] == ["api", "web"]
    single = cast(JiraIssue, SimpleNamespace(project_key="TES", components=("api", "admin")))
    assert len(plan.mapped(clients, single)) == 1  # a one-repository ticket
