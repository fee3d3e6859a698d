"""CI analysis (orchestrators/ci_analysis.py) decisions, as a table over the recording fakes: which failed
pipelines are analyzed, what is said where, when the agent is (not) asked, and the per-MR budget.

The fakes run no agent: a run that reaches the agent fails there (which still counts as an analysis
against the budget). The agent's part, `/approve` and the whole loop run in tests/e2e/test_ci_analysis.py.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.clients.gitlab import Job, Pipeline
from bot.effects import find_marker
from bot.store import proposals, status
from bot.store.tables import Phase
from orchestrators.ci_analysis import CiAssembled
from orchestrators.threads import TARGET_KIND
from tests.support.deliveries import fixture
from tests.support.tables import (
    DEVELOPER,
    PROJECT_ID,
    PROJECT_PATH,
    GitLabPerson,
    Table,
    gitlab_note,
    seed_gitlab,
    table,
)

BRANCH = "baton/TES-41-add-numbers"
IID = 2
GUEST = GitLabPerson(604, "guest")
PYTEST = b"$ python -m pytest -q\nFAILED tests/test_calc.py::test_add - assert 2 == 3\n1 failed in 0.01s\n"
RUNNER = b"Preparing the docker executor\nERROR: Job failed (system failure): Error response from daemon\n"


def failed_job(id_: int, trace: bytes, *, name: str = "test", status_: str = "failed") -> tuple[Job, bytes]:
    reason = "script_failure" if status_ == "failed" else None
    return Job(id_, name, "test", status_, reason, False, f"https://gitlab.example.test/-/jobs/{id_}"), trace


def baton_mr(t: Table, *, author_is_bot: bool = True) -> str:
    """MR !2 from Baton's branch (opened by the bot unless told otherwise); its head."""
    seed_gitlab(t)
    gitlab, workspace = t.fakes.gitlab, t.fakes.workspace
    project = gitlab.projects[PROJECT_ID]
    main = gitlab.branches[(PROJECT_ID, "main")]
    head = workspace.seed(
        project.http_url_to_repo, BRANCH, {"calc.py": "def add(a, b):\n    return a\n"}, main
    )
    author = gitlab.bot if author_is_bot else DEVELOPER.user
    gitlab.add_merge_request(PROJECT_ID, BRANCH, title="[TES-41] add numbers", author=author, iid=IID)
    return head


def pipeline_hook(pipeline: Pipeline, *, who: GitLabPerson | None = None) -> dict[str, Any]:
    """The recorded Pipeline Hook, about `pipeline` on MR !2."""
    payload = copy.deepcopy(fixture("gitlab/pipeline_mr.json"))
    payload["object_attributes"].update(id=pipeline.id, status="failed", sha=pipeline.sha, ref=pipeline.ref)
    payload["merge_request"].update(iid=IID, source_branch=BRANCH, source_project_id=PROJECT_ID)
    payload["project"].update(id=PROJECT_ID, path_with_namespace=PROJECT_PATH)
    if who is not None:
        payload["user"].update(id=who.id, username=who.username)
    return payload


async def failed(t: Table, head: str, *jobs: tuple[Job, bytes]) -> str:
    """A failed pipeline on the MR's head, delivered; the run it started, after its job."""
    pipeline = t.fakes.gitlab.add_pipeline(PROJECT_ID, BRANCH, head, jobs)
    run_id = await t.deliver("gitlab", pipeline_hook(pipeline, who=DEVELOPER))
    await t.job(run_id)
    return run_id


def said(t: Table) -> list[str]:
    """What Baton wrote on MR !2, in order (markers left out)."""
    return [str(c[4] if c[0] == "reply_in_discussion" else c[3]) for c in t.fakes.gitlab.calls
            if c[0] in ("reply_in_discussion", "start_discussion")]  # fmt: skip


async def phases_of(t: Table, run_id: str) -> dict[str, Phase]:
    async with t.sm() as session:
        rows = (await session.execute(select(Phase).where(Phase.run_id == run_id))).scalars()
        return {p.name: p for p in rows}


def with_budget(t: Table, **changes: Any) -> None:
    t.wctx = replace(t.wctx, settings=t.settings.model_copy(update=changes))


async def test_flaky_and_infrastructure_failures_get_a_rerun_report_and_no_agent(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        head = baton_mr(t)
        t.forget_setup()
        run_id = await failed(
            t, head,
            failed_job(11, PYTEST, name="unit", status_="success"),  # the first attempt passed ...
            failed_job(12, PYTEST, name="unit"),  # ... its retry failed: flaky
            failed_job(13, RUNNER, name="integration"),
        )  # fmt: skip

        run = await t.run(run_id)
        assert run.status == status.SUCCEEDED
        assert (await t.last_message(run_id)).startswith("no code fix needed; re-run: ")
        report = next(text for text in said(t) if "not because of the code" in text)
        assert "`unit`" in report and "`integration`" in report and "re-run" in report
        assert (
            "the runner failed" in report and "another attempt of this job in the pipeline passed" in report
        )
        assert t.fakes.workspace.calls == []  # no mirror, no worktree: nothing for an agent to do
        assert sum(1 for c in t.fakes.gitlab.calls if c[0] == "start_discussion") == 1  # one thread


async def test_a_failing_test_reaches_the_agent_with_the_test_named_in_its_brief(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        head = baton_mr(t)
        t.forget_setup()
        run_id = await failed(t, head, failed_job(11, PYTEST))

        phases = await phases_of(t, run_id)
        assembled = CiAssembled.model_validate(phases["assemble"].output)
        assert [t_.name for f in assembled.findings for t_ in f.tests] == ["tests/test_calc.py::test_add"]
        assert "tests/test_calc.py::test_add" in assembled.brief and "assert 2 == 3" in assembled.brief
        assert assembled.source_branch == BRANCH and assembled.base_sha == head
        assert phases["implement"].attempts == 1  # the agent was asked (the fakes have none: it failed)
        assert [c[0] for c in t.fakes.workspace.calls][:2] == ["ensure_mirror", "create_worktree"]
        assert any("Reply `/analyze-ci` to try again" in text for text in said(t))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("human's MR", "not analyzed: the merge request was not opened by Baton"),
        ("newer commit", "not analyzed: pipeline "),
        ("passed since", "not analyzed: pipeline "),
        ("closed", "not analyzed: the merge request is closed"),
    ],
)
async def test_pipelines_that_are_not_baton_s_to_fix_post_nothing(
    tmp_path: Path, setup: str, message: str
) -> None:
    async with table(tmp_path) as t:
        head = baton_mr(t, author_is_bot=setup != "human's MR")
        pipeline = t.fakes.gitlab.add_pipeline(PROJECT_ID, BRANCH, head, [failed_job(11, PYTEST)])
        if setup == "newer commit":
            t.fakes.gitlab.set_branch(PROJECT_ID, BRANCH, "f" * 40)
        if setup == "passed since":
            t.fakes.gitlab.pipelines[(PROJECT_ID, pipeline.id)] = replace(pipeline, status="success")
        if setup == "closed":
            t.fakes.gitlab.set_state(PROJECT_ID, IID, "closed")
        t.forget_setup()
        run_id = await t.deliver("gitlab", pipeline_hook(pipeline))

        run = await t.job(run_id)

        assert run.status == status.SUCCEEDED and (await t.last_message(run_id)).startswith(message)
        assert t.writes() == []


async def test_past_the_attempts_budget_baton_stops_and_says_so_once(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        with_budget(t, ci_fix_attempts=1)
        head = baton_mr(t)
        first = await failed(t, head, failed_job(11, PYTEST))  # analysis 1 of 1 (reaches the agent)
        t.forget_setup()

        second = await failed(t, head, failed_job(21, PYTEST))
        third = await failed(t, head, failed_job(31, PYTEST))

        assert (await t.run(first)).status == status.FAILED  # the fakes' agent cannot run
        for run_id in (second, third):
            assert (await t.run(run_id)).status == status.SUCCEEDED
            assert (await t.last_message(run_id)).startswith(
                "stopped: over the CI budget: this merge request"
            )
        stops = [c for c in t.fakes.gitlab.calls if c[0] == "start_discussion"]
        assert len(stops) == 1  # said once per merge request, not at every failure
        text = str(stops[0][3])
        assert "I stop here" in text and "already had 1 CI analyses" in text and "budget is 1" in text
        assert "`/analyze-ci`" in text and t.fakes.workspace.calls == []


async def test_past_the_cost_budget_baton_stops_and_names_it(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        with_budget(t, ci_fix_budget_usd=0.5)
        head = baton_mr(t)
        first = await failed(t, head, failed_job(11, PYTEST))
        async with t.sm.begin() as session:
            await session.execute(update(Phase).where(Phase.run_id == first).values(cost_usd=0.3))
        t.forget_setup()

        second = await failed(t, head, failed_job(21, PYTEST))

        assert (await t.last_message(second)).startswith("stopped: over the CI budget: Baton's runs")
        assert "cost $1.20, and the budget is $0.50" in said(t)[0]


async def test_a_person_s_analyze_ci_is_not_held_to_the_budget(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        with_budget(t, ci_fix_attempts=1)
        head = baton_mr(t)
        await failed(t, head, failed_job(11, PYTEST))
        t.fakes.gitlab.add_pipeline(PROJECT_ID, BRANCH, head, [failed_job(21, PYTEST)])
        thread = t.fakes.gitlab.start_thread(PROJECT_ID, IID, DEVELOPER.user, "CI is red again").id
        _, note = t.fakes.gitlab.add_note(PROJECT_ID, IID, DEVELOPER.user, "/analyze-ci", thread)
        t.forget_setup()
        payload = gitlab_note("/analyze-ci", DEVELOPER, note, thread)
        payload["merge_request"].update(iid=IID, source_branch=BRANCH)
        run_id = await t.deliver("gitlab", payload)

        await t.job(run_id)

        assert (await phases_of(t, run_id))["implement"].attempts == 1  # asked despite the spent budget
        replies = [c for c in t.fakes.gitlab.calls if c[0] == "reply_in_discussion"]
        assert replies and all(c[3] == thread for c in replies)  # everything in the command's thread
        awards = [c[4] for c in t.fakes.gitlab.calls if c[0] == "award_emoji"]
        assert awards == ["eyes", "x"]


@pytest.mark.parametrize(
    ("who", "pipeline", "answer"),
    [
        (DEVELOPER, "passed", "is success; there is no failure to analyze."),
        (DEVELOPER, None, "it has no pipeline; there is no failure to analyze."),
        (GUEST, "failed", "/analyze-ci is for members with developer access or higher; you have guest"),
    ],
)
async def test_analyze_ci_refusals_answer_in_the_thread(
    tmp_path: Path, who: GitLabPerson, pipeline: str | None, answer: str
) -> None:
    async with table(tmp_path) as t:
        head = baton_mr(t)
        t.fakes.gitlab.add_member(PROJECT_ID, GUEST.id, 10)
        if pipeline is not None:
            job = failed_job(11, PYTEST, status_="success" if pipeline == "passed" else "failed")
            t.fakes.gitlab.add_pipeline(PROJECT_ID, BRANCH, head, [job])
        thread = t.fakes.gitlab.start_thread(PROJECT_ID, IID, who.user, "why is CI red?").id
        _, note = t.fakes.gitlab.add_note(PROJECT_ID, IID, who.user, "/analyze-ci", thread)
        t.forget_setup()
        payload = gitlab_note("/analyze-ci", who, note, thread)
        payload["merge_request"].update(iid=IID, source_branch=BRANCH)

        run = await t.job(await t.deliver("gitlab", payload))

        refusals = [text for text in said(t) if text.startswith(f"@{who.username}: I did not run")]
        assert len(refusals) == 1 and answer in refusals[0]
        assert run.status == status.SUCCEEDED and t.fakes.workspace.calls == []
        assert all(find_marker(text) is None for text in refusals)  # the fakes record the text as given
        awards = [c[4] for c in t.fakes.gitlab.calls if c[0] == "award_emoji"]
        assert awards == ([] if who == GUEST else ["eyes", "x"])  # refused before the workflow: no 👀


async def test_a_new_failure_supersedes_a_waiting_analysis_and_stales_its_proposal(tmp_path: Path) -> None:
    """A proposal for an older failure is outdated by the next one: its run ends, its proposal goes stale."""
    async with table(tmp_path) as t:
        head = baton_mr(t)
        older = t.fakes.gitlab.add_pipeline(PROJECT_ID, BRANCH, head, [failed_job(11, PYTEST)])
        waiting = await t.deliver("gitlab", pipeline_hook(older))
        await t.waiting(waiting, "proposal posted; waiting for /approve")
        target = {"kind": TARGET_KIND, "origin": "analyze-ci", "mr_iid": IID, "discussion_id": "d" * 40}
        proposal = await proposals.create(
            t.sm, waiting, f"gitlab:{PROJECT_PATH}!{IID}", "c" * 40, "h", target
        )
        t.forget_setup()

        newer = await failed(t, head, failed_job(21, PYTEST))

        assert (await t.run(waiting)).status == status.CANCELLED
        assert (await t.last_message(waiting)) == f"superseded by run {newer}"
        assert (await proposals.get(t.sm, proposal.id)).status == proposals.STALE  # type: ignore[union-attr]
        assert (await phases_of(t, newer))["implement"].attempts == 1  # the newer failure is analyzed


async def typed(t: Table, text: str, thread: str, who: GitLabPerson = DEVELOPER) -> str:
    """`text` typed by `who` as a reply in `thread` of MR !2; the run it starts, after its job."""
    _, note = t.fakes.gitlab.add_note(PROJECT_ID, IID, who.user, text, thread)
    payload = gitlab_note(text, who, note, thread)
    payload["merge_request"].update(iid=IID, source_branch=BRANCH)
    run_id = await t.deliver("gitlab", payload)
    await t.job(run_id)
    return run_id


async def test_status_retry_and_revise_act_on_the_analysis_of_their_thread(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        head = baton_mr(t)
        analysis = await failed(t, head, failed_job(11, PYTEST))  # fails at implement: no agent in fakes
        thread = str(((await phases_of(t, analysis))["assemble"].output or {})["discussion_id"])
        t.forget_setup()

        await typed(t, "/status", thread)
        shown = said(t)[-1]
        assert shown.startswith("@dev: Run ") and "is failed" in shown and "CI analysis of" in shown

        await typed(t, "/retry", thread)
        assert (await t.run(analysis)).status == status.QUEUED and analysis in t.queue.jobs
        assert (await phases_of(t, analysis))["implement"].status == "pending"
        await t.job(analysis)  # fails at implement again

        target = {"kind": TARGET_KIND, "origin": "analyze-ci", "mr_iid": IID, "discussion_id": thread}
        proposal = await proposals.create(
            t.sm, analysis, f"gitlab:{PROJECT_PATH}!{IID}", "c" * 40, "h", target
        )
        await typed(t, "/revise keep add() pure", thread)

        reopened = await t.run(analysis)
        assert reopened.status == status.QUEUED and reopened.trigger.revisions == ("keep add() pure",)  # type: ignore[union-attr]
        assert (await proposals.get(t.sm, proposal.id)).status == proposals.STALE  # type: ignore[union-attr]
        assert "Revising proposal" in said(t)[-1]
