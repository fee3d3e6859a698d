"""GitLab Merge Request, Push and Pipeline hooks: new code on a merge request, the merge of a merge
request Baton opened (its branch starts with `baton/`), which starts the learning loop, and a failed
pipeline on such a merge request, which starts a CI analysis."""

from __future__ import annotations

from types import MappingProxyType

from bot.events.gitlab import MergeRequestEvent, PipelineEvent, PushEvent
from bot.git.branch import PREFIX as BATON_BRANCH_PREFIX
from bot.triggers import MergeRequestMerged, MergeRequestPushed, Person, PipelineFailed
from handlers.actions import Action, Enqueue, Ignore
from handlers.context import HandlerContext

CI_ANALYSIS = "analyze-ci"  # the workflow a failed pipeline starts (also `/analyze-ci`, config/skills.yaml)
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


def pipeline_skip(event: PipelineEvent) -> str | None:
    """Why this pipeline event starts no CI analysis, or None (a failed pipeline on Baton's open MR)."""
    status, mr = event.object_attributes.status, event.merge_request
    if status != "failed":
        return f"a {status[:20]!r} pipeline needs no analysis (only failed ones on Baton's merge requests)"
    if mr is None:
        return "a failed pipeline of no merge request is not analyzed"
    if not is_baton_branch(mr.source_branch):
        return (
            "a failed pipeline on a merge request Baton did not open is not analyzed; reply /analyze-ci there"
        )
    if mr.source_project_id is not None and mr.source_project_id != event.project.id:
        return "a failed pipeline of a fork's merge request is not analyzed"
    if mr.state not in (None, "opened"):
        return f"the merge request is {mr.state[:20]}; its pipeline is not analyzed"
    return None


def pipeline_changed(event: PipelineEvent, ctx: HandlerContext) -> Action:
    """A failed pipeline on an open merge request Baton opened (its `baton/` branch): a CI analysis run,
    once per pipeline. Anything else (other MRs, branch pipelines, pending, running, passed) is ignored."""
    reason, mr = pipeline_skip(event), event.merge_request
    if reason or mr is None:
        return Ignore(reason or "no merge request")
    attrs, project = event.object_attributes, event.project
    user = event.user
    return Enqueue(
        kind=CI_ANALYSIS,
        subject=f"gitlab:{project.path_with_namespace}!{mr.iid}",
        origin=f"gitlab:pipeline:{project.id}:{attrs.id}:failed",
        input=PipelineFailed(
            project_id=project.id,
            project_path=project.path_with_namespace,
            mr_iid=mr.iid,
            pipeline_id=attrs.id,
            source_branch=mr.source_branch,
            sha=attrs.sha,
            actor=Person(id=user.id, username=user.username) if user else Person(),
        ),
    )
