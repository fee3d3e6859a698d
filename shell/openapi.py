"""The OpenAPI 3.1 description of Baton's HTTP endpoints, served at `GET /openapi.json`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.verify import SIGNATURE_TOLERANCE_S

JSON = "application/json"
ERROR = {"$ref": "#/components/schemas/Error"}

_WEBHOOK_ANSWERS: dict[str, tuple[str, dict[str, Any]]] = {
    "202": (
        "Accepted: the delivery and its run are committed (and enqueued, best effort).",
        {"$ref": "#/components/schemas/Accepted"},
    ),
    "200": (
        "The same delivery again or the same comment/changelog under a new delivery id (`duplicate`), "
        "or well-formed but nothing to do (`ignored`).",
        {"oneOf": [{"$ref": "#/components/schemas/Duplicate"}, {"$ref": "#/components/schemas/Ignored"}]},
    ),
    "400": ("Invalid JSON, or a known event with an invalid shape; a one-line reason.", ERROR),
    "401": ("Missing or wrong credentials; nothing is stored. The reason never echoes a token.", ERROR),
    "404": ("Webhooks of this source are not configured on this instance.", ERROR),
    "408": ("The body was not received within `BATON_BODY_TIMEOUT_S`.", ERROR),
    "413": ("The body is over `BATON_MAX_BODY_BYTES` (checked while reading).", ERROR),
    "503": ("The state store is down; nothing is stored. Retry after `Retry-After` seconds.", ERROR),
}

_PARSING = "Parsed strictly (no NaN/Infinity, bounded nesting); only handled events are validated."
_SCHEMAS: dict[str, Any] = {
    "Accepted": {
        "type": "object",
        "required": ["accepted", "run"],
        "properties": {
            "accepted": {"enum": ["enqueued", "replied"]},
            "run": {"type": "string", "minLength": 1},
        },
        "additionalProperties": False,
    },
    "Duplicate": {
        "type": "object",
        "required": ["duplicate", "run"],
        "properties": {
            "duplicate": {"const": True},
            "run": {"type": ["string", "null"], "description": "null when the first delivery was ignored"},
        },
        "additionalProperties": False,
    },
    "Ignored": {
        "type": "object",
        "required": ["ignored"],
        "properties": {"ignored": {"type": "string"}},
        "additionalProperties": False,
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "pattern": "^[^\\n]*$"}},
        "additionalProperties": False,
    },
    "GitLabEvent": {
        "type": "object",
        "description": f"GitLab's JSON event, verified over the raw bytes before it is parsed. {_PARSING}",
        "properties": {"object_kind": {"enum": ["note", "merge_request", "push", "pipeline"]}},
        "additionalProperties": True,
    },
    "JiraEvent": {
        "type": "object",
        "description": f"Jira's JSON event, verified over the raw bytes before it is parsed. {_PARSING}",
        "properties": {
            "webhookEvent": {
                "enum": ["jira:issue_updated", "comment_created", "comment_updated", "comment_deleted"]
            }
        },
        "additionalProperties": True,
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"const": "ok"}},
        "additionalProperties": False,
    },
    "Readiness": {
        "type": "object",
        "required": ["ready", "database", "redis"],
        "properties": {
            "ready": {"type": "boolean"},
            "database": {"type": "string", "description": "`ok` or `unavailable (<error type>)`"},
            "redis": {"type": "string", "description": "`ok` or `unavailable (<error type>)`"},
        },
        "additionalProperties": False,
    },
}

_SECURITY_SCHEMES: dict[str, Any] = {
    "gitlabToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Gitlab-Token",
        "description": "The webhook secret (`BATON_GITLAB_WEBHOOK_SECRET`), compared in constant time.",
    },
    "gitlabSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-signature",
        "description": "When `BATON_GITLAB_SIGNING_TOKEN` is set: Standard Webhooks `v1,<base64 "
        'HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{raw body}">`, accepted within '
        f"{SIGNATURE_TOLERANCE_S} s of `webhook-timestamp`. Every credential presented must be valid.",
    },
    "jiraSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Hub-Signature",
        "description": "`sha256=<hex HMAC-SHA256 of the raw body>` keyed by `BATON_JIRA_WEBHOOK_SECRET`.",
    },
}


def _header(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_GITLAB_HEADERS = [
    _header("X-Gitlab-Event", "`<EVENT> Hook`, e.g. `Note Hook`, `Merge Request Hook`."),
    _header("Idempotency-Key", "Stable across GitLab's retries: the delivery key when present."),
    _header("X-Gitlab-Event-UUID", "The delivery key when there is no `Idempotency-Key`."),
    _header("webhook-id", "Standard Webhooks message id (signed deliveries)."),
    _header("webhook-timestamp", "Standard Webhooks Unix time in seconds (signed deliveries)."),
]
_JIRA_HEADERS = [
    _header("X-Atlassian-Webhook-Identifier", "Unique per delivery and unchanged across retries: the key."),
    _header("X-Atlassian-Webhook-Retry", "Retry count, only on retries.", {"type": "integer", "minimum": 0}),
]


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _webhook_responses() -> dict[str, Any]:
    responses = {code: _response(text, schema) for code, (text, schema) in _WEBHOOK_ANSWERS.items()}
    responses["503"]["headers"] = {
        "Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 0}}
    }
    return responses


_EXAMPLES: dict[str, dict[str, Any]] = {
    "GitLab": {
        "push": {
            "summary": "A push: acknowledged and ignored (merge request updates carry new commits)",
            "value": {
                "object_kind": "push",
                "ref": "refs/heads/main",
                "before": "0" * 40,
                "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
                "user_id": 1,
                "user_username": "alice",
                "project": {"id": 1, "path_with_namespace": "group/project"},
            },
        }
    },
    "Jira": {
        "label-added": {
            "summary": "The trigger label added to a ticket: starts an implementation run",
            "value": {
                "webhookEvent": "jira:issue_updated",
                "issue_event_type_name": "issue_updated",
                "user": {"accountId": "5c5f880629be9642ba529340", "displayName": "Alice"},
                "issue": {
                    "id": "10040",
                    "key": "TES-41",
                    "fields": {
                        "project": {"key": "TES"},
                        "summary": "Add a health endpoint",
                        "labels": ["ai-implement"],
                    },
                },
                "changelog": {
                    "id": "10100",
                    "items": [{"field": "labels", "fromString": "", "toString": "ai-implement"}],
                },
            },
        }
    },
}


def _webhook(source: str, headers: list[dict[str, Any]], security: list[dict[str, list[str]]]) -> Any:
    return {
        "post": {
            "operationId": f"{source.lower()}Webhook",
            "summary": f"Receive a {source} webhook delivery",
            "description": "Authenticated, committed to the durable inbox, then answered: 2xx only after "
            "the commit. Duplicates (same delivery key, or the same note/comment/changelog) start no run.",
            "parameters": headers,
            "security": security,
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": {"$ref": f"#/components/schemas/{source}Event"},
                        "examples": _EXAMPLES[source],
                    }
                },
            },
            "responses": _webhook_responses(),
        }
    }


def _get(operation_id: str, summary: str, responses: dict[str, Any]) -> Any:
    return {"get": {"operationId": operation_id, "summary": summary, "security": [], "responses": responses}}


def document() -> dict[str, Any]:
    """The whole description; every route of `shell.app.create_app` appears here (a test checks it)."""
    readiness = {"$ref": "#/components/schemas/Readiness"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Baton",
            "version": "0.1.0",
            "description": "GitLab/Jira webhook ingress of Baton, with its health, readiness and metrics.",
        },
        "paths": {
            "/webhooks/gitlab": _webhook(
                "GitLab", _GITLAB_HEADERS, [{"gitlabToken": []}, {"gitlabSignature": []}]
            ),
            "/webhooks/jira": _webhook("Jira", _JIRA_HEADERS, [{"jiraSignature": []}]),
            "/healthz": _get(
                "healthz",
                "The process is alive",
                {"200": _response("Alive.", {"$ref": "#/components/schemas/Health"})},
            ),
            "/readyz": _get(
                "readyz",
                "The database and Redis answer",
                {"200": _response("Ready.", readiness), "503": _response("Not ready.", readiness)},
            ),
            "/metrics": _get(
                "metrics",
                "Prometheus metrics of this process",
                {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            ),
            "/openapi.json": _get(
                "openapi", "This description", {"200": _response("OpenAPI 3.1.", {"type": "object"})}
            ),
        },
        "components": {"schemas": _SCHEMAS, "securitySchemes": _SECURITY_SCHEMES},
    }


async def openapi_json(request: Request) -> Response:
    return JSONResponse(document())
