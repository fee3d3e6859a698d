"""Jira `jira:issue_updated`: the trigger label being added starts an implementation run, the design
label (`BATON_DESIGN_LABEL`, default `ai-design`) a `design` run that drafts an ADR."""

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


def label_added(event: IssueUpdatedEvent, ctx: HandlerContext, kind: str = "implement") -> Action:
    """Enqueue `kind` (`implement`, or `design` for the design label) for the issue, once per changelog."""
    issue = event.issue
    stamp = "unknown" if event.timestamp is None else event.timestamp
    origin = f"jira:issue:{issue.id}:labels:{stamp}"
    if event.changelog and event.changelog.id:
        origin = f"jira:changelog:{event.changelog.id}"
    return Enqueue(
        kind=kind,
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


def trigger_label_added(event: IssueUpdatedEvent, ctx: HandlerContext, label: str | None = None) -> bool:
    """Whether `label` (default: the trigger label) is among the labels this change added."""
    wanted = label or ctx.trigger_label
    items = event.changelog.items if event.changelog else []
    return any(i.field == LABELS_FIELD and wanted in added_labels(i) for i in items)


def issue_updated(event: IssueUpdatedEvent, ctx: HandlerContext) -> Action:
    """The trigger label wins when one change adds both labels (the design is asked for on its own)."""
    for label, kind in ((ctx.trigger_label, "implement"), (ctx.design_label, "design")):
        if trigger_label_added(event, ctx, label):
            if jira_comment.by_bot(event.user, "", ctx):
                return Ignore("the bot added the label itself")
            return label_added(event, ctx, kind)
    if event.issue_event_type_name == "issue_commented" and event.comment is not None:
        return jira_comment.new_comment(issue_ref(event.issue), event.comment, ctx)
    if event.issue_event_type_name in EDITED_COMMENT_TYPES:
        return Ignore("edited or deleted comments never trigger")
    return Ignore(f"no {ctx.trigger_label!r} label added")
