"""`baton demo` for a ticket that spans several repositories (a scenario with `ticket.components`).

The plan is proposed before any code is written; the approver approves it; the tasks run (in parallel
where nothing they depend on is unfinished); one proposal lists every repository; the approver approves
it; Baton opens one merge request per repository, each linking the others, and links them on the ticket.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from bot.sandbox.demo.scenario import SERVICE_REPOSITORIES, TICKET_KEY
from bot.sandbox.demo.steps import BRANCH_PREFIX, Demo
from bot.sandbox.demo.watch import APPROVER, Comment, is_proposal, is_status
from bot.store.tasks import TASK_KIND

PLAN_RE = re.compile(r"\*Plan\* \{\{([0-9a-f]+)\}\}")
PROPOSAL_RE = re.compile(r"\*Proposal\* \{\{([0-9a-f]+)\}\}")
FINISHED = ("done", "failed", "blocked", "cancelled")


def _cost(task: dict[str, Any]) -> str:
    seconds = task.get("duration_s")
    took = f"{seconds:.0f} s" if isinstance(seconds, int | float) else "-"
    return f"{took}, ${float(task.get('cost_usd') or 0.0):.4f}"


def stuck_reason(graph: list[dict[str, Any]]) -> str:
    """Why the graph cannot finish: each failed task with its error, what waits for it, how to retry."""
    failed = [t for t in graph if t["status"] == "failed"]
    waiting = [t["task"] for t in graph if t["status"] in ("blocked", "pending")]
    parts = [
        f"task {t['task']} ({t['repository']}) failed: {t['error'] or 'no error recorded'}" for t in failed
    ]
    if waiting:
        parts.append(f"{', '.join(waiting)} wait{'s' if len(waiting) == 1 else ''} for it")
    parts.append("a person would reply " + " or ".join(f"/retry {t['task']}" for t in failed))
    return "; ".join(parts)


class MultiDemo(Demo):
    """The multi-repository steps; `play()` raises `DemoFailed` at the first step that does not happen."""

    reported_kinds = (TASK_KIND,)  # a failed task: the tasks step says what waits for it and which /retry

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.total = 8 if self.world.expect.wants_mr else 6
        self.repositories = [SERVICE_REPOSITORIES[c] for c in self.world.ticket.components]
        self.mrs: dict[str, dict[str, Any]] = {}

    def _steps(self) -> None:
        self.ready()
        self.label_ticket()
        self.acknowledged()
        plan = self.planned()
        self.approve_id(4, "the plan", plan)
        self.tasks_ran()
        proposal = self.proposed_all()
        if self.world.expect.wants_mr:
            self.approve_id(7, "the proposal", proposal)
            self.shipped_all()
        self.summary()

    def acknowledged(self) -> None:
        started = self.begin(2, "Baton acknowledges the ticket")

        def probe() -> Comment | None:
            mine = (c for c in self.bot_comments() if not is_status(c.body) and not is_proposal(c.body))
            return next(mine, None)

        ack = self.wait("the acknowledgement", probe)
        self.seen.ack = ack
        self.seen.status_comment = next((c for c in self.bot_comments() if is_status(c.body)), None)
        self.done(
            started,
            f"acknowledgement: {ack.headline}",
            f"look: {self.jira_curl(f'/rest/api/2/issue/{TICKET_KEY}/comment')}",
        )

    def marked(self, pattern: re.Pattern[str]) -> tuple[Comment, str] | None:
        """The newest bot comment whose text carries `pattern`, and the id it names."""
        for comment in reversed(self.bot_comments()):
            found = pattern.search(comment.body)
            if found:
                return comment, found[1]
        return None

    def planned(self) -> str:
        started = self.begin(3, "Baton plans the work across the repositories and proposes the plan")
        comment, plan_id = self.wait("the plan proposal", lambda: self.marked(PLAN_RE))
        rows = [line for line in comment.body.splitlines() if line.startswith("| ")]
        missing = [r for r in self.repositories if not any(r in row for row in rows)]
        if missing:
            raise self.fail(f"the plan does not name {', '.join(missing)}")
        self.done(
            started,
            f"plan {plan_id}: {comment.headline}",
            *(f"  {' '.join(row.split())[:150]}" for row in rows),
            "nothing is written before the plan is approved",
            f"look: {self.jira_curl(f'/rest/api/2/issue/{TICKET_KEY}/comment/{comment.id}')}",
        )
        return plan_id

    def approve_id(self, step: int, what: str, proposal_id: str) -> None:
        started = self.begin(
            step, f"{APPROVER[0]} (in baton-approvers) replies /approve {proposal_id} to {what}"
        )
        reply = self.sandbox.reply(TICKET_KEY, f"/approve {proposal_id}", APPROVER[0])
        self.done(started, f"comment {reply.id} posted; Jira sent the comment webhook to Baton")

    def tasks_ran(self) -> None:
        started = self.begin(5, "The tasks run: in parallel where they can, each after what it depends on")
        shown: set[str] = set()

        def probe() -> list[dict[str, Any]] | None:
            graph = self.runs.graph(self.seen.run_id)
            for task in graph:
                if task["status"] in FINISHED and task["task"] not in shown:
                    shown.add(task["task"])
                    needs = ", ".join(task["depends_on"]) or "nothing"
                    self.say(
                        f"      task {task['task']} {task['repository']}: {task['status']} "
                        f"({_cost(task)}; depended on {needs})"
                    )
            failed = [t for t in graph if t["status"] == "failed"]
            if failed and all(t["status"] in FINISHED for t in graph):  # its dependants marked blocked too
                raise self.fail(stuck_reason(graph))
            return graph if graph and all(t["status"] == "done" for t in graph) else None

        graph = self.wait("every task to finish", probe)
        self.done(
            started,
            f"{len(graph)} tasks done in {len({t['repository'] for t in graph})} repositories",
            f"see the graph: {self.show_command(self.seen.run_id)}   (or /status on the ticket)",
        )

    def proposed_all(self) -> str:
        started = self.begin(6, "Baton reviews the repositories together and posts one proposal")
        comment, proposal_id = self.wait(
            "the proposal over every repository", lambda: self.marked(PROPOSAL_RE)
        )
        missing = [r for r in self.repositories if r not in comment.body]
        if missing:
            raise self.fail(f"the proposal does not list {', '.join(missing)}")
        review = next((ln.strip() for ln in comment.body.splitlines() if "review:*" in ln.casefold()), "")
        self.done(
            started,
            f"proposal {proposal_id}: {comment.headline}",
            *(f"  {r}" for r in self.repositories),
            f"  {review[:200]}" if review else "  (no review line)",
            f"look: {self.jira_curl(f'/rest/api/2/issue/{TICKET_KEY}/comment/{comment.id}')}",
        )
        return proposal_id

    def shipped_all(self) -> None:
        count = len(self.repositories)
        started = self.begin(
            8, f"Baton opens {count} merge requests, each linking the others, and links them"
        )

        def probe() -> tuple[dict[str, list[dict[str, Any]]], Comment] | None:
            mrs = {r: self.sandbox.merge_requests(r) for r in self.repositories}
            if not all(mrs.values()):
                return None
            urls = [m["web_url"] for found in mrs.values() for m in found]
            link = next((c for c in self.bot_comments() if all(u in c.body for u in urls)), None)
            return (mrs, link) if link else None

        mrs, link = self.wait("a merge request in every repository and the links on the ticket", probe)
        for repository, found in mrs.items():
            if len(found) != 1:
                raise self.fail(f"expected one MR in {repository}, found {len(found)}")
            mr = found[0]
            if not mr["source_branch"].startswith(BRANCH_PREFIX):
                raise self.fail(f"{repository}'s MR comes from {mr['source_branch']}, not a Baton branch")
            if self.sandbox.branch(mr["source_branch"], repository) is None:
                raise self.fail(f"the branch {mr['source_branch']} is not in {repository}")
            self.mrs[repository] = mr
        self.done(
            started,
            *(f"{r}: MR !{m['iid']} {m['web_url']}" for r, m in self.mrs.items()),
            f"on the ticket: {link.headline}",
            "each MR has a note linking the other merge requests and the ticket",
        )

    def last_seen(self) -> list[str]:
        lines = super().last_seen()
        try:
            graph = self.runs.graph(self.seen.run_id) if self.seen.run_id else []
            lines[-1:-1] = [f"task {t['task']} {t['repository']}: {t['status']}" for t in graph]
            lines[-1:-1] = [
                f"{len(self.sandbox.merge_requests(r))} merge request(s) in {r}" for r in self.repositories
            ]
        except (httpx.HTTPError, OSError) as exc:
            lines.insert(-1, f"could not read the graph or the MRs: {type(exc).__name__}")
        return lines

    def summary(self) -> None:
        super().summary()
        for repository, mr in self.mrs.items():
            self.say(f"  MR     {repository}: {mr['web_url']}")
