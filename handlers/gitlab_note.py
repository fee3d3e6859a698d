"""GitLab Note Hook: slash commands in merge request comments and thread replies."""

from __future__ import annotations

import re

from bot.effects import is_bot_text
from bot.events.gitlab import MergeRequestRef, NoteEvent
from bot.triggers import Person, ThreadCommand, ThreadReplyTarget
from handlers.actions import Action, Enqueue, Ignore, Reply
from handlers.commands import Command, did_you_mean, first_known, parse_commands
from handlers.context import HandlerContext

_USERNAME_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}")


def by_bot(event: NoteEvent, ctx: HandlerContext) -> bool:
    """The bot's own note: its user id, its username (GitLab usernames are case-insensitive) or marker."""
    bot_id, bot_name = ctx.bot.gitlab_user_id, ctx.bot.gitlab_username
    ids = {event.user.id, event.object_attributes.author_id}
    if bot_id is not None and bot_id in ids:
        return True
    if bot_name and event.user.username.casefold() == bot_name.casefold():
        return True
    return is_bot_text(event.object_attributes.note)


def skip_reason(event: NoteEvent, ctx: HandlerContext) -> str | None:
    """Why this note can never carry a command, or None."""
    attrs = event.object_attributes
    if attrs.system:
        return "system note"
    if attrs.action == "update":
        return "edited notes never trigger"
    if by_bot(event, ctx):
        return "the bot's own note"
    if event.confidential:
        return "confidential or internal note"
    if attrs.noteable_type != "MergeRequest":
        return f"notes on {attrs.noteable_type[:40]!r} are not handled yet"
    return None


def mention(event: NoteEvent) -> str:
    username = event.user.username
    return f"@{username}" if _USERNAME_RE.fullmatch(username) else "Hello"


def note_input(event: NoteEvent, mr: MergeRequestRef, command: Command) -> ThreadCommand:
    attrs = event.object_attributes
    return ThreadCommand(
        project_id=event.project.id,
        project_path=event.project.path_with_namespace,
        mr_iid=mr.iid,
        note_id=attrs.id,
        discussion_id=attrs.discussion_id,
        note_type=attrs.type,
        position=attrs.position.model_dump() if attrs.position else None,
        args=command.args,
        author=Person(id=event.user.id, username=event.user.username),
    )


def note_posted(event: NoteEvent, ctx: HandlerContext) -> Action:
    """A new note: the first known command starts a run; a near-miss gets a "did you mean" reply."""
    reason, mr = skip_reason(event, ctx), event.merge_request
    if reason or mr is None:  # NoteEvent guarantees a merge request on merge request notes
        return Ignore(reason or "note without a merge request")
    handles = [f"@{ctx.bot.gitlab_username}"] if ctx.bot.gitlab_username else []
    commands = parse_commands(
        event.object_attributes.note, syntax="markdown", skills=ctx.skills, mentions=handles
    )
    known = first_known(commands, ctx.skills)
    subject = f"gitlab:{event.project.path_with_namespace}!{mr.iid}"
    origin = f"gitlab:note:{event.project.id}:{event.object_attributes.id}"
    skill = ctx.skills.lookup(known.name) if known else None
    if known and skill:
        return Enqueue(
            kind=skill.orchestrator, subject=subject, origin=origin, input=note_input(event, mr, known)
        )
    text = did_you_mean(mention(event), commands[0], skills=ctx.skills) if commands else None
    if text is None:
        return Ignore("no known command in the note" if commands else "no command in the note")
    target = ThreadReplyTarget(
        project_id=event.project.id, mr_iid=mr.iid, discussion_id=event.object_attributes.discussion_id
    )
    return Reply(subject=subject, origin=origin, target=target, text=text)
