"""The ASGI application: webhook endpoints, health, readiness, metrics and (when on) the dashboard."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from bot.store.engine import ping
from config.settings import Settings
from config.skills import SkillManifest
from shell import dashboard, openapi, webhooks
from shell import services as services_module
from shell.services import Services
from shell.wiring import load_manifest

log = logging.getLogger("baton.app")
PROBE_TIMEOUT_S = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _probe(name: str, check: asyncio.Future[None] | asyncio.Task[None]) -> tuple[str, str]:
    try:
        await asyncio.wait_for(check, PROBE_TIMEOUT_S)
    except Exception as exc:  # any failure means "not ready", whatever the driver raised
        return name, f"unavailable ({type(exc).__name__})"
    return name, "ok"


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    results = dict(
        await asyncio.gather(
            _probe("database", asyncio.ensure_future(ping(services.engine))),
            _probe("redis", asyncio.ensure_future(services.queue.ping())),
        )
    )
    ready = all(value == "ok" for value in results.values())
    return JSONResponse({"ready": ready, **results}, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        services.metrics.queue_depth.set(await asyncio.wait_for(services.queue.depth(), PROBE_TIMEOUT_S))
    except Exception:  # the queue depth is best effort; the rest of the metrics still render
        log.debug("queue depth unavailable")
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def create_app(
    settings: Settings, services: Services | None = None, *, skills: SkillManifest | None = None
) -> Starlette:
    """The app; `services` are built in the lifespan unless given (tests pass their own), with the skill
    manifest `baton serve` loaded at start-up (`skills`; else it is loaded and checked here, so a bad
    manifest is refused when the app is created, not at the first webhook)."""
    if skills is None:
        skills = services.handler_context.skills if services is not None else load_manifest(settings)
    manifest = skills

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services or services_module.build(settings, manifest)
        if owned:  # what start-up made lives as long as the process: keep it out of every full GC pass,
            gc.freeze()  # which otherwise walks it all (tens of ms, a latency spike on some request)
        try:
            yield
        finally:
            if owned:
                await app.state.services.close()

    routes: list[BaseRoute] = [
        Route("/webhooks/gitlab", webhooks.gitlab, methods=["POST"]),
        Route("/webhooks/jira", webhooks.jira, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
    ]
    pages = dashboard.routes(settings)  # none unless BATON_DASHBOARD=token (read-only, outside OpenAPI)
    if pages:
        routes.append(Mount(dashboard.MOUNT, routes=pages))
    app = Starlette(routes=routes, lifespan=lifespan)
    if services is not None:
        app.state.services = services
    return app
