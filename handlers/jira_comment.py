"""Jira comment events: slash commands in new comments; edits and deletions never trigger."""

from __future__ import annotations

import re

from bot.effects import is_bot_text
from bot.events.jira import CommentEvent, IssueRef, JiraComment, JiraUser
from bot.triggers import JiraReplyTarget, Person, TicketCommand
from handlers.actions import Action, Enqueue, Ignore, Reply
from handlers.commands import did_you_mean, first_known, parse_commands
from handlers.context import HandlerContext

_MENTIONABLE_RE = re.compile(r"[A-Za-z0-9:._@-]{1,128}")


def by_bot(author: JiraUser | None, body: str, ctx: HandlerContext) -> bool:
    """The bot's own comment: its account id (Cloud), its user name (Data Center) or Baton's marker."""
    if author is not None:
        if ctx.bot.jira_account_id and author.account_id == ctx.bot.jira_account_id:
            return True
        if ctx.bot.jira_name and author.name == ctx.bot.jira_name:
            return True
    return is_bot_text(body)


def mention(author: JiraUser | None) -> str:
    """Wiki-markup mention: `[~accountid:…]` on Cloud, `[~name]` on Data Center."""
    if author and author.account_id and _MENTIONABLE_RE.fullmatch(author.account_id):
        return f"[~accountid:{author.account_id}]"
    if author and author.name and _MENTIONABLE_RE.fullmatch(author.name):
        return f"[~{author.name}]"
    return "Hello"


def new_comment(issue: IssueRef, comment: JiraComment, ctx: HandlerContext) -> Action:
    """A new comment (from `comment_created` or an `issue_commented` update): run its first command."""
    if by_bot(comment.author, comment.body, ctx):
        return Ignore("the bot's own comment")
    handles = [f"[~accountid:{ctx.bot.jira_account_id}]"] if ctx.bot.jira_account_id else []
    handles += [f"[~{ctx.bot.jira_name}]"] if ctx.bot.jira_name else []
    commands = parse_commands(comment.body, syntax="jira", skills=ctx.skills, mentions=handles)
    known = first_known(commands, ctx.skills)
    subject, origin = f"jira:{issue.key_or_id}", f"jira:comment:{comment.id}"
    skill = ctx.skills.lookup(known.name) if known else None
    if known and skill:
        author = Person.model_validate(comment.author.identity()) if comment.author else Person()
        command = TicketCommand(
            issue_key=issue.key, issue_id=issue.id, comment_id=comment.id, args=known.args, author=author
        )
        return Enqueue(skill.orchestrator, subject, origin, command)
    text = (
        did_you_mean(mention(comment.author), commands[0], syntax="jira", skills=ctx.skills)
        if commands
        else None
    )
    if text is None:
        return Ignore("no known command in the comment" if commands else "no command in the comment")
    target = JiraReplyTarget(issue_key=issue.key_or_id)
    return Reply(subject=subject, origin=origin, target=target, text=text)


def comment_created(event: CommentEvent, ctx: HandlerContext) -> Action:
    return new_comment(event.issue_ref, event.comment, ctx)


def comment_changed(event: CommentEvent, ctx: HandlerContext) -> Action:
    """`comment_updated` and `comment_deleted`."""
    if event.webhook_event == "comment_deleted":
        return Ignore("deleted comments never trigger")
    return Ignore("edited comments never trigger")
