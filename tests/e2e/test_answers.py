"""/explain, /summarize, /classify end to end, and a cost cap stopping a run: the simulators, Baton's real
server and worker, the real Claude Code CLI against the scripted model.

The agent of /explain tries to write and to run a command (as the reviewer's tests do); the branch it
read stays where it was, the answer is one reply where the command was typed, and what the call cost
(cache writes included) is shown by `baton show`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.sandbox.scenario import Usage
from tests.e2e.test_mr_threads import BRANCH, bot_notes, comment, git, open_merge_request, position
from tests.e2e.test_ticket_lifecycle import marked, replies
from tests.support.processes import cli_json
from tests.support.sandbox import Running, running_sandbox, wait

SCENARIO = Path(__file__).resolve().parent.parent / "fixtures" / "demo" / "remediate.yaml"
USAGE = {"input_tokens": 300, "output_tokens": 40, "cache_creation_input_tokens": 2000,
         "cache_read_input_tokens": 100}  # fmt: skip
EXPLAIN_MR = (
    "`multiply` returns the product of `a` and `b`.\n"
    "- It is new in this merge request and has one test.\n"
    "/close this answer must not close anything"
)
SCRIPTS = [
    {"match": "[baton:explain] demo/calculator!1", "usage": USAGE, "turns": [
        {"tool_use": {"name": "Write", "input": {"file_path": "{cwd}/sneaky.py", "content": "x = 1\n"}}},
        {"tool_use": {"name": "Bash", "input": {"command": "touch sneaky.txt && git commit -am sneaky"}}},
        {"tool_use": {"name": "Read", "input": {"file_path": "{cwd}/calculator.py"}}},
        {"text": EXPLAIN_MR},
    ]},
    {"match": "[baton:summarize] demo/calculator!1", "usage": USAGE,
     "turns": [{"text": "One open thread asks what multiply does with None; nobody has answered yet."}]},
    {"match": "[baton:summarize] DEMO-1", "usage": USAGE,
     "turns": [{"text": "DEMO-1 asks for multiply(a, b) with tests. No Baton run yet."}]},
    {"match": "[baton:explain] DEMO-1", "usage": USAGE,
     "turns": [{"text": "The ticket wants `multiply` in `calculator.py`, next to `add` and `sub`."}]},
    {"match": "[baton:classify] DEMO-2", "usage": USAGE, "turns": [{"structured_output": {
        "type": "improvement", "modules": ["calculator.py"], "size": "M", "size_reason": "unclear goal",
        "questions": ["Which part of the calculator should be better?"], "summary": "Make it better"}}]},
    {"match": "[baton:explain] DEMO-3", "usage": {**USAGE, "input_tokens": 20_000}, "turns": [
        {"tool_use": {"name": "Read", "input": {"file_path": "{cwd}/calculator.py"}}},
        {"tool_use": {"name": "Read", "input": {"file_path": "{cwd}/tests/test_calculator.py"}}},
        {"text": "never reached: the cap stops the call after its first turn"},
    ]},
]  # fmt: skip


def scenario(tmp_path: Path) -> Path:
    data = yaml.safe_load(SCENARIO.read_text())
    data["model"]["scripts"][:0] = SCRIPTS  # before the thread scripts, whose words the prompts quote
    path = tmp_path / "answers.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def requests(sandbox: Running, header: str) -> list[str]:
    return [str(r.body) for r in sandbox.stack.model.log.all() if header in str(r.body)]


def run_of(sandbox: Running, kind: str, subject: str) -> Any:
    """`baton show` of the latest run of `kind` on `subject`."""
    found = [r for r in cli_json(sandbox.env, "runs") if r["kind"] == kind and r["subject"] == subject]
    return cli_json(sandbox.env, "show", found[0]["id"])


def stops(sandbox: Running, key: str) -> list[str]:
    """Baton's failure replies on `key` that name a cap."""
    return [r for r in marked(sandbox, key, "failed") if "cap" in r]


def finished(sandbox: Running, kind: str) -> bool:
    return all(
        r["status"] not in ("queued", "running") for r in cli_json(sandbox.env, "runs") if r["kind"] == kind
    )


@pytest.mark.timeout(480)
def test_read_only_skills_answer_once_where_asked_and_a_cost_cap_stops_a_run(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", scenario(tmp_path)) as sandbox:
        logs = sandbox.worker.logs
        mr = open_merge_request(sandbox)
        head = git(sandbox, "rev-parse", BRANCH)
        thread = comment(sandbox, "maintainer", "What does multiply do with None?", position=position(mr, 12))
        comment(sandbox, "developer", "/explain", discussion_id=thread)

        # /explain in a diff thread: one reply there, the lines and the MR as context, nothing changed
        said = wait(lambda: bot_notes(sandbox, thread, "reply"), 120, "the /explain reply", logs)
        assert len(said) == 1 and said[0].startswith("@developer: ")
        assert "returns the product of `a` and `b`" in said[0] and "\n- It is new" in said[0]
        assert "\n/close" not in said[0] and "\n\u200b/close" in said[0]  # no quick action as the bot
        asked = requests(sandbox, "[baton:explain] demo/calculator!1")[0].replace("\\n", "\n")
        assert "calculator.py, new line 12" in asked and "def multiply(a: float, b: float)" in asked
        assert "What does multiply do with None?" in asked
        assert git(sandbox, "rev-parse", BRANCH) == head  # the branch it read did not move
        assert "sneaky.py" not in git(sandbox, "ls-tree", "-r", "--name-only", BRANCH)
        assert list(tmp_path.rglob("sneaky.*")) == []  # the denied Write and Bash left no file anywhere
        first = next(
            r for r in sandbox.stack.model.log.all() if "[baton:explain] demo/calculator!1" in str(r.body)
        )
        offered = {tool["name"] for tool in first.body["tools"]}  # the reviewer's profile, as in tests/agent
        assert {"Read", "Glob", "Grep"} <= offered and not offered & {"Edit", "Write", "Bash", "WebFetch"}
        explained = run_of(sandbox, "explain", "gitlab:demo/calculator!1")
        assert [(p["name"], p["status"]) for p in explained["phases"]] == [
            ("answer", "done"),
            ("reply", "done"),
        ]
        assert explained["status"] == "succeeded"

        # a guest may not; /summarize on the overview answers in its own discussion
        denied = comment(sandbox, "guest", "/explain")
        refusal = wait(lambda: bot_notes(sandbox, denied, "reply"), 60, "the guest's refusal", logs)[0]
        assert "/explain is for members with reporter access or higher" in refusal.replace("\\", "")
        overview = comment(sandbox, "reporter", "/summarize")
        summary = wait(lambda: bot_notes(sandbox, overview, "reply"), 120, "the MR summary", logs)
        assert len(summary) == 1 and "nobody has answered yet" in summary[0]
        mr_prompt = requests(sandbox, "[baton:summarize] demo/calculator!1")[0]
        assert "What does multiply do with None?" in mr_prompt and "Thread 1" in mr_prompt

        # on Jira: /summarize and /explain on DEMO-1, /classify on DEMO-2, each one comment there
        sandbox.as_person("alice", "DEMO-1", "/summarize")
        wait(lambda: [r for r in replies(sandbox, "DEMO-1") if "No Baton run yet" in r], 120, "summary", logs)
        sandbox.as_person("alice", "DEMO-1", "/explain")
        wait(lambda: [r for r in replies(sandbox, "DEMO-1") if "next to" in r], 120, "explanation", logs)
        sandbox.as_person("dan", "DEMO-2", "/classify")
        classified = wait(lambda: marked(sandbox, "DEMO-2", "reply"), 120, "the classification", logs)
        assert len(classified) == 1
        assert classified[0].startswith("Classification of DEMO-2: type *improvement*, size *M*")
        assert "Which part of the calculator should be better?" in classified[0].replace("\\", "")
        assert len(marked(sandbox, "DEMO-1", "reply")) == 2
        wait(lambda: finished(sandbox, "classify"), 30, "the classify run to finish", logs)

        # tokens and cost recorded like every phase's: cache writes and reads count as input
        summarized = run_of(sandbox, "summarize", "jira:DEMO-1")
        answer = summarized["phases"][0]
        assert answer["input_tokens"] == sum(
            v for k, v in Usage(**USAGE).model_dump().items() if k != "output_tokens"
        )
        assert answer["output_tokens"] == 40 and answer["cost_usd"] > 0

        # a cost cap: DEMO-1 has spent more than it, so /summarize stops before any agent call
        sandbox.kill_worker()
        sandbox.env["BATON_BUDGET_TICKET_USD"] = "0.0005"
        sandbox.start_worker()
        logs = sandbox.worker.logs
        before = len(requests(sandbox, "[baton:summarize] DEMO-1"))
        sandbox.as_person("alice", "DEMO-1", "/summarize")
        stopped = wait(lambda: stops(sandbox, "DEMO-1"), 120, "the cap's reply", logs)[0]
        assert (
            "the per-ticket cap of $0.0005 for jira:DEMO-1 (BATON_BUDGET_TICKET_USD) is reached"
            in stopped.replace("\\", "")
        )
        assert len(requests(sandbox, "[baton:summarize] DEMO-1")) == before

        # a fresh ticket under the cap: the CLI gets what is left and stops the call past it
        reporter = sandbox.stack.jira_state.issue("DEMO-1").reporter
        fresh = sandbox.stack.jira_state.add_issue(
            "DEMO", "Explain the tests", "What do they cover?", reporter=reporter
        )
        assert fresh.key == "DEMO-3"
        sandbox.as_person("alice", "DEMO-3", "/explain")
        capped = wait(lambda: stops(sandbox, "DEMO-3"), 120, "the CLI's stop", logs)[0]
        assert "per-ticket cap of $0.0005 for jira:DEMO-3 (BATON_BUDGET_TICKET_USD)" in capped.replace(
            "\\", ""
        )
        assert len(requests(sandbox, "[baton:explain] DEMO-3")) == 1  # one turn, then the CLI stopped
        wait(lambda: finished(sandbox, "explain"), 30, "the capped run to finish", logs)
        stopped_run = run_of(sandbox, "explain", "jira:DEMO-3")
        assert stopped_run["status"] == "failed"
        assert stopped_run["phases"][0]["cost_usd"] > 0.0005  # what it cost is kept

        # the trigger label on DEMO-2 (already past the cap): the implement run stops before triage's
        # agent, its status comment shows the spend against the cap, and its failure names it
        sandbox.label("dan", "DEMO-2")
        failed = wait(lambda: stops(sandbox, "DEMO-2"), 120, "the implement run's stop", logs)[0]
        assert "the per-ticket cap of $0.0005 for jira:DEMO-2 (BATON_BUDGET_TICKET_USD)" in failed.replace(
            "\\", ""
        )
        shown = wait(lambda: marked(sandbox, "DEMO-2", "status"), 30, "the status comment", logs)[0]
        assert "budget: ticket $0.0" in shown and "of $0.0005" in shown
        assert not requests(sandbox, "[baton:triage] DEMO-2")
