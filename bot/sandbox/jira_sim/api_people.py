"""REST routes for the instance and its people: serverInfo, myself, users, groups, webhook registration."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.sandbox.jira_sim import render
from bot.sandbox.jira_sim.http import authed, base_url, int_param, json_body
from bot.sandbox.jira_sim.model import User, Webhook
from bot.sandbox.jira_sim.state import JiraState, SimError

V2_PREFIXES = ("/rest/api/2", "/rest/api/latest")
WEBHOOKS = "/rest/webhooks/1.0/webhook"
VERSIONS = {"Cloud": ("1001.0.0-SNAPSHOT", [1001, 0, 0]), "Server": ("9.12.0", [9, 12, 0])}


def group_json(name: str, base: str) -> dict[str, Any]:
    return {"name": name, "groupId": f"group-{name}", "self": f"{base}/rest/api/2/group?groupname={name}"}


def webhook_json(state: JiraState, hook: Webhook, base: str) -> dict[str, Any]:
    """Never echoes the secret back."""
    return {
        "self": f"{base}{WEBHOOKS}/{hook.id}",
        "name": hook.name,
        "url": hook.url,
        "events": hook.events,
        "filters": {"issue-related-events-section": hook.jql or ""},
        "excludeBody": hook.exclude_body,
        "enabled": hook.enabled,
    }


class PeopleApi:
    """Handlers for serverInfo, myself, user lookup (with `expand=groups`), group members and webhooks."""

    def __init__(self, state: JiraState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        s, out = self.state, []
        for v2 in V2_PREFIXES:
            out += [
                Route(v2 + "/serverInfo", self.server_info, methods=["GET"]),
                Route(v2 + "/myself", authed(s, self.myself), methods=["GET"]),
                Route(v2 + "/user", authed(s, self.get_user), methods=["GET"]),
                Route(v2 + "/user/groups", authed(s, self.user_groups), methods=["GET"]),
                Route(v2 + "/group/member", authed(s, self.group_members), methods=["GET"]),
                Route(v2 + "/group", authed(s, self.group), methods=["GET"]),
            ]
        return [
            *out,
            Route(WEBHOOKS, authed(s, self.list_webhooks), methods=["GET"]),
            Route(WEBHOOKS, authed(s, self.register_webhook), methods=["POST"]),
            Route(WEBHOOKS + "/{hook_id}", authed(s, self.get_webhook), methods=["GET"]),
            Route(WEBHOOKS + "/{hook_id}", authed(s, self.delete_webhook), methods=["DELETE"]),
        ]

    def _user_param(self, request: Request) -> User:
        q = request.query_params
        return self.state.user(q.get("accountId") or q.get("username") or q.get("key"))

    async def server_info(self, request: Request) -> Response:
        version, numbers = VERSIONS[self.state.deployment]
        return JSONResponse(
            {
                "baseUrl": base_url(request),
                "version": version,
                "versionNumbers": numbers,
                "deploymentType": self.state.deployment,
                "buildNumber": 100000,
                "buildDate": "2024-01-01T00:00:00.000+0000",
                "serverTime": self.state.now(),
                "scmInfo": "0" * 40,
                "serverTitle": "Jira (Baton sandbox)",
            }
        )

    async def myself(self, request: Request, user: User) -> Response:
        out = render.user_json(self.state, user, base_url(request))
        return JSONResponse({**out, "emailAddress": user.email, "locale": "en_US"})

    async def get_user(self, request: Request, user: User) -> Response:
        found, base = self._user_param(request), base_url(request)
        out = render.user_json(self.state, found, base)
        groups = [group_json(g, base) for g in sorted(found.groups)]
        expanded = "groups" in request.query_params.get("expand", "")
        out["groups"] = {"size": len(groups), "items": groups if expanded else []}
        return JSONResponse(out)

    async def user_groups(self, request: Request, user: User) -> Response:
        found, base = self._user_param(request), base_url(request)
        return JSONResponse([group_json(g, base) for g in sorted(found.groups)])

    def _members(self, name: str | None) -> list[User]:
        members = sorted(
            (u for u in self.state.users.values() if name in u.groups), key=lambda u: u.display_name
        )
        if not members and not any(name in u.groups for u in self.state.users.values()):
            raise SimError(404, f"Group '{name}' does not exist.")
        return members

    async def group_members(self, request: Request, user: User) -> Response:
        """`GET /group/member?groupname=` (Cloud): a page of users."""
        members, base = self._members(request.query_params.get("groupname")), base_url(request)
        start, limit = int_param(request, "startAt", 0), int_param(request, "maxResults", 50) or 50
        page = members[start : start + limit]
        return JSONResponse(
            {
                "self": str(request.url),
                "maxResults": limit,
                "startAt": start,
                "total": len(members),
                "isLast": start + limit >= len(members),
                "values": [render.user_json(self.state, u, base) for u in page],
            }
        )

    async def group(self, request: Request, user: User) -> Response:
        """`GET /group?groupname=&expand=users` (Data Center; what `JIRA.group_members()` calls)."""
        name = request.query_params.get("groupname") or ""
        members, base = self._members(name), base_url(request)
        items = [render.user_json(self.state, u, base) for u in members]
        users = {
            "size": len(items),
            "items": items,
            "max-results": 50,
            "start-index": 0,
            "end-index": len(items) - 1,
        }
        return JSONResponse(
            {"name": name, "self": group_json(name, base)["self"], "users": users, "expand": "users"}
        )

    async def list_webhooks(self, request: Request, user: User) -> Response:
        base = base_url(request)
        return JSONResponse([webhook_json(self.state, h, base) for h in self.state.webhooks.values()])

    async def register_webhook(self, request: Request, user: User) -> Response:
        """`{"name", "url", "events", "filters": {"issue-related-events-section": jql}, "secret"?}`."""
        body = await json_body(request)
        if not body.get("url") or not isinstance(body.get("events"), list):
            raise SimError(400, "", {"url": "A webhook needs a url and a list of events."})
        jql = (body.get("filters") or {}).get("issue-related-events-section") or None
        hook = self.state.register_webhook(
            str(body.get("name") or "webhook"),
            str(body["url"]),
            [str(e) for e in body["events"]],
            jql_filter=jql,
            secret=body.get("secret") or None,
            exclude_body=bool(body.get("excludeBody")),
        )
        return JSONResponse(webhook_json(self.state, hook, base_url(request)), 201)

    def _hook(self, request: Request) -> Webhook:
        hook = self.state.webhooks.get(request.path_params["hook_id"])
        if hook is None:
            raise SimError(404, "Webhook not found.")
        return hook

    async def get_webhook(self, request: Request, user: User) -> Response:
        return JSONResponse(webhook_json(self.state, self._hook(request), base_url(request)))

    async def delete_webhook(self, request: Request, user: User) -> Response:
        self.state.webhooks.pop(self._hook(request).id, None)
        return Response(status_code=204)
