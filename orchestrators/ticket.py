"""Reading the ticket and the project mapping for a run: Jira issue → brief inputs, Jira project → GitLab."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.clients.jira import JiraIssue
from config.projects import Project
from orchestrators.brief import CommentInfo, TicketInfo
from orchestrators.resources import Clients


class NotMapped(LookupError):
    """No GitLab project is mapped to the ticket's Jira project."""


def project_for(clients: Clients, issue: JiraIssue) -> Project:
    project = clients.projects.for_jira(issue.project_key)
    if project is None:
        raise NotMapped(
            f"no GitLab project is mapped to Jira project {issue.project_key} (see config/projects.yaml)"
        )
    return project


def ticket_info(issue: JiraIssue, jira_url: str) -> TicketInfo:
    return TicketInfo(
        key=issue.key,
        summary=issue.summary,
        description=issue.description or "",
        labels=issue.labels,
        status=issue.status,
        url=f"{jira_url.rstrip('/')}/browse/{issue.key}",
    )


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def comments(issue: JiraIssue) -> list[CommentInfo]:
    """The ticket's recent human comments (Baton's own are left out of the brief)."""
    from bot.effects import is_jira_bot_text

    return [
        CommentInfo(c.author.display_name if c.author else "unknown", _when(c.created), c.body)
        for c in issue.comments
        if not is_jira_bot_text(c.body)
    ]


def linked(issue: JiraIssue) -> list[TicketInfo]:
    return [TicketInfo(key=link.key, summary=f"{link.type}: {link.summary}") for link in issue.links]
