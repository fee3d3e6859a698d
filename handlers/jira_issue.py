"""Jira `jira:issue_updated`: the trigger label being added starts an implementation run."""

from __future__ import annotations

from bot.events.jira import ChangeItem, IssueUpdatedEvent, issue_ref
from bot.triggers import Person, TicketLabelled
from handlers import jira_comment
from handlers.actions import Action, Enqueue, Ignore
from handlers.context import HandlerContext

LABELS_FIELD = "labels"
EDITED_COMMENT_TYPES = frozenset({"issue_comment_edited", "issue_comment_deleted"})


def added_labels(item: ChangeItem) -> set[str]:
    """Jira lists labels space-separated (labels cannot contain spaces)."""
    return set((item.to_string or "").split()) - set((item.from_string or "").split())


def label_added(event: IssueUpdatedEvent, ctx: HandlerContext) -> Action:
    """Enqueue `implement` for the issue, once per changelog."""
    issue = event.issue
    stamp = "unknown" if event.timestamp is None else event.timestamp
    origin = f"jira:issue:{issue.id}:labels:{stamp}"
    if event.changelog and event.changelog.id:
        origin = f"jira:changelog:{event.changelog.id}"
    return Enqueue(
        kind="implement",
        subject=f"jira:{issue.key}",
        origin=origin,
        input=TicketLabelled(
            issue_key=issue.key,
            issue_id=issue.id,
            project_key=issue.fields.project.key if issue.fields.project else None,
            summary=issue.fields.summary,
            actor=Person.model_validate(event.user.identity()) if event.user else Person(),
        ),
    )


def trigger_label_added(event: IssueUpdatedEvent, ctx: HandlerContext) -> bool:
    items = event.changelog.items if event.changelog else []
    return any(i.field == LABELS_FIELD and ctx.trigger_label in added_labels(i) for i in items)


def issue_updated(event: IssueUpdatedEvent, ctx: HandlerContext) -> Action:
    if trigger_label_added(event, ctx):
        if jira_comment.by_bot(event.user, "", ctx):
            return Ignore("the bot added the label itself")
        return label_added(event, ctx)
    if event.issue_event_type_name == "issue_commented" and event.comment is not None:
        return jira_comment.new_comment(issue_ref(event.issue), event.comment, ctx)
    if event.issue_event_type_name in EDITED_COMMENT_TYPES:
        return Ignore("edited or deleted comments never trigger")
    return Ignore(f"no {ctx.trigger_label!r} label added")
