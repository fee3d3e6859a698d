"""A bare Starlette endpoint that only answers 202: the baseline for the ingest benchmark."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def accept(request: Request) -> Response:
    await request.body()
    return Response(b'{"accepted":true}', status_code=202, media_type="application/json")


app = Starlette(
    routes=[
        Route("/webhooks/jira", accept, methods=["POST"]),
        Route("/webhooks/gitlab", accept, methods=["POST"]),  # bench.load sends both
        Route("/healthz", accept),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
