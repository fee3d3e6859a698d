"""The dashboard's pages: runs, one run, proposals awaiting approval, runs stopped for a person, and cost
and outcomes. Read-only: approvals stay in Jira and GitLab, where the pages link to.

Every page reads the store through `bot.store.dashboard`; templates autoescape everything, and every
printed value is also screened for what the redactor masks (the store already redacts free text as it is
written; this keeps a secret off the page even from a row written without it). Pages of live runs
refresh themselves (a meta refresh, no script).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot.redact import TOKEN_SHAPES, Redactor, variants
from bot.store import dashboard as queries
from bot.store import status
from bot.store.engine import utcnow
from bot.store.runs import RunNotFound
from config.settings import Settings
from orchestrators.registry import WORKFLOWS
from shell.dashboard import access, plots, views

log = logging.getLogger("baton.dashboard")
Page = Callable[[Request], Awaitable[Response]]

PER_PAGE = 50
LIST_LIMIT = 100  # rows on the proposals and stopped pages (the navigation counts them all)
MAX_PAGE = 1000
WINDOWS = (7, 30, 90)
FAILED_WITHIN = timedelta(days=7)
REFRESH_LIVE_S, REFRESH_LIST_S, REFRESH_SLOW_S = 2, 10, 30
REPORT_EVERY_S = 30  # the cost and outcome figures are read again at most this often
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _choice(value: str | None, allowed: tuple[str, ...] | list[str]) -> str | None:
    return value if value in allowed else None


def _subject(value: str | None) -> str | None:
    text = (value or "").strip()[:100]
    return text if text and text.isprintable() else None


def _page_number(value: str | None) -> int:
    return min(int(value), MAX_PAGE) if value and value.isdigit() and int(value) > 0 else 1


class Screen:
    """What the redactor would mask in a printed value, found quickly: every form of every configured secret
    and the token shapes in one pattern; a value that matches is redacted, the rest (nearly all) pass."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        forms = sorted(
            {form for secret in redactor.secrets for form in variants(secret)}, key=len, reverse=True
        )
        self.pattern = re.compile("|".join([*map(re.escape, forms), *TOKEN_SHAPES]))

    def __call__(self, text: str) -> str:
        return self.redactor.redact(text) if self.pattern.search(text) else text


@dataclass(frozen=True)
class CostFigures:
    """A cost report with what its page draws from it (charts, weeks, totals)."""

    report: queries.CostReport
    charts: dict[str, Markup]
    weeks: list[date]
    totals: dict[str, float]

    @classmethod
    def of(cls, report: queries.CostReport) -> CostFigures:
        return cls(report, _charts(report), _weeks(report), _report_totals(report))


class Reports:
    """The cost and outcome figures per window, read from the store at most every REPORT_EVERY_S: a request
    gets the latest figures at once, and figures that old are read again in the background (only the first
    request for a window waits for them). Each web process keeps its own."""

    def __init__(self) -> None:
        self._latest: dict[int, tuple[float, CostFigures]] = {}
        self._reading: dict[int, asyncio.Task[None]] = {}

    async def get(self, sm: Any, days: int) -> CostFigures:
        found = self._latest.get(days)
        if found is None:
            return await self._read(sm, days)
        read_at, figures = found
        if time.monotonic() - read_at >= REPORT_EVERY_S and days not in self._reading:
            self._reading[days] = asyncio.create_task(self._refresh(sm, days))
        return figures

    async def _read(self, sm: Any, days: int) -> CostFigures:
        figures = CostFigures.of(await queries.cost_report(sm, days))
        self._latest[days] = (time.monotonic(), figures)
        return figures

    async def _refresh(self, sm: Any, days: int) -> None:
        try:
            await self._read(sm, days)
        except (SQLAlchemyError, OSError) as exc:  # keep the figures there are; the next request tries again
            log.warning("dashboard: the cost figures could not be read (%s)", type(exc).__name__)
        finally:
            self._reading.pop(days, None)


class Dashboard:
    """The pages, with what they share: settings, the token, the templates, links and the redactor."""

    def __init__(self, settings: Settings, token: SecretStr) -> None:
        self.settings, self.token = settings, token
        self.links = views.Links.of(settings)
        self.screen = Screen(Redactor.from_settings(settings))
        self.kinds = sorted(WORKFLOWS)
        self.reports = Reports()
        self.css = (files("shell.dashboard") / "static" / "dashboard.css").read_bytes()
        self.env = Environment(
            loader=PackageLoader("shell.dashboard", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            finalize=self._finalize,
        )
        self.env.filters.update(
            money=views.money, count=views.count, span=views.span, stamp=views.stamp,
            mark=lambda state: views.PHASE_MARKS.get(state, "•"),
            ago=lambda moment: views.ago(moment, utcnow()), age=lambda moment: views.age(moment, utcnow()),
            clip=lambda text: views.clip(self.screen(text)),  # screened whole, then shortened
        )  # fmt: skip

    def _finalize(self, value: Any) -> Any:
        """Every printed value passes the redactor's screen (Markup stays markup)."""
        if isinstance(value, Markup):
            return Markup(self.screen(str(value)))  # noqa: S704 - already escaped markup
        if isinstance(value, str):
            return self.screen(value)
        return "" if value is None else value

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self._guarded(self.runs), methods=["GET"]),
            Route("/runs/{run_id}", self._guarded(self.run), methods=["GET"]),
            Route("/proposals", self._guarded(self.proposals), methods=["GET"]),
            Route("/stopped", self._guarded(self.stopped), methods=["GET"]),
            Route("/costs", self._guarded(self.costs), methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/static/dashboard.css", self.stylesheet, methods=["GET"]),
        ]

    # --- plumbing --------------------------------------------------------------------------------

    def html(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        context.setdefault("refresh", None)
        context.setdefault("nav", None)
        context.setdefault("title", "Sign in")
        body = self.env.get_template(template).render(
            base=access.mount_path(request), now=utcnow(), links=self.links, **context
        )
        return HTMLResponse(body, status_code=status_code, headers=HEADERS)

    def _guarded(self, page: Page) -> Page:
        async def endpoint(request: Request) -> Response:
            moved = access.exchange(request, self.settings, self.token)
            if moved is not None:
                moved.headers.update(HEADERS)
                return moved
            if "token" in request.query_params:
                return self.html(request, "login.html", 401, wrong=True, next=access.without_token(request))
            if not access.valid_session(self.token, request.cookies.get(access.COOKIE)):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                query = urlencode({"next": access.safe_next(request, target)})
                return RedirectResponse(f"{access.mount_path(request)}/login?{query}", 303, headers=HEADERS)
            try:
                return await page(request)
            except (SQLAlchemyError, OSError) as exc:  # the store is down or unreachable
                log.warning("dashboard: the state store did not answer (%s)", type(exc).__name__)
                return self.html(request, "error.html", 503, title="State store unavailable", detail="")

        return endpoint

    def _sm(self, request: Request) -> Any:
        return request.app.state.services.sm

    async def _nav(self, request: Request) -> queries.Counts:
        return await queries.counts(self._sm(request))

    # --- sign in and out -------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        wanted = access.safe_next(request, request.query_params.get("next"))
        return self.html(request, "login.html", wrong=False, next=wanted)

    async def login(self, request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > access.MAX_FORM_BYTES:
                break
        wanted = access.safe_next(request, request.query_params.get("next"))
        if not access.token_matches(self.token, access.form_token(body)):
            return self.html(request, "login.html", 401, wrong=True, next=wanted)
        response = RedirectResponse(wanted, 303, headers=HEADERS)
        return access.signed_in(response, request, self.settings, self.token)

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse(f"{access.mount_path(request)}/login", 303, headers=HEADERS)
        return access.signed_out(response, request)

    async def stylesheet(self, request: Request) -> Response:
        headers = {**HEADERS, "Cache-Control": "max-age=300"}
        return Response(self.css, media_type="text/css; charset=utf-8", headers=headers)

    # --- pages -----------------------------------------------------------------------------------

    async def runs(self, request: Request) -> Response:
        params = request.query_params
        filters = queries.RunFilter(
            status=_choice(params.get("status"), status.ALL),
            kind=_choice(params.get("kind"), self.kinds),
            subject=_subject(params.get("subject")),
        )
        number = _page_number(params.get("page"))
        found = await queries.runs_page(self._sm(request), filters, number, PER_PAGE)
        pages = max((found.total + PER_PAGE - 1) // PER_PAGE, 1)
        shown = {k: v for k, v in asdict(filters).items() if v}

        def page_url(n: int) -> str:
            return f"{access.mount_path(request)}/?{urlencode({**shown, 'page': n})}"

        return self.html(
            request, "runs.html", title="Runs", nav=await self._nav(request), found=found, pages=pages,
            filters=filters, statuses=status.ALL, kinds=self.kinds, page_url=page_url,
            refresh=REFRESH_LIST_S,
        )  # fmt: skip

    async def run(self, request: Request) -> Response:
        run_id = str(request.path_params["run_id"])
        if not (run_id.isalnum() and len(run_id) <= 32):
            return await self._missing(request, run_id)
        try:
            record = await queries.run_record(self._sm(request), run_id)
        except RunNotFound:
            return await self._missing(request, run_id)
        detail = record.detail
        live = detail["status"] in status.ACTIVE
        last = detail["activity"][-1] if detail["activity"] else None
        flags = [f for f in queries.STOP_FLAGS if last and last["data"].get(f) is True]
        return self.html(
            request, "run.html", title=f"Run {run_id[:12]}", nav=await self._nav(request), run=detail,
            record=record, transcript=views.transcript(record.outputs), flags=flags,
            posted=self._posted(record),
            totals=_totals(detail["phases"]), refresh=REFRESH_LIVE_S if live else None,
        )  # fmt: skip

    def _posted(self, record: queries.RunRecord) -> list[tuple[str, str, str | None]]:
        """What the run posted: (its effect key without the run prefix, the external id, a link)."""
        run_id, subject = record.detail["id"], record.detail["subject"]
        return [
            (key.removeprefix(f"run:{run_id}:"), external, self.links.posted(subject, kind, external))
            for key, kind, external in record.effects
        ]

    async def _missing(self, request: Request, run_id: str) -> Response:
        return self.html(
            request, "error.html", 404, title="No such run", nav=await self._nav(request),
            detail=f"There is no run {run_id[:40]}.",
        )  # fmt: skip

    async def proposals(self, request: Request) -> Response:
        waiting = await queries.waiting_proposals(self._sm(request), LIST_LIMIT)
        return self.html(
            request, "proposals.html", title="Awaiting approval", nav=await self._nav(request),
            proposals=waiting, refresh=REFRESH_SLOW_S,
        )  # fmt: skip

    async def stopped(self, request: Request) -> Response:
        sm = self._sm(request)
        return self.html(
            request, "stopped.html", title="Stopped for a person", nav=await self._nav(request),
            stopped=await queries.stopped_runs(sm, LIST_LIMIT),
            failed=await queries.failed_runs(sm, FAILED_WITHIN, LIST_LIMIT),
            failed_days=FAILED_WITHIN.days, refresh=REFRESH_SLOW_S,
        )  # fmt: skip

    async def costs(self, request: Request) -> Response:
        wanted = request.query_params.get("days", "")
        days = int(wanted) if wanted.isdigit() and int(wanted) in WINDOWS else 30
        figures = await self.reports.get(self._sm(request), days)
        return self.html(
            request, "costs.html", title="Cost and outcomes", nav=await self._nav(request), days=days,
            windows=WINDOWS, report=figures.report, charts=figures.charts, weeks=figures.weeks,
            totals=figures.totals, every=REPORT_EVERY_S,
        )  # fmt: skip


def _totals(phases: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("input_tokens", "output_tokens", "cost_usd", "agent_s", "commands_s")
    totals = {key: sum(float(p.get(key) or 0) for p in phases) for key in keys}
    totals["duration_s"] = sum(float(p.get("duration_s") or 0) for p in phases)
    return totals


def _charts(report: queries.CostReport) -> dict[str, Markup]:
    per_day = [plots.Bar(d.day.strftime("%m-%d"), d.cost_usd, f"{d.runs} runs") for d in report.days]
    rounds = [plots.Bar(str(n), float(runs), "runs") for n, runs in sorted(report.rounds.items())]
    rates = [
        plots.Bar(
            week.strftime("%m-%d"),
            100 * (d.rate or 0.0),
            f"{d.approved} approved, {d.rejected} rejected, {d.superseded} superseded",
        )
        for week, d in report.decisions_by_week.items()
    ]
    return {
        "cost": plots.bar_chart(per_day, "Cost per day (USD)", views.money),
        "rounds": plots.bar_chart(rounds, "Runs by implement rounds", lambda v: f"{v:g}"),
        "approval": plots.bar_chart(rates, "Approval rate per week (%)", lambda v: f"{v:.0f}%", peak=100.0),
    }


def _weeks(report: queries.CostReport) -> list[date]:
    return sorted({week for weeks in report.by_project_week.values() for week in weeks})


def _report_totals(report: queries.CostReport) -> dict[str, float]:
    runs = sum(report.outcomes.values())
    cost = sum(d.cost_usd for d in report.days)
    rounds = sum(report.rounds.values())
    return {
        "runs": runs,
        "cost": cost,
        "per_run": cost / runs if runs else 0.0,
        "mean_rounds": sum(n * k for n, k in report.rounds.items()) / rounds if rounds else 0.0,
    }


def routes(settings: Settings) -> list[BaseRoute]:
    """The dashboard's routes (to mount at `/dashboard`), or none when it is off. With BATON_DASHBOARD=token
    and no usable token, SettingsError."""
    if settings.dashboard != "token":
        return []
    return Dashboard(settings, access.usable_token(settings)).routes()
