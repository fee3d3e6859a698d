"""What `baton demo` reads and does in the sandbox: Jira comments and labels, GitLab MRs, Baton's runs.

Everything goes through the simulators' public REST APIs (as the sandbox's people) and Baton's own
store queries (what `baton runs --json` and `baton show --json` print), never through their memory.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from bot.store import runs as run_queries
from bot.store import tasks as task_queries
from bot.store.engine import create_engine, sessionmaker
from orchestrators.status_comment import ICONS

HTTP_TIMEOUT_S = 10.0
REQUESTER = ("dan", "dan@example.com")  # a developer: asks for the work (may not approve it)
APPROVER = ("alice", "alice@example.com")  # in baton-approvers: approves it

_CHECKLIST_RE = re.compile(r"^\* (?:" + "|".join(map(re.escape, ICONS.values())) + r") \S", re.MULTILINE)
_JIRA_ESCAPE_RE = re.compile(r"\\([{}\[\]|*+^~!?_\-])")
_INVISIBLE_RE = re.compile("[\u200b\u2060\ufeff]")


@dataclass(frozen=True)
class Comment:
    """One Jira comment as REST v2 returns it."""

    id: str
    author: str  # accountId
    body: str

    @property
    def headline(self) -> str:
        """The first non-empty line, shortened (for "last seen" lists)."""
        line = next((ln.strip() for ln in self.body.splitlines() if ln.strip()), "")
        return line if len(line) <= 100 else line[:99] + "…"


def is_status(body: str) -> bool:
    """The run's status comment: it carries a phase checklist (`* ✅ implement — 12 s`, one per phase)."""
    return len(_CHECKLIST_RE.findall(body)) >= 2


def is_proposal(body: str) -> bool:
    """A proposal ends with the replies that move it on: `/approve`, `/revise …`, `/reject`."""
    return "/approve" in body and "/reject" in body and not is_status(body)


def plain(text: str) -> str:
    """Jira wiki text with Baton's escaping undone and whitespace collapsed, for "does it say X" checks."""
    unescaped = _JIRA_ESCAPE_RE.sub(r"\1", _INVISIBLE_RE.sub("", text)).replace("⧵", "\\")
    return " ".join(unescaped.split()).casefold()


def asks(body: str, questions: list[str]) -> bool:
    """Whether a comment contains every one of the questions (as Baton escapes them for Jira)."""
    text = plain(body)
    return bool(questions) and all(plain(q) in text for q in questions)


class Sandbox:
    """The running sandbox's Jira and GitLab, driven as its people would (the sandbox config's tokens)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.jira_url: str = config["jira"]["url"]
        self.gitlab_url: str = config["gitlab"]["url"]
        self.project: str = config["gitlab"]["project"]
        self.approver_auth = (APPROVER[1], config["jira"]["tokens"]["approver"])
        self.gitlab_token: str = config["gitlab"]["tokens"]["maintainer"]
        self._http = httpx.Client(timeout=HTTP_TIMEOUT_S)

    def close(self) -> None:
        self._http.close()

    def _ok(self, response: httpx.Response) -> Any:
        response.raise_for_status()
        return response.json()

    def comments(self, key: str) -> list[Comment]:
        url = f"{self.jira_url}/rest/api/2/issue/{quote(key)}/comment"
        page = self._ok(self._http.get(url, auth=self.approver_auth))
        return [
            Comment(str(c["id"]), str((c.get("author") or {}).get("accountId", "")), str(c.get("body") or ""))
            for c in page.get("comments", [])
        ]

    def add_label(self, key: str, label: str, user: str = REQUESTER[0]) -> bool:
        """Add a label as a person (the simulator sends Jira's webhook); False if it was already there."""
        body = {"user": user, "issue": key, "add": [label]}
        return bool(self._ok(self._http.post(f"{self.jira_url}/_sandbox/labels", json=body))["changed"])

    def reply(self, key: str, body: str, user: str = APPROVER[0]) -> Comment:
        """Post a comment as a person (the simulator sends Jira's webhook)."""
        payload = {"user": user, "issue": key, "body": body}
        posted = self._ok(self._http.post(f"{self.jira_url}/_sandbox/comments", json=payload))
        return Comment(str(posted["id"]), str(posted["author"]["accountId"]), body)

    def project_api(self, path: str = "", project: str | None = None) -> str:
        """A project's REST URL (default the demo's calculator project)."""
        return f"{self.gitlab_url}/api/v4/projects/{quote(project or self.project, safe='')}{path}"

    def merge_requests(self, project: str | None = None) -> list[dict[str, Any]]:
        headers = {"PRIVATE-TOKEN": self.gitlab_token}
        url = self.project_api("/merge_requests", project)
        found: list[dict[str, Any]] = self._ok(self._http.get(url, headers=headers, params={"state": "all"}))
        return found

    def branch(self, name: str, project: str | None = None) -> dict[str, Any] | None:
        headers = {"PRIVATE-TOKEN": self.gitlab_token}
        response = self._http.get(
            self.project_api(f"/repository/branches/{quote(name, safe='')}", project), headers=headers
        )
        if response.status_code == 404:
            return None
        found: dict[str, Any] = self._ok(response)
        return found


class Runs:
    """Baton's runs for one subject, read with the queries `baton runs` and `baton show` use."""

    def __init__(self, database_url: str) -> None:
        self._runner = asyncio.Runner()
        self._engine = create_engine(database_url)
        self._sm = sessionmaker(self._engine)

    def close(self) -> None:
        self._runner.run(self._engine.dispose())
        self._runner.close()

    def of(self, subject: str) -> list[dict[str, Any]]:
        """The runs on `subject`, oldest first, each as `baton show --json` prints it."""

        async def body() -> list[dict[str, Any]]:
            rows = await run_queries.listing(self._sm, 1000, None)
            return [await run_queries.detail(self._sm, r.id) for r in reversed(rows) if r.subject == subject]

        return self._runner.run(body())

    def graph(self, run_id: str) -> list[dict[str, Any]]:
        """The task graph of a multi-repository run, as `baton show --json` prints it (empty before the
        plan is approved)."""

        async def body() -> list[dict[str, Any]]:
            return [task_queries.shown(t) for t in await task_queries.of_graph(self._sm, run_id)]

        return self._runner.run(body())


def totals(runs: list[dict[str, Any]]) -> tuple[int, int, float]:
    """Input tokens, output tokens and cost over every phase of the runs."""
    phases = [p for run in runs for p in run["phases"]]
    return (
        sum(p["input_tokens"] or 0 for p in phases),
        sum(p["output_tokens"] or 0 for p in phases),
        sum(p["cost_usd"] or 0.0 for p in phases),
    )
