"""Worker faults: a worker SIGKILLed mid-agent-call or between an external commit and its record, and a
worker stopped with SIGTERM mid-run. Real `baton serve|worker` processes, the real Claude Code CLI
against the scripted model, the GitLab and Jira simulators; `invariants.check` after every case.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from bot.agent.process import alive
from bot.sandbox.jira_sim import JiraState
from bot.store import status
from tests.reliability import invariants
from tests.reliability.faults import (
    SCENARIO,
    GitLabMergeRequestLoss,
    JiraProposalLoss,
    actions,
    agent_pids,
    effects,
    ending_agents,
    jira_marked,
    merge_requests,
    model_requests,
    phases,
    proposal_ids,
    runs,
    sandbox_with_canaries,
    sandbox_world,
    scenario_variant,
    set_script,
    wait_until,
)
from tests.support.sandbox import Running, running_sandbox

KEY = "DEMO-1"
EARLIER = ("triage", "assemble", "implement", "validate")


def implement_run(db_url: str) -> str:
    (run,) = [r for r in runs(db_url) if r.kind == "implement"]
    return run.id


def run_status(db_url: str, run_id: str) -> str:
    return next(r.status for r in runs(db_url) if r.id == run_id)


@contextmanager
def sandbox_redis(running: Running) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(running.env["BATON_REDIS_URL"], socket_connect_timeout=2)
    try:
        yield client
    finally:
        client.close()


def one_of_each(jira: JiraState) -> None:
    """The ticket holds exactly one acknowledgement, one status comment and one proposal."""
    counts = {kind: len(jira_marked(jira, KEY, kind)) for kind in ("ack", "status", "proposal")}
    assert counts == {"ack": 1, "status": 1, "proposal": 1}, counts


@pytest.mark.timeout(240)
def test_worker_killed_during_review_resumes_at_review_and_its_agent_is_ended(tmp_path: Path) -> None:
    """SIGKILL while the reviewer's model call is in flight: the sandbox ends the CLI with its worker
    (bubblewrap's --die-with-parent), the next worker reruns review only (earlier phases are not
    repeated) and posts one proposal."""
    db_url = f"sqlite:///{tmp_path / 'baton.db'}"
    scenario = scenario_variant(tmp_path, "review-hangs", review={"hang": True})
    with running_sandbox(tmp_path, db_url, scenario, run_lease_s="3") as sandbox, ending_agents(db_url):
        canaries = sandbox_with_canaries(sandbox)
        logs = sandbox.worker.logs
        sandbox.label("dan", KEY)
        wait_until(lambda: model_requests(sandbox, "review"), 120, "the reviewer's model call", logs)
        run_id = implement_run(db_url)
        orphans = wait_until(lambda: agent_pids(run_id), 10, "the reviewer's CLI processes", logs)
        assert phases(db_url, run_id)["review"] == ("running", 1)

        sandbox.kill_worker()
        wait_until(lambda: not alive(orphans), 10, "the killed worker's sandboxed agent to end with it", logs)
        set_script(sandbox, "review", hang=False)  # the next reviewer gets its answer
        sandbox.start_worker()
        proposal = wait_until(
            lambda: jira_marked(sandbox.stack.jira_state, KEY, "proposal"),
            150,
            "the proposal",
            sandbox.worker.logs,
        )

        assert not alive(orphans), f"the killed worker's agent processes still run: {sorted(alive(orphans))}"
        assert not agent_pids(run_id), "a process still carries the run's agent TMPDIR marker"
        assert len(proposal) == 1
        seen = phases(db_url, run_id)
        assert {name: seen[name] for name in EARLIER} == {name: ("done", 1) for name in EARLIER}
        assert seen["review"] == ("done", 2) and seen["propose"] == ("done", 1)
        assert wait_until(lambda: run_status(db_url, run_id) == status.WAITING, 20, "waiting", logs)
        assert actions(db_url, run_id).count("claimed") == 2
        one_of_each(sandbox.stack.jira_state)
        invariants.check(sandbox_world(sandbox, db_url, canaries))


def effect_state(db_url: str, prefix: str) -> tuple[str, str]:
    """(key, pending|done) of the one effect whose key starts with `prefix`."""
    (found,) = [(key, state) for key, state in effects(db_url).items() if key.startswith(prefix)]
    return found


@pytest.mark.timeout(240)
def test_worker_killed_after_jira_and_gitlab_accepted_a_post_but_before_the_store_recorded_it(
    tmp_path: Path,
) -> None:
    """The Jira simulator commits the proposal comment and holds its answer; the worker is SIGKILLed;
    the next worker finds the posted comment by its marker (one proposal, one status comment). Then
    the same for the merge request after /approve: GitLab opens it, the answer is lost, the worker
    dies; the next worker adopts that MR (exactly one) and links it once."""
    db_url = f"sqlite:///{tmp_path / 'baton.db'}"
    with running_sandbox(tmp_path, db_url, SCENARIO, run_lease_s="3") as sandbox, ending_agents(db_url):
        canaries = sandbox_with_canaries(sandbox)
        jira, gitlab = sandbox.stack.jira_state, sandbox.stack.gitlab_state
        with JiraProposalLoss(jira) as lost_comment:
            sandbox.label("dan", KEY)
            wait_until(
                lambda: jira_marked(jira, KEY, "proposal"),
                150,
                "Jira to hold the proposal",
                sandbox.worker.logs,
            )
            run_id = implement_run(db_url)
            key, state = effect_state(db_url, f"run:{run_id}:proposal:")
            assert state == "pending", (
                "precondition: Jira committed the comment, the store has not recorded it"
            )
            assert lost_comment.armed.is_set() and jira.faults.lose_next == 0  # the lost write: the proposal
            sandbox.kill_worker()
        sandbox.start_worker()
        wait_until(
            lambda: run_status(db_url, run_id) == status.WAITING, 90, "the resumed run", sandbox.worker.logs
        )
        assert effect_state(db_url, f"run:{run_id}:proposal:") == (key, "done")
        one_of_each(jira)
        assert phases(db_url, run_id)["propose"] == ("done", 2)  # propose ran again and adopted the comment
        assert "✅" in jira_marked(jira, KEY, "status")[0]

        with GitLabMergeRequestLoss(gitlab) as lost_mr:
            sandbox.as_person("alice", KEY, "/approve")
            assert lost_mr.committed.wait(90), (
                f"GitLab never received the merge request\n{sandbox.worker.logs()[-4000:]}"
            )
            (approve,) = [r.id for r in runs(db_url) if r.kind == "approve"]
            (proposal_id,) = proposal_ids(db_url)
            mr_key = f"proposal:{proposal_id}:mr"
            assert effects(db_url)[mr_key] == "pending", (
                "precondition: GitLab opened the MR, the store has not recorded it"
            )
            sandbox.kill_worker()
        sandbox.start_worker()
        settled = (*status.TERMINAL, status.WAITING)
        wait_until(lambda: run_status(db_url, approve) in settled, 90, "the approve run", sandbox.worker.logs)
        assert run_status(db_url, approve) == status.SUCCEEDED, next(
            r.error for r in runs(db_url) if r.id == approve
        )
        link = jira_marked(jira, KEY, "mr-link")

        mrs = merge_requests(gitlab)
        assert len(mrs) == 1 and len(link) == 1 and f"!{mrs[0].iid}" in link[0]
        assert effects(db_url)[mr_key] == "done"
        assert run_status(db_url, run_id) == status.SUCCEEDED
        assert actions(db_url, approve).count("claimed") == 2
        invariants.check(sandbox_world(sandbox, db_url, canaries))


SHUTDOWN_WAIT_S = 2.0


@pytest.mark.timeout(240)
def test_sigterm_mid_run_waits_requeues_and_exits_then_the_next_worker_finishes(tmp_path: Path) -> None:
    """SIGTERM while the reviewer waits on the model: the worker waits BATON_SHUTDOWN_WAIT_S, hands the
    run back to the queue (status queued, arq job kept) and exits 0 promptly; a new worker resumes
    at review and posts one proposal."""
    db_url = f"sqlite:///{tmp_path / 'baton.db'}"
    scenario = scenario_variant(tmp_path, "review-hangs", review={"hang": True})
    with (
        running_sandbox(tmp_path, db_url, scenario, shutdown_wait_s=f"{SHUTDOWN_WAIT_S:g}") as sandbox,
        ending_agents(db_url),
    ):
        canaries = sandbox_with_canaries(sandbox)
        logs = sandbox.worker.logs
        sandbox.label("dan", KEY)
        wait_until(lambda: model_requests(sandbox, "review"), 120, "the reviewer's model call", logs)
        run_id = implement_run(db_url)
        assert run_status(db_url, run_id) == status.RUNNING

        started = time.monotonic()
        sandbox.worker.process.send_signal(signal.SIGTERM)
        code = sandbox.worker.process.wait(SHUTDOWN_WAIT_S + 20)
        took = time.monotonic() - started
        sandbox.worker.stop()
        assert code == 0, f"the worker exited with {code}\n{logs()[-4000:]}"
        assert SHUTDOWN_WAIT_S <= took < SHUTDOWN_WAIT_S + 10, f"exit took {took:.1f} s"
        assert run_status(db_url, run_id) == status.QUEUED
        assert actions(db_url, run_id)[-1] == "requeued"
        with sandbox_redis(sandbox) as redis:
            assert redis.exists(f"arq:job:{run_id}"), "arq dropped the job of the requeued run"
        assert phases(db_url, run_id)["review"][0] == "running"  # the run stopped inside review
        wait_until(lambda: not agent_pids(run_id), 5, "the stopped worker's agent to end", logs)

        set_script(sandbox, "review", hang=False)
        sandbox.start_worker()
        proposal = wait_until(
            lambda: jira_marked(sandbox.stack.jira_state, KEY, "proposal"),
            120,
            "the proposal",
            sandbox.worker.logs,
        )
        assert len(proposal) == 1
        seen = phases(db_url, run_id)
        assert {name: seen[name] for name in EARLIER} == {name: ("done", 1) for name in EARLIER}
        assert seen["review"] == ("done", 2)
        wait_until(lambda: run_status(db_url, run_id) == status.WAITING, 20, "waiting", sandbox.worker.logs)
        assert actions(db_url, run_id).count("claimed") == 2
        one_of_each(sandbox.stack.jira_state)
        assert not agent_pids(run_id)
        invariants.check(sandbox_world(sandbox, db_url, canaries))
