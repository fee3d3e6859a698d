"""REST routes for notes, discussions (threads, replies, resolving) and award emoji on MRs and issues."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.sandbox.gitlab_sim import render
from bot.sandbox.gitlab_sim.context import Sim
from bot.sandbox.gitlab_sim.http import as_bool, as_int, authenticate, body_of, paginate, path_value, require
from bot.sandbox.gitlab_sim.model import (
    DEVELOPER,
    GUEST,
    ISSUE,
    MERGE_REQUEST,
    Discussion,
    Issue,
    MergeRequest,
    Note,
    Project,
    SimError,
    User,
    not_found,
)

KINDS = {"merge_requests": MERGE_REQUEST, "issues": ISSUE}
MAX_BODY = 1_000_000
POSITION_REQUIRED = ("base_sha", "start_sha", "head_sha", "position_type")


@dataclass(frozen=True)
class Target:
    """The acting user, the project and the MR or issue a request is about."""

    user: User
    project: Project
    noteable: MergeRequest | Issue


def kind_of(noteable: MergeRequest | Issue) -> str:
    return MERGE_REQUEST if isinstance(noteable, MergeRequest) else ISSUE


def check_body(data: dict[str, Any]) -> str:
    body = data.get("body")
    if not isinstance(body, str) or not body.strip():
        raise SimError(400, "400 Bad request - body is missing")
    if len(body) > MAX_BODY:
        raise SimError(400, "400 Bad request - body is too long (maximum is 1000000 characters)")
    return body


def normalize_position(data: Any) -> dict[str, Any] | None:
    """A diff note position as GitLab stores it: every field present, line numbers as integers."""
    if not isinstance(data, dict):
        return None
    missing = [k for k in POSITION_REQUIRED if not data.get(k)]
    if missing:
        raise SimError(400, f"400 Bad request - position[{missing[0]}] is missing")
    lines = {k: None if data.get(k) in (None, "") else int(data[k]) for k in ("old_line", "new_line")}
    position = {k: data.get(k) for k in (*POSITION_REQUIRED, "old_path", "new_path", "line_range")}
    return position | lines


def sorted_notes(notes: list[Note], query: dict[str, str]) -> list[Note]:
    """GitLab's order: `order_by` created_at (default) or updated_at, `sort` desc (default) or asc."""
    field = "updated_at" if query.get("order_by") == "updated_at" else "created_at"
    return sorted(notes, key=lambda n: (getattr(n, field), n.id), reverse=query.get("sort", "desc") != "asc")


async def create_note(
    sim: Sim,
    target: Target,
    body: str,
    *,
    discussion: Discussion | None = None,
    thread: bool = False,
    position: dict[str, Any] | None = None,
) -> Note:
    """Create a note (or a reply in `discussion`) and send the Note Hook, whoever the author is."""
    if discussion is not None:
        note = sim.state.reply(discussion, target.user, body)
    else:
        note = sim.state.add_note(
            target.project, target.noteable, target.user, body, thread=thread, position=position
        )
    await sim.note_event(target.project, note, target.user, target.noteable)
    return note


class NoteRoutes:
    """`/projects/:id/{merge_requests,issues}/:iid/{notes,discussions,award_emoji}` and below."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.state = sim.state

    # -- lookups -----------------------------------------------------------------------------------

    def _target(self, request: Request) -> Target:
        user = authenticate(self.state, request)
        project = self.state.project(path_value(request, "project"))
        require(self.state, project, user, GUEST)
        kind, iid = request.path_params["kind"], as_int(request.path_params["iid"], "Noteable")
        if kind not in KINDS:
            raise not_found()
        if KINDS[kind] == MERGE_REQUEST:
            return Target(user, project, self.state.merge_request(project, iid))
        return Target(user, project, self.state.issue(project, iid))

    def _note(self, t: Target, request: Request) -> Note:
        note = self.state.notes.get(int(request.path_params["note_id"]))
        if note is None or note.noteable_id != t.noteable.id or note.noteable_type != kind_of(t.noteable):
            raise not_found("Note")
        return note

    def _discussion(self, t: Target, request: Request) -> Discussion:
        return self.state.discussion(t.project, t.noteable, str(request.path_params["discussion_id"]))

    def _may_resolve(self, t: Target) -> None:
        is_author = isinstance(t.noteable, MergeRequest) and t.noteable.author_id == t.user.id
        if not is_author and self.state.access_level(t.project, t.user) < DEVELOPER:
            raise SimError(403, "403 Forbidden")

    def _awardable(self, t: Target, request: Request) -> tuple[str, int]:
        if "note_id" in request.path_params:
            return "Note", self._note(t, request).id
        return kind_of(t.noteable), t.noteable.id

    # -- notes ---------------------------------------------------------------------------------------

    async def list_notes(self, request: Request) -> Response:
        t = self._target(request)
        notes = sorted_notes(self.state.notes_of(t.noteable), dict(request.query_params))
        return paginate(request, [render.note(self.state, n) for n in notes])

    async def post_note(self, request: Request) -> Response:
        t = self._target(request)
        note = await create_note(self.sim, t, check_body(await body_of(request)))
        return JSONResponse(render.note(self.state, note), status_code=201)

    async def get_note(self, request: Request) -> Response:
        t = self._target(request)
        return JSONResponse(render.note(self.state, self._note(t, request)))

    async def put_note(self, request: Request) -> Response:
        """Edit the body (author only; sends a Note Hook with `action: update`) or resolve the thread."""
        t = self._target(request)
        note = self._note(t, request)
        data = await body_of(request)
        if "resolved" in data and "body" not in data:
            self._may_resolve(t)
            self.state.resolve(self.state.discussions[note.discussion_id], t.user, as_bool(data["resolved"]))
            return JSONResponse(render.note(self.state, note))
        if note.author_id != t.user.id:
            raise SimError(403, "403 Forbidden")
        self.state.edit_note(note, check_body(data))
        await self.sim.note_event(t.project, note, t.user, t.noteable, action="update")
        return JSONResponse(render.note(self.state, note))

    # -- discussions ---------------------------------------------------------------------------------

    async def list_discussions(self, request: Request) -> Response:
        t = self._target(request)
        return paginate(
            request, [render.discussion(self.state, d) for d in self.state.discussions_of(t.noteable)]
        )

    async def post_discussion(self, request: Request) -> Response:
        t = self._target(request)
        data = await body_of(request)
        position = normalize_position(data.get("position"))
        note = await create_note(self.sim, t, check_body(data), thread=True, position=position)
        return JSONResponse(
            render.discussion(self.state, self.state.discussions[note.discussion_id]), status_code=201
        )

    async def get_discussion(self, request: Request) -> Response:
        t = self._target(request)
        return JSONResponse(render.discussion(self.state, self._discussion(t, request)))

    async def put_discussion(self, request: Request) -> Response:
        t = self._target(request)
        discussion = self._discussion(t, request)
        data = await body_of(request)
        if "resolved" not in data:
            raise SimError(400, "400 Bad request - resolved is missing")
        self._may_resolve(t)
        self.state.resolve(discussion, t.user, as_bool(data["resolved"]))
        return JSONResponse(render.discussion(self.state, discussion))

    async def post_reply(self, request: Request) -> Response:
        t = self._target(request)
        discussion = self._discussion(t, request)
        note = await create_note(self.sim, t, check_body(await body_of(request)), discussion=discussion)
        return JSONResponse(render.note(self.state, note), status_code=201)

    async def put_reply(self, request: Request) -> Response:
        t = self._target(request)
        if int(request.path_params["note_id"]) not in self._discussion(t, request).note_ids:
            raise not_found("Note")
        return await self.put_note(request)

    # -- award emoji ---------------------------------------------------------------------------------

    async def list_awards(self, request: Request) -> Response:
        t = self._target(request)
        kind, awardable_id = self._awardable(t, request)
        return paginate(
            request, [render.award(self.state, a) for a in self.state.awards_on(kind, awardable_id)]
        )

    async def post_award(self, request: Request) -> Response:
        t = self._target(request)
        kind, awardable_id = self._awardable(t, request)
        name = str((await body_of(request)).get("name") or "").strip(":")
        if not name:
            raise SimError(400, "400 Bad request - name is missing")
        award = self.state.award(kind, awardable_id, t.user, name)
        return JSONResponse(render.award(self.state, award), status_code=201)

    def routes(self) -> list[Route]:
        base = "/api/v4/projects/{project}/{kind}/{iid}"
        thread = base + "/discussions/{discussion_id}"
        return [
            Route(base + "/notes", self.list_notes, methods=["GET"]),
            Route(base + "/notes", self.post_note, methods=["POST"]),
            Route(base + "/notes/{note_id:int}", self.get_note, methods=["GET"]),
            Route(base + "/notes/{note_id:int}", self.put_note, methods=["PUT"]),
            Route(base + "/discussions", self.list_discussions, methods=["GET"]),
            Route(base + "/discussions", self.post_discussion, methods=["POST"]),
            Route(thread, self.get_discussion, methods=["GET"]),
            Route(thread, self.put_discussion, methods=["PUT"]),
            Route(thread + "/notes", self.post_reply, methods=["POST"]),
            Route(thread + "/notes/{note_id:int}", self.put_reply, methods=["PUT"]),
            Route(base + "/award_emoji", self.list_awards, methods=["GET"]),
            Route(base + "/award_emoji", self.post_award, methods=["POST"]),
            Route(base + "/notes/{note_id:int}/award_emoji", self.list_awards, methods=["GET"]),
            Route(base + "/notes/{note_id:int}/award_emoji", self.post_award, methods=["POST"]),
        ]


def routes(sim: Sim) -> list[Route]:
    return NoteRoutes(sim).routes()
