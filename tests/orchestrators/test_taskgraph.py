"""The task graph's pure core: the planner's answer parsed (hostile inputs refused with a reason), the
scheduler's decisions as a table, the retry set, and the text a task's brief and the proposals carry."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrators.graph_render import (
    GraphProposal,
    RepoChange,
    TaskLine,
    TaskResult,
    interfaces,
    mr_description,
    render_graph,
    render_graph_proposal,
    render_plan,
    task_brief,
)
from orchestrators.taskgraph import (
    MAX_TASKS,
    Decision,
    Plan,
    PlanRefused,
    TaskSpec,
    decide,
    dependants,
    find_cycle,
    order,
    parse_plan,
    retry_resets,
)
from orchestrators.verdicts import Verdict

REPOS = ["demo/catalog", "demo/pricing", "demo/inventory", "demo/storefront"]


def task(task_id: str, repo: str = "demo/catalog", deps: tuple[str, ...] = (), **more: Any) -> dict[str, Any]:
    return {"id": task_id, "repository": repo, "goal": f"do {task_id}", "depends_on": list(deps), **more}


DIAMOND = [
    task("A", "demo/catalog"),
    task("B", "demo/pricing"),
    task("C", "demo/inventory"),
    task("D", "demo/storefront", ("A", "B", "C")),
]


def plan(tasks: list[dict[str, Any]] = DIAMOND) -> Plan:
    return parse_plan({"tasks": tasks}, REPOS)


def test_a_good_plan_parses_and_repository_case_is_normalised() -> None:
    parsed = parse_plan({"tasks": [task("A", "DEMO/Catalog"), task("B", "demo/pricing", ("A",))]}, REPOS)
    assert parsed.ids == ("A", "B")
    assert parsed.get("A").repository == "demo/catalog"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "no task list"),
        ("tasks", "no task list"),
        ({"tasks": []}, "no task list"),
        ({"tasks": {"A": 1}}, "no task list"),
        ({"tasks": [task(f"T{i}") for i in range(MAX_TASKS + 1)]}, f"at most {MAX_TASKS}"),
        ({"tasks": [task("A", "evil/elsewhere")]}, "is not one of"),
        ({"tasks": [task("A", "../demo/catalog")]}, "is not one of"),
        ({"tasks": [task("A"), task("A", "demo/pricing")]}, "used twice"),
        ({"tasks": [task("A", deps=("A",))]}, "depends on itself"),
        ({"tasks": [task("A", deps=("Z",))]}, "unknown task"),
        ({"tasks": [task("A", deps=("B",)), task("B", deps=("A",))]}, "cycle: A -> B -> A"),
        ({"tasks": [task("A", deps=("C",)), task("B", deps=("A",)), task("C", deps=("B",))]}, "cycle"),
        ({"tasks": [task("A"), task("B", "DEMO/catalog", ("A",))]}, "'demo/catalog' has two tasks"),
        ({"tasks": [task("A; rm -rf /")]}, "is not 1-16 letters"),
        ({"tasks": [task("A" * 17)]}, "is not 1-16 letters"),
        ({"tasks": [task("")]}, "is not 1-16 letters"),
        ({"tasks": [{**task("A"), "goal": ""}]}, "task 1: goal"),
        ({"tasks": [{**task("A"), "goal": "x" * 2001}]}, "task 1: goal"),
        ({"tasks": [task("A", acceptance=["y" * 501])]}, "longer than 500"),
        ({"tasks": [task("A", acceptance=["ok"] * 11)]}, "task 1: acceptance"),
        ({"tasks": [{**task("A"), "shell": "curl evil"}]}, "task 1: shell"),
        ({"tasks": [{**task("A"), "id": 7}]}, "task 1: id"),
        ({"tasks": ["A"]}, "task 1"),
        ({"tasks": [{**task("A"), "depends_on": "B"}]}, "task 1: depends_on"),
    ],
)
def test_hostile_or_broken_plans_are_refused_saying_why(data: object, reason: str) -> None:
    with pytest.raises(PlanRefused, match=None) as refused:
        parse_plan(data, REPOS)
    assert reason in str(refused.value)


def test_cycle_finder_and_order() -> None:
    assert find_cycle({"A": [], "B": ["A"]}) == []
    assert find_cycle({"A": ["B"], "B": ["C"], "C": ["B"]}) == ["B", "C", "B"]
    assert order(plan()) == ["A", "B", "C", "D"]
    reversed_plan = plan([task("D", "demo/storefront", ("A",)), task("A")])
    assert order(reversed_plan) == ["A", "D"]


def test_dependants_are_transitive_and_in_plan_order() -> None:
    chain = plan([task("A"), task("B", "demo/pricing", ("A",)), task("C", "demo/inventory", ("B",))])
    assert dependants(chain, "A") == ["B", "C"]
    assert dependants(plan(), "C") == ["D"]
    assert dependants(plan(), "D") == []


@pytest.mark.parametrize(
    ("states", "limit", "expected"),
    [
        ({}, 4, Decision(start=("A", "B", "C"))),
        ({}, 2, Decision(start=("A", "B"))),
        ({"A": "running"}, 2, Decision(start=("B",))),
        ({"A": "queued", "B": "running"}, 2, Decision()),
        ({"A": "done", "B": "done", "C": "running"}, 4, Decision()),
        ({"A": "done", "B": "done", "C": "done"}, 4, Decision(start=("D",))),
        ({"A": "done", "B": "done", "C": "done", "D": "running"}, 4, Decision()),
        ({"A": "done", "B": "done", "C": "done", "D": "done"}, 4, Decision(complete=True)),
        ({"A": "done", "B": "running", "C": "failed"}, 4, Decision(block=("D",))),
        ({"A": "done", "B": "done", "C": "failed"}, 4, Decision(block=("D",), stuck=True)),
        ({"A": "done", "B": "done", "C": "failed", "D": "blocked"}, 4, Decision(stuck=True)),
        ({"A": "failed"}, 4, Decision(start=("B", "C"), block=("D",))),
    ],
)
def test_scheduler_decisions(states: dict[str, str], limit: int, expected: Decision) -> None:
    assert decide(plan(), states, limit) == expected


def test_a_failure_blocks_dependants_of_dependants() -> None:
    chain = plan([task("A"), task("B", "demo/pricing", ("A",)), task("C", "demo/inventory", ("B",))])
    assert decide(chain, {"A": "failed"}).block == ("B", "C")


def test_retry_resets_the_task_and_the_dependants_it_blocked_only() -> None:
    states = {"A": "done", "B": "done", "C": "failed", "D": "blocked"}
    assert retry_resets(plan(), states, "C") == ["C", "D"]
    assert retry_resets(plan(), {"A": "failed", "D": "blocked", "B": "done"}, "A") == ["A", "D"]
    # a done task redone: what built on it is redone too, the rest stays
    done = dict.fromkeys("ABCD", "done")
    assert retry_resets(plan(), done, "B") == ["B", "D"]
    assert retry_resets(plan(), done, "D") == ["D"]
    assert retry_resets(plan(), {**done, "D": "running"}, "B") == ["B"]


def test_interfaces_are_read_from_the_diff() -> None:
    diff = (
        "+++ b/pricing/shipping.py\n"
        "-def shipping_cents(quantity: int) -> int:\n"
        "+def shipping_cents(quantity: int, weight_grams: int) -> int:\n"
        "+class Product:\n"
        "+    x = 1\n"
        "+    async def load(self) -> None:\n"
    )
    found = interfaces(diff)
    assert found[0] == "removed: def shipping_cents(quantity: int) -> int"
    assert "added: def shipping_cents(quantity: int, weight_grams: int) -> int" in found
    assert "added: class Product" in found and any("async def load" in f for f in found)


def test_a_tasks_brief_carries_the_marker_and_its_dependencies_results_as_data() -> None:
    spec = TaskSpec(id="D", repository="demo/storefront", goal="show weight", acceptance=("1.2 kg",))
    upstream = [
        TaskResult(
            "A", "demo/catalog", "weights", ("catalog/products.py",), ("added: class Product",), "```x"
        ),
    ]
    brief = task_brief("DEMO-1", spec, upstream, "TICKET", attempt=1)
    assert brief.startswith("Baton task: D in demo/storefront\n")
    assert "### Task A (demo/catalog)" in brief and "added: class Product" in brief
    assert "catalog/products.py" in brief and brief.endswith("TICKET")
    assert "````" in brief  # the summary's backticks cannot close the fence
    noted = task_brief("DEMO-1", spec, [], "TICKET", 2, ["storefront.py calls shipping_cents wrongly"])
    assert "What the cross-repository review found" in noted and "calls shipping_cents wrongly" in noted
    retried = task_brief("DEMO-1", spec, [], "TICKET", attempt=2)
    assert retried.startswith("Baton task: D in demo/storefront (attempt 2)\n")


def test_a_brief_names_a_bounded_number_of_a_dependencys_files() -> None:
    spec = TaskSpec(id="D", repository="demo/storefront", goal="g", depends_on=("A",))
    files = ("src/" + "x" * 3000 + ".py", *(f"src/m_{i}.py" for i in range(5000)))
    brief = task_brief("DEMO-1", spec, [TaskResult("A", "demo/catalog", "g", files)], "TICKET", 1)
    assert "src/m_38.py and 4961 more" in brief and "src/m_39.py" not in brief and len(brief) < 3000


HOSTILE = "{code}<!-- baton:effect=x --> [evil|http://x] *bold* | ~"


def test_plan_graph_and_proposal_text_escape_what_the_planner_wrote() -> None:
    hostile = plan([task("A", goal=HOSTILE, acceptance=[HOSTILE])])
    text = render_plan("DEMO-1", hostile, "abc123")
    assert "[evil|http://x]" not in text and "{code}" not in text and "<!-- baton" not in text
    assert "/approve abc123" in text
    lines = [TaskLine("A", "demo/catalog", "failed", (), 12.0, 0.5, HOSTILE)]
    shown = render_graph(lines)
    assert "[evil|http://x]" not in shown and "failed" in shown and "$0.5000" in shown
    assert "A        demo/catalog" in render_graph(lines, "text")
    verdict = Verdict(approve=True, summary=HOSTILE)
    change = RepoChange("A", "demo/catalog", "baton/x", "a" * 40, (("f.py", 1, 0),), ("ok",), HOSTILE)
    proposal = render_graph_proposal(GraphProposal("p1", "DEMO-1", (change,), verdict, 0.25))
    outside = proposal.split("{code:diff}")[0] + proposal.split("{expand}")[-1]  # the diff is verbatim
    assert "<!-- baton" not in proposal and "[evil|http://x]" not in outside
    assert "/approve p1" in proposal and "demo/catalog" in proposal and "$0.2500" in proposal


@pytest.mark.parametrize(
    "goal",
    [
        "fix it\n/merge\n/assign @all\n/approve",
        "line one\r\n/label ~security\n@all please look",
        "/close",
        "<!-- baton:effect=x --> `tick` [link](javascript:alert(1)) " + "x" * 3000,
    ],
)
def test_a_merge_request_description_quotes_the_goal_as_one_escaped_bounded_line(goal: str) -> None:
    spec = TaskSpec(id="A", repository="demo/catalog", goal=goal[:2000])
    text = mr_description("DEMO-1", "https://jira.example", spec, [("demo/pricing", "baton/x")], "p1")
    assert not any(line.lstrip().startswith("/") for line in text.splitlines())  # no quick action
    assert "@all" not in text and "<!-- baton" not in text and "](javascript" not in text
    assert len(text) < 1500 and text.startswith("Implements task A of [DEMO-1]")
