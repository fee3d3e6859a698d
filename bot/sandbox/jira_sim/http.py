"""Request helpers shared by the simulator's routes: authentication, JSON bodies, params, errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.sandbox.jira_sim.model import User
from bot.sandbox.jira_sim.state import JiraState, SimError

AuthedHandler = Callable[[Request, User], Awaitable[Response]]
Handler = Callable[[Request], Awaitable[Response]]
NOT_AUTHENTICATED = "Client must be authenticated to access this resource."


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def authed(state: JiraState, handler: AuthedHandler) -> Handler:
    """Wrap a handler so it runs only for a valid basic-auth API token or Bearer PAT (401 otherwise)."""

    async def wrapper(request: Request) -> Response:
        user = state.authenticate(request.headers.get("authorization"))
        if user is None:
            raise SimError(401, NOT_AUTHENTICATED)
        return await handler(request, user)

    return wrapper


async def json_body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        raise SimError(400, "Unexpected character in the request body: not valid JSON.") from None
    if not isinstance(data, dict):
        raise SimError(400, "Request body must be a JSON object.")
    return data


def int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    try:
        return default if raw is None or raw == "" else max(0, int(raw))
    except ValueError:
        raise SimError(400, f"The '{name}' parameter must be a number.") from None


def list_param(request: Request, name: str) -> list[str]:
    """A parameter sent repeated (`fields=a&fields=b`) or comma-separated (`fields=a,b`)."""
    return [
        part.strip() for raw in request.query_params.getlist(name) for part in raw.split(",") if part.strip()
    ]


def error_response(exc: SimError) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="protected-area"'} if exc.status == 401 else None
    return JSONResponse({"errorMessages": exc.messages, "errors": exc.errors}, exc.status, headers=headers)


async def sim_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SimError)
    return error_response(exc)
