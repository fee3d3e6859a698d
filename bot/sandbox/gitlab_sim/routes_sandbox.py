"""Sandbox-only endpoints: comment as any user, steer faults, announce pushes, read webhook deliveries."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.sandbox.gitlab_sim import render
from bot.sandbox.gitlab_sim.context import Sim
from bot.sandbox.gitlab_sim.http import as_bool, body_of
from bot.sandbox.gitlab_sim.model import Delivery, Issue, MergeRequest, Project, SimError
from bot.sandbox.gitlab_sim.routes_notes import Target, check_body, create_note, normalize_position
from bot.sandbox.gitlab_sim.state import GitLabState


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "hook_id": d.hook_id,
        "url": d.url,
        "event": d.event,
        "idempotency_key": d.idempotency_key,
        "event_uuid": d.event_uuid,
        "attempts": [{"status": a.status, "error": a.error} for a in d.attempts],
        "succeeded": d.succeeded,
    }


def _noteable(state: GitLabState, project: Project, data: dict[str, Any]) -> MergeRequest | Issue:
    mr_iid = data.get("merge_request_iid", data.get("mr_iid"))
    if mr_iid is not None:
        return state.merge_request(project, int(mr_iid))
    if data.get("issue_iid") is not None:
        return state.issue(project, int(data["issue_iid"]))
    raise SimError(400, "400 Bad request - merge_request_iid or issue_iid is missing")


def routes(sim: Sim) -> list[Route]:
    state = sim.state

    async def sandbox_note(request: Request) -> Response:
        """Create a note as `user` (e.g. a human typing `/approve`); fires the Note Hook like any note.

        Body: `user`, `project`, `merge_request_iid` or `issue_iid`, `body`, and optionally
        `discussion_id` (reply in that thread), `thread: true` or `position` (start a thread).
        The answer is the note plus its `discussion_id`.
        """
        data = await body_of(request)
        project = state.project(str(data.get("project", "")))
        target = Target(state.user_named(str(data.get("user", ""))), project, _noteable(state, project, data))
        discussion_id = data.get("discussion_id")
        discussion = state.discussion(project, target.noteable, str(discussion_id)) if discussion_id else None
        position = normalize_position(data.get("position"))
        thread = as_bool(data.get("thread", False)) or position is not None
        note = await create_note(
            sim, target, check_body(data), discussion=discussion, thread=thread, position=position
        )
        return JSONResponse(render.note(state, note) | {"discussion_id": note.discussion_id}, status_code=201)

    async def faults(request: Request) -> Response:
        try:
            state.faults.apply(await body_of(request))
        except (TypeError, ValueError) as exc:
            raise SimError(400, f"400 Bad request - {exc}") from exc
        return JSONResponse({"latency_ms": state.faults.latency_s * 1000, "hanging": state.faults.hanging})

    async def pushed(request: Request) -> Response:
        """Announce that `branch` moved (after a git push): MR Hooks with `action: update` and `oldrev`."""
        data = await body_of(request)
        project = state.project(str(data.get("project", "")))
        actor = state.user_named(str(data["user"])) if data.get("user") else None
        updated = await sim.branch_moved(project, str(data.get("branch", "")), actor)
        return JSONResponse({"updated": updated})

    async def deliveries(request: Request) -> Response:
        return JSONResponse(
            [delivery_json(d) for d in state.deliveries_of(request.query_params.get("event"))]
        )

    return [
        Route("/_sandbox/notes", sandbox_note, methods=["POST"]),
        Route("/_sandbox/faults", faults, methods=["POST"]),
        Route("/_sandbox/push", pushed, methods=["POST"]),
        Route("/_sandbox/deliveries", deliveries, methods=["GET"]),
    ]
