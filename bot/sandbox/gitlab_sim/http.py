"""HTTP plumbing shared by the simulator's routes: auth, access checks, bodies, pagination, errors."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.sandbox.gitlab_sim.model import Project, SimError, User, not_found
from bot.sandbox.gitlab_sim.state import GitLabState

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})


def error_response(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: a SimError becomes GitLab's `{"message": ...}` body."""
    assert isinstance(exc, SimError)
    return JSONResponse({"message": exc.message}, status_code=exc.status)


def token_of(request: Request) -> str | None:
    private = request.headers.get("private-token")
    if private:
        return private
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def authenticate(state: GitLabState, request: Request) -> User:
    token = token_of(request)
    user = state.user_by_token(token) if token else None
    if user is None:
        raise SimError(401, "401 Unauthorized")
    return user


def require(state: GitLabState, project: Project, user: User, level: int) -> int:
    """The user's access level; 404 when they cannot see the project (private), 403 when too low."""
    have = state.access_level(project, user)
    if have == 0:
        raise not_found("Project")
    if have < level:
        raise SimError(403, "403 Forbidden")
    return have


async def body_of(request: Request) -> dict[str, Any]:
    """Parameters from the query string, then a JSON or form body (later sources win)."""
    values: dict[str, Any] = dict(request.query_params)
    raw = await request.body()
    if not raw:
        return values
    content_type = request.headers.get("content-type", "")
    if "json" in content_type:
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise SimError(400, "400 Bad request - invalid JSON") from exc
        if isinstance(parsed, dict):
            values.update(parsed)
    else:
        values.update(dict(await request.form()))
    return values


def as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in TRUE_WORDS


def as_int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise not_found(what) from exc


def paginate(request: Request, items: list[dict[str, Any]]) -> JSONResponse:
    """One page of `items` with GitLab's offset pagination headers and a Link header python-gitlab follows."""
    try:
        per_page = min(max(int(request.query_params.get("per_page", DEFAULT_PER_PAGE)), 1), MAX_PER_PAGE)
        page = max(int(request.query_params.get("page", 1)), 1)
    except ValueError as exc:
        raise SimError(400, "400 Bad request - page and per_page must be integers") from exc
    total_pages = max(math.ceil(len(items) / per_page), 1)
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Total": str(len(items)),
        "X-Total-Pages": str(total_pages),
        "X-Next-Page": str(page + 1) if page < total_pages else "",
        "X-Prev-Page": str(page - 1) if page > 1 else "",
    }
    links = [("first", 1), ("last", total_pages)]
    links += [("next", page + 1)] if page < total_pages else []
    links += [("prev", page - 1)] if page > 1 else []
    headers["Link"] = ", ".join(
        f'<{request.url.include_query_params(page=n, per_page=per_page)}>; rel="{rel}"' for rel, n in links
    )
    return JSONResponse(items[(page - 1) * per_page : page * per_page], headers=headers)


class EncodedSlashMiddleware:
    """Keep `%2F` in path segments (`demo%2Fcalculator`), which servers otherwise decode into `/`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        if scope["type"] == "http" and raw:
            protected = raw.split(b"?", 1)[0].replace(b"%2F", b"%252F").replace(b"%2f", b"%252F")
            scope = dict(scope, path=unquote_to_bytes(protected).decode("utf-8", "replace"))
        await self.app(scope, receive, send)


def path_value(request: Request, name: str) -> str:
    """A path parameter with `%2F` turned back into `/` (project paths, branch names)."""
    return str(request.path_params[name]).replace("%2F", "/")
