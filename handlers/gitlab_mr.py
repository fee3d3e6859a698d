"""GitLab Merge Request, Push and Pipeline hooks: new code on a merge request, and the merge of a
merge request Baton opened (its branch starts with `baton/`), which starts the learning loop."""

from __future__ import annotations

from types import MappingProxyType

from bot.events.gitlab import MergeRequestEvent, PipelineEvent, PushEvent
from bot.git.branch import PREFIX as BATON_BRANCH_PREFIX
from bot.triggers import MergeRequestMerged, MergeRequestPushed, Person
from handlers.actions import Action, Enqueue, Ignore
from handlers.context import HandlerContext

IGNORED_ACTIONS = MappingProxyType(
    {
        "open": "a new merge request starts nothing; reply with a command to ask for something",
        "reopen": "reopening a merge request starts nothing",
        "close": "closed merge requests are not handled yet",
        "merge": "the merged branch is not one Baton made; nothing to learn from",
        "update": "metadata-only update (no new commits)",
        "approved": "GitLab approvals are not Baton approvals; reply /approve on the proposal",
        "approval": "GitLab approvals are not Baton approvals; reply /approve on the proposal",
        "unapproved": "GitLab approvals are not Baton approvals",
        "unapproval": "GitLab approvals are not Baton approvals",
    }
)


def is_baton_branch(branch: str) -> bool:
    """A branch Baton made for a ticket (`bot.git.branch.branch_name`)."""
    return branch.startswith(BATON_BRANCH_PREFIX) and len(branch) > len(BATON_BRANCH_PREFIX)


def merged(event: MergeRequestEvent) -> Action:
    """Baton's merge request was merged: a `learn` run, once per merge request."""
    attrs = event.object_attributes
    project = event.project
    return Enqueue(
        kind="learn",
        subject=f"gitlab:{project.path_with_namespace}!{attrs.iid}",
        origin=f"gitlab:mr:{project.id}:{attrs.iid}:merge",
        input=MergeRequestMerged(
            project_id=project.id,
            project_path=project.path_with_namespace,
            mr_iid=attrs.iid,
            source_branch=attrs.source_branch,
            target_branch=attrs.target_branch,
            head_sha=attrs.last_commit.id if attrs.last_commit else None,
            web_url=attrs.url,
            actor=Person(id=event.user.id, username=event.user.username),
        ),
    )


def merge_request_changed(event: MergeRequestEvent, ctx: HandlerContext) -> Action:
    """New commits on a merge request (`update` with `oldrev`) make earlier proposals stale; the merge
    of one of Baton's own merge requests starts `learn`."""
    attrs = event.object_attributes
    if attrs.action == "merge" and is_baton_branch(attrs.source_branch):
        return merged(event)
    if attrs.action == "update" and attrs.oldrev and attrs.last_commit:
        head = attrs.last_commit.id
        return Enqueue(
            kind="mr_pushed",
            subject=f"gitlab:{event.project.path_with_namespace}!{attrs.iid}",
            origin=f"gitlab:mr:{event.project.id}:{attrs.iid}:push:{head}",
            input=MergeRequestPushed(
                project_id=event.project.id,
                mr_iid=attrs.iid,
                source_branch=attrs.source_branch,
                head_sha=head,
                oldrev=attrs.oldrev,
                actor=Person(id=event.user.id, username=event.user.username),
            ),
        )
    action = attrs.action or "(none)"
    return Ignore(IGNORED_ACTIONS.get(action, f"merge request action {action[:40]!r} is not handled"))


def branch_pushed(event: PushEvent, ctx: HandlerContext) -> Action:
    return Ignore("push events are not handled; merge request updates carry new commits")


def pipeline_changed(event: PipelineEvent, ctx: HandlerContext) -> Action:
    return Ignore("pipeline events are not handled yet")
