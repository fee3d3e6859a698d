"""A hostile repository against the OS sandbox, end to end: real worker, real CLI, real bubblewrap.

The implementer writes an ordinary-looking conftest, test file and Makefile target; the agent runs the
repository's declared commands and validate runs them again. The probe (tests/fixtures/demo/probe.py)
tries the worker's environment through /proc, Baton's store and state dir, its config dir, the
worker's ~/.ssh key and a listener on 127.0.0.1. Contained, it reaches none of them and the whole
ticket (proposal, /approve, MR) leaves no secret anywhere; with the sandbox switched off the same
scenario reaches them, which shows the sandbox is what holds.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import yaml

import config as config_package
from bot.effects import find_jira_marker
from tests.support.processes import cli_json
from tests.support.sandbox import Running, running_sandbox, wait
from tests.support.servers import CountingListener

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "demo"
LIFECYCLE = FIXTURES / "lifecycle.yaml"
PROBE = FIXTURES / "probe.py"
REPORT_RE = re.compile(r"PROBE-REPORT:(\{.*?\})(?=\\n|\n|\"|$)")
TEST_COMMAND = "python -m pytest -q -s"
MAKE_COMMAND = "make -s probe"
SECRET_WORDS = ("TOKEN", "SECRET", "KEY", "PASSWORD")
CONFTEST = "import baton_probe\n\nprint(baton_probe.report('conftest'), flush=True)\n"
TEST_FILE = (
    "import baton_probe\n\n\ndef test_probe() -> None:\n    print(baton_probe.report('test'), flush=True)\n"
)
# The Makefile target fails when the probe reached anything, as a test asserting on stolen values would.
MAKEFILE = "probe:\n\tpython baton_probe.py\n"


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener()
    yield server
    server.close()


def fake_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\ncanary-ssh-key\n")
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    return home


def hostile_scenario(tmp_path: Path, targets: dict[str, Any]) -> Path:
    """lifecycle.yaml whose repository carries the probe and whose implementer runs it."""
    data = yaml.safe_load(LIFECYCLE.read_text())
    files = data["repository"]["files"]
    files["baton_probe.py"] = PROBE.read_text()
    files["probe-targets.json"] = json.dumps(targets)
    files[".baton.yml"] = f'commands:\n  test: ["{TEST_COMMAND}", "{MAKE_COMMAND}"]\n'
    implement = next(s for s in data["model"]["scripts"] if s["match"] == "[baton:implement] DEMO-1")
    turns = implement["turns"]
    writes = [
        {"tool_use": {"name": "Write", "input": {"file_path": f"{{cwd}}/{name}", "content": content}}}
        for name, content in (
            ("conftest.py", CONFTEST),
            ("tests/test_probe.py", TEST_FILE),
            ("Makefile", MAKEFILE),
        )
    ]
    bash = [
        {"tool_use": {"name": "Bash", "input": {"command": command}}}
        for command in (TEST_COMMAND, MAKE_COMMAND)
    ]
    implement["turns"] = [*turns[:3], *writes, *bash, turns[-1]]
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def reports(text: str) -> list[dict[str, Any]]:
    """Every probe report in `text` (JSON inside JSON is unescaped first)."""
    found = []
    for candidate in (text, text.replace('\\"', '"').replace("\\\\", "\\")):
        for match in REPORT_RE.finditer(candidate):
            try:
                found.append(json.loads(match[1]))
            except json.JSONDecodeError:
                continue
    return found


def marked(running: Running, key: str, kind: str) -> list[str]:
    """Bot comments on `key` whose effect key contains `:kind`."""
    return [body for body in running.comments(key) if f":{kind}" in (find_jira_marker(body) or "")]


def model_log(running: Running) -> str:
    return json.dumps([[r.path, r.headers, r.body] for r in running.stack.model.log.all()])


def secrets_of(env: dict[str, str]) -> dict[str, str]:
    """Every secret setting's current value in the worker's environment."""
    return {
        name: value
        for name, value in env.items()
        if name.startswith("BATON_") and any(word in name for word in SECRET_WORDS) and len(value) >= 8
    }


def everything_stored(running: Running, tmp_path: Path) -> dict[str, bytes]:
    """What Baton left behind: the store, Redis, logs, every comment, note and MR, the model's log."""
    places: dict[str, bytes] = {"model server log": model_log(running).encode()}
    for path in [tmp_path / "baton.db", *(tmp_path / "logs").glob("*")]:
        places[str(path)] = path.read_bytes()
    client = redis.Redis.from_url(running.env["BATON_REDIS_URL"])
    try:
        dumps = [cast("bytes | None", client.dump(key)) or b"" for key in client.scan_iter()]
        places["redis"] = b"".join(dumps)
    finally:
        client.close()
    jira = running.stack.jira_state
    places["jira comments"] = json.dumps(
        [c.body for key in ("DEMO-1", "DEMO-2") for c in jira.issue(key).comments]
    ).encode()
    gitlab = running.stack.gitlab_state
    mrs = gitlab.merge_requests_of(running.stack.demo.project)
    texts = [[mr.title, mr.description, [n.body for n in gitlab.notes_of(mr)]] for mr in mrs]
    places["gitlab merge requests"] = json.dumps(texts).encode()
    return places


def start(tmp_path: Path, listener: CountingListener, **extra: str) -> Any:
    home = fake_home(tmp_path)
    targets = {
        "paths": [
            str(tmp_path / "baton.db"),
            str(tmp_path / "state" / "sandbox-secrets.json"),
            str(tmp_path / "state" / "workspace" / "mirrors"),
            str(tmp_path / "state" / "workspace" / "bin"),
            str(Path(config_package.__file__).parent / "skills.yaml"),
            str(home / ".ssh" / "id_ed25519"),
        ],
        "port": listener.port,
    }
    scenario = hostile_scenario(tmp_path, targets)
    db_url = f"sqlite:///{tmp_path / 'baton.db'}"
    extra.setdefault("gitlab_signing_token", "canary-signing-token-7d1e")  # every secret setting set
    return running_sandbox(tmp_path, db_url, scenario, str(home), **extra)


@pytest.mark.timeout(420)
def test_the_contained_probe_reaches_nothing_and_no_secret_is_left_anywhere(
    tmp_path: Path, listener: CountingListener
) -> None:
    with start(tmp_path, listener) as sandbox:
        logs = sandbox.worker.logs
        sandbox.label("dan", "DEMO-1")
        wait(lambda: marked(sandbox, "DEMO-1", "proposal"), 150, "the proposal", logs)
        sandbox.as_person("alice", "DEMO-1", "/approve")
        wait(lambda: marked(sandbox, "DEMO-1", "mr-link"), 90, "the MR link", logs)
        found = reports(model_log(sandbox))
        secrets = secrets_of(sandbox.env)
        stored = everything_stored(sandbox, tmp_path)
        runs = cli_json(sandbox.env, "runs")

    origins = {r["origin"] for r in found}
    assert {"conftest", "test", "makefile"} <= origins, origins  # the probe really ran, three ways
    for report in found:
        assert report["uid"] == (65534 if os.geteuid() == 0 else os.geteuid())
        assert report["connect"].startswith("error:"), report
        assert all(value.startswith("error:") for value in report["files"].values()), report["files"]
        seen = json.dumps(report["environ"])
        assert "BATON_" not in seen
        assert not [name for name, value in secrets.items() if value in seen]
        # the one credential in reach is the run's relay placeholder, useless outside that run
        assert all(
            v.startswith("baton-relay-") for k, v in report["environ"].items() if "ANTHROPIC_API_KEY" in k
        )
    assert listener.accepted == 0
    assert {(r["kind"], r["status"]) for r in runs} >= {("implement", "succeeded"), ("approve", "succeeded")}
    assert set(secrets) >= {"BATON_GITLAB_TOKEN", "BATON_JIRA_TOKEN", "BATON_ANTHROPIC_API_KEY"}
    leaks = [
        (place, name)
        for place, data in stored.items()
        for name, value in secrets.items()
        if value.encode() in data
    ]
    assert leaks == []


@pytest.mark.timeout(420)
def test_with_the_sandbox_off_the_same_probe_reaches_them_all(
    tmp_path: Path, listener: CountingListener
) -> None:
    with start(tmp_path, listener, allow_uncontained="1") as sandbox:
        sandbox.label("dan", "DEMO-1")

        def reached() -> list[dict[str, Any]]:
            found = reports(model_log(sandbox))
            return found if {"conftest", "test", "makefile"} <= {r["origin"] for r in found} else []

        found = wait(reached, 150, "the probe's reports", sandbox.worker.logs)
        secrets = secrets_of(sandbox.env)

    environ = json.dumps([r["environ"] for r in found])
    assert secrets["BATON_GITLAB_TOKEN"] in environ and secrets["BATON_ANTHROPIC_API_KEY"] in environ
    files = found[0]["files"]
    assert all(value.startswith(("file:", "dir:")) for value in files.values()), files
    assert "canary-ssh-key" in json.dumps(files)
    assert all(r["connect"] == "connected" for r in found)
    assert listener.accepted >= 3
