"""REST routes for issues: get/edit an issue, its comments (v2 wiki markup, v3 ADF), transitions, search."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.sandbox.jira_sim import adf, render
from bot.sandbox.jira_sim.http import authed, base_url, int_param, json_body, list_param
from bot.sandbox.jira_sim.model import Change, Issue, User
from bot.sandbox.jira_sim.state import JiraState, SimError
from bot.sandbox.jira_sim.webhooks import WebhookSender

V2_PREFIXES = ("/rest/api/2", "/rest/api/latest")
ALL_FIELDS = {"*all", "*navigable", ""}
FIELD_LIST = [
    ("summary", "Summary"),
    ("description", "Description"),
    ("labels", "Labels"),
    ("status", "Status"),
    ("project", "Project"),
    ("issuetype", "Issue Type"),
    ("issuelinks", "Linked Issues"),
    ("comment", "Comment"),
]


def wanted_fields(names: list[str]) -> set[str] | None:
    chosen = {n for n in names if not n.startswith("-")}
    return None if not chosen or chosen & ALL_FIELDS else chosen


def _label_ops(update: dict[str, Any]) -> tuple[list[str], list[str], list[str] | None]:
    add: list[str] = []
    remove: list[str] = []
    set_to: list[str] | None = None
    for op in update.get("labels", []):
        if not isinstance(op, dict):
            raise SimError(400, "", {"labels": "Operation value must be an object."})
        add += [str(op["add"])] if "add" in op else []
        remove += [str(op["remove"])] if "remove" in op else []
        set_to = [str(v) for v in op["set"]] if "set" in op else set_to
    return add, remove, set_to


class IssueApi:
    """Handlers for `/rest/api/2/issue…`, `/search`, `/field` and `/rest/api/3/issue/{key}/comment`."""

    def __init__(self, state: JiraState, sender: WebhookSender) -> None:
        self.state = state
        self.sender = sender

    def routes(self) -> list[Route]:
        s = self.state
        return [route for p in V2_PREFIXES for route in self._routes(p, s)]

    def _routes(self, v2: str, s: JiraState) -> list[Route]:
        return [
            Route(v2 + "/issue/{key}", authed(s, self.get_issue), methods=["GET"]),
            Route(v2 + "/issue/{key}", authed(s, self.edit_issue), methods=["PUT"]),
            Route(v2 + "/issue/{key}/comment", authed(s, self.list_comments), methods=["GET"]),
            Route(v2 + "/issue/{key}/comment", authed(s, self.add_comment), methods=["POST"]),
            Route(v2 + "/issue/{key}/comment/{cid}", authed(s, self.get_comment), methods=["GET"]),
            Route(v2 + "/issue/{key}/comment/{cid}", authed(s, self.edit_comment), methods=["PUT"]),
            Route(v2 + "/issue/{key}/transitions", authed(s, self.list_transitions), methods=["GET"]),
            Route(v2 + "/issue/{key}/transitions", authed(s, self.do_transition), methods=["POST"]),
            Route(v2 + "/search", authed(s, self.search), methods=["GET", "POST"]),
            Route(v2 + "/search/jql", authed(s, self.search), methods=["GET", "POST"]),
            Route(v2 + "/field", authed(s, self.fields), methods=["GET"]),
        ]

    def _emit(self, request: Request, changes: list[Change]) -> None:
        self.sender.emit(changes, base_url(request))

    def _issue(self, request: Request) -> Issue:
        return self.state.issue(request.path_params["key"])

    async def get_issue(self, request: Request, user: User) -> Response:
        wanted = wanted_fields(list_param(request, "fields"))
        return JSONResponse(render.issue_json(self.state, self._issue(request), base_url(request), wanted))

    async def edit_issue(self, request: Request, user: User) -> Response:
        """`{"update": {"labels": [{"add": "x"}, {"remove": "y"}]}}` and/or `{"fields": {…}}`."""
        body, key = await json_body(request), self._issue(request).key
        update, fields = body.get("update") or {}, body.get("fields") or {}
        add, remove, set_to = _label_ops(update)
        if "labels" in fields:
            set_to = [str(v) for v in fields["labels"]]
        changes = self.state.update_labels(key, user, add=add, remove=remove, set_to=set_to)
        text = {k: fields[k] for k in ("summary", "description") if k in fields}
        changes += self.state.set_text_fields(key, user, text) if text else []
        self._emit(request, changes)
        return Response(status_code=204)

    async def list_comments(self, request: Request, user: User) -> Response:
        issue = self._issue(request)
        start, limit = int_param(request, "startAt", 0), int_param(request, "maxResults", 5000) or 5000
        comments = list(issue.comments)
        if request.query_params.get("orderBy", "created").startswith("-"):
            comments.reverse()
        page = comments[start : start + limit]
        return JSONResponse(
            render.comments_page(self.state, page, base_url(request), start, limit, len(comments))
        )

    async def add_comment(self, request: Request, user: User) -> Response:
        body = (await json_body(request)).get("body")
        if not isinstance(body, str):
            raise SimError(
                400, "", {"comment": "Comment body must be a string in REST API v2 (use v3 for ADF)."}
            )
        comment, changes = self.state.add_comment(self._issue(request).key, user, body)
        self._emit(request, changes)
        return JSONResponse(render.comment_json(self.state, comment, base_url(request)), 201)

    async def get_comment(self, request: Request, user: User) -> Response:
        comment = self.state.comment(self._issue(request), request.path_params["cid"])
        return JSONResponse(render.comment_json(self.state, comment, base_url(request)))

    async def edit_comment(self, request: Request, user: User) -> Response:
        body = (await json_body(request)).get("body")
        if not isinstance(body, str) or not body.strip():
            raise SimError(400, "", {"comment": "Comment body can not be empty!"})
        key, cid = self._issue(request).key, request.path_params["cid"]
        comment, changes = self.state.edit_comment(key, cid, user, body)
        self._emit(request, changes)
        return JSONResponse(render.comment_json(self.state, comment, base_url(request)))

    async def list_transitions(self, request: Request, user: User) -> Response:
        issue, base = self._issue(request), base_url(request)
        found = self.state.available_transitions(issue)
        wanted = request.query_params.get("transitionId")
        chosen = [t for t in found if wanted in (None, t.id)]
        return JSONResponse(
            {"expand": "transitions", "transitions": [render.transition_json(t, base) for t in chosen]}
        )

    async def do_transition(self, request: Request, user: User) -> Response:
        """`{"transition": {"id": "31"}}` → 204; recorded in `state.transition_log`."""
        transition = (await json_body(request)).get("transition") or {}
        if not isinstance(transition, dict) or "id" not in transition:
            raise SimError(400, "'transition' identifier must be specified.")
        self._emit(request, self.state.transition(self._issue(request).key, user, str(transition["id"])))
        return Response(status_code=204)

    async def search(self, request: Request, user: User) -> Response:
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            params = await json_body(request)
        start, limit = int(params.get("startAt") or 0), int(params.get("maxResults") or 50)
        raw_fields = params.get("fields") or list_param(request, "fields")
        names = raw_fields.split(",") if isinstance(raw_fields, str) else [str(f) for f in raw_fields]
        found = self.state.search(str(params.get("jql") or ""))
        base, wanted = base_url(request), wanted_fields(names)
        issues = [render.issue_json(self.state, i, base, wanted) for i in found[start : start + limit]]
        if request.url.path.endswith("/search/jql"):
            return JSONResponse({"issues": issues, "isLast": True})
        return JSONResponse(
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": limit,
                "total": len(found),
                "issues": issues,
            }
        )

    async def fields(self, request: Request, user: User) -> Response:
        return JSONResponse(
            [
                {
                    "id": fid,
                    "key": fid,
                    "name": name,
                    "custom": False,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [fid],
                }
                for fid, name in FIELD_LIST
            ]
        )


class IssueApiV3:
    """REST v3 comments: ADF bodies in and out (stored as wiki markup, as v2 and webhooks show them)."""

    def __init__(self, state: JiraState, sender: WebhookSender) -> None:
        self.state = state
        self.sender = sender

    def routes(self) -> list[Route]:
        return [
            Route("/rest/api/3/issue/{key}/comment", authed(self.state, self.list_comments), methods=["GET"]),
            Route("/rest/api/3/issue/{key}/comment", authed(self.state, self.add_comment), methods=["POST"]),
        ]

    def _json(self, request: Request, comment_json: dict[str, Any]) -> dict[str, Any]:
        return {**comment_json, "body": adf.wiki_to_adf(comment_json["body"])}

    async def list_comments(self, request: Request, user: User) -> Response:
        issue, base = self.state.issue(request.path_params["key"]), base_url(request)
        page = render.comments_page(self.state, issue.comments, base, 0, 5000, len(issue.comments))
        page["comments"] = [self._json(request, c) for c in page["comments"]]
        return JSONResponse(page)

    async def add_comment(self, request: Request, user: User) -> Response:
        try:
            text = adf.adf_to_wiki((await json_body(request)).get("body"))
        except adf.AdfError as exc:
            raise SimError(400, "", {"comment": str(exc)}) from None
        key = self.state.issue(request.path_params["key"]).key
        comment, changes = self.state.add_comment(key, user, text)
        self.sender.emit(changes, base_url(request))
        return JSONResponse(
            self._json(request, render.comment_json(self.state, comment, base_url(request))), 201
        )
