"""`baton demo` as a real process, and the sandbox seeded from a scenario (real simulators, git and model)."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.sandbox.stack import DEFAULT_SCENARIO, SandboxPorts, SandboxStack

STEPS = [
    "[0/5] Baton, Redis and the sandbox are up",
    "[1/5] dan (a developer) adds the label ai-implement to DEMO-1",
    "[2/5] Baton acknowledges the ticket and posts one status comment",
    "[3/5] Baton implements, tests, reviews and posts a proposal",
    "[4/5] alice (in baton-approvers) replies /approve",
    "[5/5] Baton pushes the branch, opens the MR and links it on the ticket",
]


def default_scenario() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    return data


def write_scenario(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def demo_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment whose own Baton settings point nowhere: the demo must not use them."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update(
        {
            "BATON_STATE_DIR": str(tmp_path / "state"),
            "BATON_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/nothing",
            "BATON_REDIS_URL": "redis://127.0.0.1:9/0",
            "BATON_GITLAB_URL": "http://127.0.0.1:9",
            "BATON_PROJECTS_FILE": str(tmp_path / "missing-projects.yaml"),
        }
    )
    return env


def demo(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shell.cli", "demo", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def demo_store(tmp_path: Path) -> dict[str, str]:
    state = tmp_path / "state" / "demo"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**env, "BATON_STATE_DIR": str(state), "BATON_DATABASE_URL": f"sqlite:///{state / 'baton.db'}"}


def cli_json(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "shell.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ports_in(output: str) -> list[int]:
    """Every loopback port the demo printed (Baton, Redis, the three simulators)."""
    return sorted({int(p) for p in re.findall(r"(?:http|redis)://127\.0\.0\.1:(\d+)", output)})


def assert_everything_stopped(tmp_path: Path, output: str) -> None:
    ports = ports_in(output)
    assert len(ports) >= 5, output  # Baton, Redis, GitLab, Jira, model
    assert not [p for p in ports if listening(p)], output
    assert not (tmp_path / "state" / "demo" / "sandbox.json").exists()


# --- seeding ---------------------------------------------------------------------------------------


def test_a_scenario_seeds_the_ticket_the_repository_and_the_model(tmp_path: Path) -> None:
    answer = {"ready": False, "questions": ["Which unit?"], "summary": "Convert temperatures."}
    scenario = write_scenario(
        tmp_path / "temps.yaml",
        {
            "ticket": {
                "summary": "Convert Celsius to Fahrenheit",
                "description": "h3. Why\n* {{to_f(100) == 212}}",
                "labels": ["backend", "good-first-issue"],
            },
            "repository": {
                "files": {
                    ".baton.yml": "commands:\n  test: [python -m pytest -q]\n",
                    "temps/__init__.py": "",
                    "temps/convert.py": "def to_c(f: float) -> float:\n    return (f - 32) * 5 / 9\n",
                    "docs/ünïcode.md": "# naïve café\n",
                }
            },
            "model": {
                "scripts": [{"match": "[baton:triage] DEMO-1", "turns": [{"structured_output": answer}]}]
            },
            "expect": {"needs_info": True},
        },
    )
    stack = SandboxStack(tmp_path / "state", "http://127.0.0.1:9", SandboxPorts.from_base(0), scenario)
    config = stack.start()
    try:
        jira, tokens = config["jira"]["url"], config["jira"]["tokens"]
        auth = ("dan@example.com", tokens["developer"])
        issue = httpx.get(f"{jira}/rest/api/2/issue/DEMO-1", auth=auth, timeout=10).json()["fields"]
        assert issue["summary"] == "Convert Celsius to Fahrenheit"
        assert issue["description"] == "h3. Why\n* {{to_f(100) == 212}}"
        assert sorted(issue["labels"]) == ["backend", "good-first-issue"]
        vague = httpx.get(f"{jira}/rest/api/2/issue/DEMO-2", auth=auth, timeout=10).json()["fields"]
        assert vague["summary"] == "Make it better"

        clone = tmp_path / "clone"
        basic = base64.b64encode(f"x:{config['gitlab']['tokens']['bot']}".encode()).decode()
        git = ["git", "-c", f"http.extraHeader=Authorization: Basic {basic}"]
        subprocess.run([*git, "clone", "-q", config["gitlab"]["git_url"], str(clone)], check=True, timeout=60)
        listed = subprocess.run(
            ["git", "-C", str(clone), "-c", "core.quotePath=false", "ls-files"],
            capture_output=True, text=True, check=True,
        ).stdout.split("\n")  # fmt: skip
        files = yaml.safe_load(scenario.read_text())["repository"]["files"]
        assert sorted(filter(None, listed)) == sorted(files)
        assert all((clone / path).read_text() == text for path, text in files.items())
        log = subprocess.run(
            ["git", "-C", str(clone), "log", "--format=%an %s"], capture_output=True, text=True
        )
        assert log.stdout.splitlines() == ["Mia Maintainer Initial commit"]
        project = httpx.get(
            f"{config['gitlab']['url']}/api/v4/projects/demo%2Fcalculator",
            headers={"PRIVATE-TOKEN": config["gitlab"]["tokens"]["maintainer"]}, timeout=10,
        ).json()  # fmt: skip
        assert project["default_branch"] == "main"

        request = {
            "model": "claude-sandbox",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "[baton:triage] DEMO-1\nThe brief follows."}],
            "tools": [{"name": "StructuredOutput", "input_schema": {"type": "object"}}],
        }
        reply = httpx.post(
            f"{config['model']['url']}/v1/messages",
            json=request, headers={"x-api-key": config["model"]["api_key"]}, timeout=10,
        ).json()  # fmt: skip
        assert reply["content"] == [
            {"type": "tool_use", "id": reply["content"][0]["id"], "name": "StructuredOutput", "input": answer}
        ]
    finally:
        stack.stop()


# --- the demo command --------------------------------------------------------------------------------


def test_a_bad_scenario_is_refused_before_anything_starts(tmp_path: Path) -> None:
    bad = write_scenario(tmp_path / "bad.yaml", {**default_scenario(), "expect": {"needsinfo": True}})
    done = demo(demo_env(tmp_path), "--scenario", str(bad), timeout=60)
    assert done.returncode == 2
    assert (
        done.stdout.strip()
        == "scenario error: bad.yaml: expect.needsinfo: unknown field; did you mean 'needs_info'?"
    )
    assert not (tmp_path / "state" / "demo").exists()

    foreign = tmp_path / "state" / "demo"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    done = demo(demo_env(tmp_path), timeout=60)
    assert done.returncode == 2 and "was not made by `baton demo`" in done.stdout
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.timeout(180)
def test_a_step_that_never_happens_fails_the_demo_naming_it_and_stops_everything(tmp_path: Path) -> None:
    data = default_scenario()
    data["model"]["scripts"] = [
        {"match": "[baton:implement] DEMO-1", "hang": True} if s["match"] == "[baton:implement] DEMO-1" else s
        for s in data["model"]["scripts"]
    ]
    scenario = write_scenario(tmp_path / "stuck.yaml", data)
    done = demo(demo_env(tmp_path), "--scenario", str(scenario), "--timeout", "25", timeout=150)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert out.index(STEPS[0]) < out.index(STEPS[1]) < out.index(STEPS[2]) < out.index(STEPS[3])
    assert f"FAILED at step 3 ({STEPS[3][6:]})" in out
    assert STEPS[4] not in out and "demo passed" not in out
    seen = out[out.index("last seen:") :]
    assert "run " in seen and "implement" in seen
    assert re.search(r"\d+ comment\(s\) on DEMO-1", seen) and "0 merge request(s) in demo/calculator" in seen
    assert "logs: " in seen and "worker.log" in seen
    assert_everything_stopped(tmp_path, out)


# --- the whole loop (needs the implement and ship orchestrators) ------------------------------------


@pytest.mark.timeout(360)
def test_baton_demo_plays_the_whole_loop(tmp_path: Path) -> None:
    done = demo(demo_env(tmp_path), "--timeout", "280", timeout=330)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    positions = [out.index(step) for step in STEPS]
    assert positions == sorted(positions)
    assert out.count("      ok (") == 5
    assert "it ends with: " in out and "/approve" in out
    mr = re.search(r"MR     (http://127\.0\.0\.1:\d+/demo/calculator/-/merge_requests/1)\n", out)
    branch = re.search(r"branch (baton/DEMO-1-[a-z0-9-]+)\n", out)
    tokens = re.search(r"tokens ([\d,]+) in / ([\d,]+) out   cost \$(\d+\.\d+)", out)
    assert mr and branch and tokens, out
    assert int(tokens.group(1).replace(",", "")) > 0 and float(tokens.group(3)) > 0
    assert "demo passed" in out
    status_id = re.search(r"status comment (\d+) \(edited in place as the run goes\)", out)
    assert status_id and f"status comment {status_id.group(1)}, edited in place, now reads:" in out
    final = out[out.index("edited in place, now reads:") :]
    assert all(f"* ✅ {phase}" in final for phase in ("triage", "implement", "validate", "review", "propose"))
    bare = tmp_path / "state" / "demo" / "sandbox" / "repos" / "demo" / "calculator.git"
    changed = subprocess.run(
        ["git", f"--git-dir={bare}", "diff", "--name-only", "main", branch.group(1)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert changed == ["calculator.py", "tests/test_calculator.py"]  # pushed, and no bytecode in it
    runs = cli_json(demo_store(tmp_path), "runs")
    implement = next(r for r in runs if r["kind"] == "implement")
    assert implement["subject"] == "jira:DEMO-1" and implement["status"] == "succeeded"
    detail = cli_json(demo_store(tmp_path), "show", implement["id"][:12])
    assert [p["status"] for p in detail["phases"]] == ["done"] * len(detail["phases"])
    assert f"baton show {implement['id'][:12]}" in out
    assert_everything_stopped(tmp_path, out)


@pytest.mark.timeout(240)
def test_baton_demo_with_a_vague_ticket_waits_for_answers(tmp_path: Path) -> None:
    data = default_scenario()
    vague = next(s for s in data["model"]["scripts"] if s["match"] == "[baton:triage] DEMO-2")
    questions = vague["turns"][0]["structured_output"]["questions"]
    data["ticket"] = {"summary": "Make it better", "description": "It should be better."}
    data["model"]["scripts"] = [{**vague, "match": "[baton:triage] DEMO-1"}]
    data["expect"] = {"needs_info": True}
    scenario = write_scenario(tmp_path / "vague.yaml", data)
    done = demo(demo_env(tmp_path), "--scenario", str(scenario), "--timeout", "150", timeout=200)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "[3/3] Baton asks clarifying questions instead of guessing (and proposes nothing)" in out
    assert all(f"  ? {q}" in out for q in questions)
    assert "[4/" not in out and "MR     " not in out and "demo passed" in out
    (run,) = cli_json(demo_store(tmp_path), "runs")
    assert run["status"] == "waiting"
    assert_everything_stopped(tmp_path, out)


@pytest.mark.timeout(240)
def test_the_documented_example_plays(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "scenarios.md").read_text()
    example = next(b for b in re.findall(r"```yaml\n(.*?)```", docs, re.DOTALL) if b.startswith("ticket:"))
    scenario = tmp_path / "divide.yaml"
    scenario.write_text(example)
    done = demo(demo_env(tmp_path), "--scenario", str(scenario), "--timeout", "180", timeout=220)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Add a divide function that refuses division by zero" in done.stdout
    assert "demo passed" in done.stdout
    bare = tmp_path / "state" / "demo" / "sandbox" / "repos" / "demo" / "calculator.git"
    branch = re.search(r"branch (baton/DEMO-1-[a-z0-9-]+)\n", done.stdout)
    assert branch, done.stdout
    changed = subprocess.run(
        ["git", f"--git-dir={bare}", "diff", "--name-only", "main", branch.group(1)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert changed == ["calculator.py", "tests/test_divide.py"]
