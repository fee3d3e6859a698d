"""The ticket replies end to end: /revise, /reject, /retry, racing /approve, and /help from the manifest."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_ticket_lifecycle import SCENARIO, marked, replies
from tests.support.processes import cli_json
from tests.support.sandbox import Running, running_sandbox, wait

RIGHT = "def multiply(a: float, b: float) -> float:\n    return a * b\n"
DOCUMENTED = (
    'def multiply(a: float, b: float) -> float:\n    """The product of a and b."""\n    return a * b\n'
)


FULL = (
    '"""A tiny calculator."""\n\n\ndef add(a: float, b: float) -> float:\n    return a + b\n\n\n'
    "def sub(a: float, b: float) -> float:\n    return a - b\n\n\n" + DOCUMENTED
)
TESTS = (
    "from calculator import multiply\n\n\ndef test_multiply() -> None:\n    assert multiply(-2, 3) == -6\n"
)


def with_revise_script(tmp_path: Path) -> Path:
    data = yaml.safe_load(SCENARIO.read_text())
    revise = {
        "match": "A person asked for this change (/revise)",
        "turns": [
            {"tool_use": {"name": "Read", "input": {"file_path": "{cwd}/calculator.py"}}},
            {"tool_use": {"name": "Write", "input": {"file_path": "{cwd}/calculator.py", "content": FULL}}},
            {"tool_use": {"name": "Write", "input": {"file_path": "{cwd}/tests/test_multiply.py",
                                                     "content": TESTS}}},
            {"text": "Added the docstring the reviewer asked for."},
        ],
    }  # fmt: skip
    data["model"]["scripts"].insert(0, revise)
    path = tmp_path / "revise.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def proposal_id(text: str) -> str:
    """The id a proposal comment shows (`*Proposal* {{id}}` in Jira markup)."""
    found = re.search(r"Proposal\*? \{\{([0-9a-f]+)\}\}", text)
    assert found, text[:300]
    return found[1]


def proposals(sandbox: Running) -> list[str]:
    return marked(sandbox, "DEMO-1", "proposal")


@pytest.mark.timeout(480)
def test_revise_reject_retry_and_two_racing_approvals(tmp_path: Path) -> None:
    with running_sandbox(
        tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", with_revise_script(tmp_path)
    ) as sandbox:
        logs = sandbox.worker.logs
        sandbox.stack.jira_state.add_user("Bob Approver", name="bob", groups=["baton-approvers"])
        sandbox.label("dan", "DEMO-1")
        first = wait(lambda: proposals(sandbox), 100, "the first proposal", logs)[0]

        sandbox.as_person("alice", "DEMO-1", "/revise add a docstring to multiply")
        second = wait(lambda: proposals(sandbox)[1:], 100, "the revised proposal", logs)[0]
        assert "docstring" in second.lower()
        # /approve naming the older proposal is refused and ships nothing; the reply names the latest
        first_id, second_id = (proposal_id(text) for text in (first, second))
        assert first_id != second_id
        sandbox.as_person("alice", "DEMO-1", f"/approve {first_id}")
        old = wait(
            lambda: [r for r in replies(sandbox, "DEMO-1") if "not the latest" in r], 60, "refusal", logs
        )
        assert f"the latest is {second_id}" in old[0]
        assert sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project) == []
        asked = [
            str(r.body)
            for r in sandbox.stack.model.log.all()
            if "A person asked for this change" in str(r.body)
        ]
        assert asked and "add a docstring to multiply" in asked[0]

        sandbox.as_person("dan", "DEMO-1", "/reject not now")
        said = wait(
            lambda: [r for r in replies(sandbox, "DEMO-1") if "Rejected" in r], 60, "the rejection", logs
        )
        assert "nothing was pushed" in said[0]

        sandbox.as_person("dan", "DEMO-1", "/retry")
        wait(lambda: proposals(sandbox)[2:], 120, "the retried proposal", logs)

        racers = [
            threading.Thread(target=sandbox.as_person, args=(who, "DEMO-1", "/approve"))
            for who in ("alice", "bob")
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(10)
        wait(lambda: marked(sandbox, "DEMO-1", "mr-link"), 60, "the MR", logs)
        wait(
            lambda: all(r["status"] not in ("queued", "running") for r in cli_json(sandbox.env, "runs")),
            60, "both approvals to be handled", logs,
        )  # fmt: skip
        assert len(sandbox.stack.gitlab_state.merge_requests_of(sandbox.stack.demo.project)) == 1
        assert len(marked(sandbox, "DEMO-1", "mr-link")) == 1
        refusals = [r for r in replies(sandbox, "DEMO-1") if "/approve" in r and "did not run" in r]
        refusals = [r for r in refusals if "not the latest" not in r]  # the /approve of the old one
        assert len(refusals) == 1 and ("someone else" in refusals[0] or "already" in refusals[0])


def test_help_comes_from_the_skill_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "skills.yaml"
    manifest.write_text(
        "skills:\n"
        "  - {name: help, orchestrator: help, help: list what this team's Baton does}\n"
        "  - {name: approve, orchestrator: approve, help: ship it, usage: '/approve'}\n"
        "  - {name: deploy-preview, aliases: [preview], orchestrator: help,\n"
        "     help: show a preview of the change}\n"
    )
    with running_sandbox(
        tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", SCENARIO, skills_file=str(manifest)
    ) as sandbox:
        sandbox.as_person("dan", "DEMO-1", "/help")
        shown = wait(lambda: replies(sandbox, "DEMO-1"), 60, "the /help reply", sandbox.worker.logs)[0]
        assert "/deploy-preview /preview: show a preview of the change" in shown
        assert "/retry" not in shown  # not in this team's manifest
        # the team's own command is parsed at ingress and dispatched to its workflow (here: help)
        sandbox.as_person("dan", "DEMO-1", "/preview please")
        again = wait(lambda: replies(sandbox, "DEMO-1")[1:], 60, "the /preview reply", sandbox.worker.logs)[0]
        assert "/deploy-preview /preview: show a preview of the change" in again
