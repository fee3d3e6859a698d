"""Who may see the dashboard: the configured token, exchanged once for a signed session cookie.

The token is compared in constant time (`hmac.compare_digest`). A session is `v1.<expiry>.<hmac>`,
signed with a key derived from the token, so every web process behind a load balancer accepts the
others' sessions and changing the token ends them all. The cookie is HttpOnly, SameSite=Strict and, when
the dashboard is reached over https (or BATON_PUBLIC_URL is https), Secure. The dashboard only reads,
so a strict same-site cookie is all the cross-site protection it needs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qs, urlencode

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from config.settings import Settings, SettingsError, check_dashboard

COOKIE = "baton_dashboard"
SESSION_S = 12 * 3600
MAX_FORM_BYTES = 4096
_VERSION = "v1"


def usable_token(settings: Settings) -> SecretStr:
    """The dashboard token when the dashboard is on; SettingsError when it is missing or too weak."""
    check_dashboard(settings)
    if settings.dashboard != "token" or settings.dashboard_token is None:
        raise SettingsError("the dashboard is off (BATON_DASHBOARD=token turns it on)")
    return settings.dashboard_token


def token_matches(token: SecretStr, given: str) -> bool:
    return hmac.compare_digest(token.get_secret_value().encode(), given.encode())


def _signature(token: SecretStr, payload: str) -> str:
    key = hmac.new(token.get_secret_value().encode(), b"baton dashboard session", hashlib.sha256).digest()
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def issue(token: SecretStr, now: float | None = None) -> str:
    """A session value valid for SESSION_S seconds."""
    payload = f"{_VERSION}.{int(now if now is not None else time.time()) + SESSION_S}"
    return f"{payload}.{_signature(token, payload)}"


def valid_session(token: SecretStr, value: str | None, now: float | None = None) -> bool:
    """The cookie was issued with this token and has not expired."""
    if not value or len(value) > 200:
        return False
    version, _, rest = value.partition(".")
    expiry, _, signature = rest.partition(".")
    if version != _VERSION or not expiry.isdigit():
        return False
    expected = _signature(token, f"{version}.{expiry}")
    fresh = int(expiry) > (now if now is not None else time.time())
    return hmac.compare_digest(expected.encode(), signature.encode()) and fresh


def secure(request: Request, settings: Settings) -> bool:
    """Mark the cookie Secure when the dashboard is served over https (directly or behind TLS)."""
    public = (settings.public_url or "").lower()
    return request.url.scheme == "https" or public.startswith("https://")


def signed_in(response: Response, request: Request, settings: Settings, token: SecretStr) -> Response:
    response.set_cookie(
        COOKIE, issue(token), max_age=SESSION_S, path=mount_path(request), secure=secure(request, settings),
        httponly=True, samesite="strict",
    )  # fmt: skip
    return response


def signed_out(response: Response, request: Request) -> Response:
    response.delete_cookie(COOKIE, path=mount_path(request), httponly=True, samesite="strict")
    return response


def mount_path(request: Request) -> str:
    """Where the dashboard is mounted (`/dashboard`, behind any root path)."""
    return str(request.scope.get("root_path", "")).rstrip("/") or "/dashboard"


def safe_next(request: Request, wanted: str | None) -> str:
    """A page of this dashboard to go back to after signing in; anything else is the runs list."""
    base = mount_path(request)
    if (
        wanted
        and wanted.startswith(base + "/")
        and "//" not in wanted
        and "\\" not in wanted
        and wanted.isprintable()
    ):
        return wanted
    return base + "/"


def without_token(request: Request) -> str:
    """The requested page with the `token` parameter taken out (where the token exchange redirects)."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    return safe_next(request, request.url.path + (f"?{urlencode(query)}" if query else ""))


def exchange(request: Request, settings: Settings, token: SecretStr) -> Response | None:
    """`?token=…` on any page: a right token signs in and redirects to the page without it."""
    given = request.query_params.get("token")
    if given is None or not token_matches(token, given):
        return None
    return signed_in(RedirectResponse(without_token(request), status_code=303), request, settings, token)


def form_token(body: bytes) -> str:
    """The `token` field of a urlencoded login form (bounded; anything odd is an empty token)."""
    if len(body) > MAX_FORM_BYTES:
        return ""
    try:
        fields = parse_qs(body.decode(), max_num_fields=4, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return ""
    values = fields.get("token") or [""]
    return values[0].strip()
