"""An approved ADR in the team's wiki reaches the briefs of its module end to end: the sandbox's
simulators, the real Claude Code CLI against the scripted model, Baton's real server and worker, a real
wiki (a bare git repository) and its search index. What the agents were told is read from the model
server's request log.

The ADR (on `calculator.py`, put into the wiki as `verified`) is quoted, with its status, in DEMO-1's
implementation brief and in its review prompt (as a decision to check the change against), and `baton
show` lists it; DEMO-3, a ticket about the README whose words overlap the ADR's, gets none of it.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest
import yaml

from bot.knowledge import Page, Wiki, adr_body
from config.settings import load_settings
from orchestrators.brief import KNOWLEDGE_NOTE, NO_KNOWLEDGE
from tests.e2e.test_ticket_lifecycle import SCENARIO, marked
from tests.support.processes import cli_json
from tests.support.sandbox import Running, running_sandbox, wait

ADR = Page(
    path="decisions/0001-calculator-functions-take-and-return-floats.md",
    title="Calculator functions take and return floats",
    kind="decision",
    status="verified",
    modules=("calculator.py",),
    source="DEMO-0",
    updated=datetime.date(2025, 1, 6),
    body=adr_body(
        "The calculator is used by a plotting tool that passes floats.",
        "Every function in calculator.py takes floats and returns a float; no Decimal, no int-only paths.",
        "Callers never convert; a function that needs exact arithmetic gets its own module.",
    ),
)
README_TICKET = (
    "Reword the calculator's README",  # shares "calculator" with the ADR; only its module differs
    "The {{README.md}} should call the calculator small instead of tiny.",
)
README_SCRIPTS = [
    {"match": "[baton:triage] DEMO-3",
     "turns": [{"structured_output": {"ready": True, "questions": [], "summary": "Reword the README"}}]},
    {"match": "[baton:implement] DEMO-3",
     "turns": [
         {"tool_use": {"name": "Edit", "input": {"file_path": "{cwd}/README.md", "old_string": "A tiny",
                                                 "new_string": "A small"}}},
         {"text": "The README now says small."},
     ]},
    {"match": "[baton:review] DEMO-3",
     "turns": [{"structured_output": {"approve": True, "blockers": [], "suggestions": [], "scope_creep": [],
                                      "summary": "Wording only."}}]},
]  # fmt: skip


def scenario(tmp_path: Path) -> Path:
    """The lifecycle scenario (DEMO-1: multiply in calculator.py) and a README ticket's scripts."""
    data = yaml.safe_load(SCENARIO.read_text())
    data["model"]["scripts"][:0] = README_SCRIPTS
    path = tmp_path / "knowledge-briefs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def requests(running: Running, phase: str, key: str) -> list[str]:
    """Every request the model server received for `[baton:<phase>] <key>` (each turn of each call)."""
    return [str(r.body) for r in running.stack.model.log.all() if f"[baton:{phase}] {key}" in str(r.body)]


def run_of(running: Running, key: str) -> dict[str, object]:
    (run,) = [r for r in cli_json(running.env, "runs") if r["kind"] == "implement" and key in r["subject"]]
    return dict(cli_json(running.env, "show", run["id"]))


@pytest.mark.timeout(480)
def test_an_approved_adr_reaches_its_modules_briefs_and_reviews_and_no_other(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", scenario(tmp_path)) as sandbox:
        logs = sandbox.worker.logs
        wiki = Wiki(load_settings(sandbox.env).wiki_path)
        asyncio.run(wiki.put([ADR], "ADR 0001: calculator functions take and return floats", "Test"))
        readme = sandbox.stack.jira_state.add_issue("DEMO", *README_TICKET, reporter="dan")
        assert readme.key == "DEMO-3"

        sandbox.label("dan", "DEMO-1")
        wait(lambda: marked(sandbox, "DEMO-1", "proposal"), 120, "DEMO-1's proposal", logs)
        sandbox.label("dan", "DEMO-3")
        wait(lambda: marked(sandbox, "DEMO-3", "proposal"), 120, "DEMO-3's proposal", logs)

        tagged = f"### [verified] `{ADR.title}`"
        implementing = requests(sandbox, "implement", "DEMO-1")
        assert implementing and all(tagged in body for body in implementing)
        assert KNOWLEDGE_NOTE in implementing[0] and f"page `{ADR.path}`" in implementing[0]
        reviewing = requests(sandbox, "review", "DEMO-1")
        assert reviewing
        for body in reviewing:
            decisions = body[body.index("## Decisions to check the change against") :]
            assert tagged in decisions[: decisions.index("## The diff to review")]
        shown = run_of(sandbox, "DEMO-1")["knowledge"]
        assert shown == [{"path": ADR.path, "status": "verified", "kind": "decision", "title": ADR.title}]

        unrelated = [
            body for phase in ("triage", "implement", "review") for body in requests(sandbox, phase, "DEMO-3")
        ]
        assert requests(sandbox, "implement", "DEMO-3") and requests(sandbox, "review", "DEMO-3")
        assert not [body for body in unrelated if ADR.title in body or ADR.path in body]
        assert NO_KNOWLEDGE in requests(sandbox, "implement", "DEMO-3")[0]
        assert run_of(sandbox, "DEMO-3")["knowledge"] == []
