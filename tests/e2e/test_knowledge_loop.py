"""The knowledge loop end to end: the sandbox's simulators, the real Claude Code CLI against the scripted
model, Baton's real server and worker, a real wiki. What the agents were told is read from the model
server's request log.

* Learning: a ticket whose first attempt failed its tests is merged → `learn` proposes that failure as
  a pitfall on the ticket → `/approve` lands it → the next ticket on the same module gets it in its brief,
  tagged `inferred`; after `/verify <page>` the one after gets it `verified`.
* Architecture: a ticket labelled `ai-design` → the planner's ADR as a proposal (`/revise` redrafts it)
  → `/approve` lands it `verified` → later implementation and review briefs for its module quote it;
  a ticket on another module does not get it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bot.effects import find_jira_marker
from bot.knowledge import Index, Knowledge, Wiki, page_path
from tests.support.processes import cli_json
from tests.support.sandbox import Running, running_sandbox, wait

SCENARIO = Path(__file__).resolve().parent.parent / "fixtures" / "demo" / "knowledge.yaml"
PITFALL = "DEMO-1: FAILED tests/test_multiply.py::test_multiply - assert 1 == -6"
ADR = "Calculator functions raise on bad input"
ADR_REVISED = "Calculator functions raise ValueError on bad input"
TICKETS = {
    "DEMO-3": ("Add a power function to the calculator", "Add {{power(a, b)}} to {{calculator.py}}."),
    "DEMO-4": ("Add a negate function to the calculator", "Add {{negate(a)}} to {{calculator.py}}."),
    "DEMO-5": (
        "Reword the calculator's README",  # shares words with the ADR; only its module differs
        "The {{README.md}} of the calculator should say small instead of tiny; the wording about bad "
        "input stays.",
    ),
}


@pytest.fixture
def sandbox(tmp_path: Path) -> Running:  # type: ignore[misc]
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", SCENARIO) as running:
        for key, (summary, description) in TICKETS.items():
            issue = running.stack.jira_state.add_issue("DEMO", summary, description, reporter="dan")
            assert issue.key == key
        yield running


def marked(running: Running, key: str, kind: str) -> list[str]:
    """Bot comments on `key` whose effect key contains `:kind`."""
    return [body for body in running.comments(key) if f":{kind}" in (find_jira_marker(body) or "")]


def prompts(running: Running, phase: str, key: str) -> list[str]:
    """Every request the model server received for `[baton:<phase>] <key>`, one per turn of each agent
    call (each carries the prompt with the brief as its first user message)."""
    return [str(r.body) for r in running.stack.model.log.all() if f"[baton:{phase}] {key}" in str(r.body)]


def proposed(running: Running, key: str, nth: int = 0) -> str:
    logs = running.worker.logs
    return wait(lambda: marked(running, key, "proposal")[nth:], 120, f"the proposal on {key}", logs)[0]


def merge(running: Running, iid: int) -> None:
    """A maintainer merges the merge request in the GitLab simulator (the Merge Request Hook follows)."""
    gitlab = running.config["gitlab"]
    answer = httpx.put(
        f"{gitlab['url']}/api/v4/projects/{running.stack.demo.project.id}/merge_requests/{iid}/merge",
        headers={"PRIVATE-TOKEN": gitlab["tokens"]["maintainer"]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def test_a_pitfall_learned_from_a_merged_ticket_reaches_the_next_brief_inferred_then_verified(
    sandbox: Running,
) -> None:
    logs = sandbox.worker.logs
    sandbox.label("dan", "DEMO-1")
    proposed(sandbox, "DEMO-1")
    sandbox.as_person("alice", "DEMO-1", "/approve")
    wait(lambda: marked(sandbox, "DEMO-1", "mr-link"), 60, "the MR link", logs)
    (mr,) = sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project)
    merge(sandbox, mr.iid)

    knowledge = wait(lambda: marked(sandbox, "DEMO-1", "knowledge"), 60, "the knowledge proposal", logs)[0]
    page = page_path("pitfall", PITFALL)
    assert "Knowledge proposal" in knowledge and "{{" + page + "}}" in knowledge
    assert "lands as *inferred*" in knowledge and "{{/approve}}" in knowledge and "{{/reject}}" in knowledge
    (learn,) = [r for r in cli_json(sandbox.env, "runs") if r["kind"] == "learn"]
    assert learn["status"] == "waiting" and learn["subject"] == f"gitlab:demo/calculator!{mr.iid}"

    sandbox.as_person("alice", "DEMO-1", "/approve")
    landed = wait(lambda: marked(sandbox, "DEMO-1", "landed"), 60, "the pages landing", logs)[0]
    assert page in landed and "*inferred*" in landed
    assert cli_json(sandbox.env, "show", learn["id"])["status"] == "succeeded"
    sandbox.as_person("alice", "DEMO-1", "/approve")  # once: a second /approve lands nothing again
    again = wait(lambda: marked(sandbox, "DEMO-1", "reply"), 60, "the refusal", logs)
    assert "already shipped" in again[-1] and len(marked(sandbox, "DEMO-1", "landed")) == 1

    # The next ticket on calculator.py is told the pitfall, marked unconfirmed.
    sandbox.label("dan", "DEMO-3")
    proposed(sandbox, "DEMO-3")
    brief = prompts(sandbox, "implement", "DEMO-3")[0]
    assert f"### [inferred] `{PITFALL}`" in brief and "assert 1 == -6" in brief
    assert "[verified] `DEMO-1" not in brief

    sandbox.as_person("alice", "DEMO-3", f"/verify {page}")
    verified = wait(lambda: marked(sandbox, "DEMO-3", "reply"), 60, "the /verify reply", logs)[0]
    assert "Verified" in verified and page in verified

    sandbox.label("dan", "DEMO-4")
    proposed(sandbox, "DEMO-4")
    later = prompts(sandbox, "implement", "DEMO-4")[0]
    assert f"### [verified] `{PITFALL}`" in later and f"[inferred] `{PITFALL}`" not in later


def test_an_approved_adr_reaches_later_briefs_for_its_module_and_not_others(
    sandbox: Running, tmp_path: Path
) -> None:
    logs = sandbox.worker.logs
    sandbox.label("dan", "DEMO-3", "ai-design")
    first = wait(lambda: marked(sandbox, "DEMO-3", "knowledge"), 90, "the ADR proposal", logs)[0]
    assert "Architecture decision proposal" in first and ADR in first and "lands as *verified*" in first
    assert "{{" + page_path("decision", ADR) + "}}" in first
    assert not prompts(sandbox, "implement", "DEMO-3")  # the design label implements nothing

    sandbox.as_person("alice", "DEMO-3", "/revise errors are ValueError")
    second = wait(lambda: marked(sandbox, "DEMO-3", "knowledge")[1:], 90, "the redrafted ADR", logs)[0]
    assert ADR_REVISED in second
    (design,) = [r for r in cli_json(sandbox.env, "runs") if r["kind"] == "design"]
    assert "errors are ValueError" in prompts(sandbox, "design", "DEMO-3")[-1]

    sandbox.as_person("alice", "DEMO-3", "/approve")
    landed = wait(lambda: marked(sandbox, "DEMO-3", "landed"), 60, "the ADR landing", logs)[0]
    path = page_path("decision", ADR_REVISED)
    assert path in landed and "*verified*" in landed
    assert cli_json(sandbox.env, "show", design["id"])["status"] == "succeeded"

    sandbox.label("dan", "DEMO-4")  # calculator.py: its ADR applies
    sandbox.label("dan", "DEMO-5")  # README.md only: it does not
    proposed(sandbox, "DEMO-4")
    proposed(sandbox, "DEMO-5")
    quoted = f"[verified] `{ADR_REVISED}`"
    implement = prompts(sandbox, "implement", "DEMO-4")[0]
    review = prompts(sandbox, "review", "DEMO-4")[0]
    assert quoted in implement and "raises ValueError on input it cannot handle" in implement
    decisions = review.split("## Decisions to check the change against", 1)[1]
    assert quoted in decisions
    for unrelated in (*prompts(sandbox, "implement", "DEMO-5"), *prompts(sandbox, "review", "DEMO-5")):
        assert ADR_REVISED not in unrelated and ADR not in unrelated
    # Its words match the README ticket (a search of the same wiki finds it): only its module kept it out.
    wiki = Knowledge(Wiki(Path(sandbox.env["BATON_STATE_DIR"]) / "wiki"), Index(tmp_path / "probe.db"))
    hits = asyncio.run(wiki.search(" ".join(TICKETS["DEMO-5"])))
    assert ADR_REVISED in [hit.page.title for hit in hits]
