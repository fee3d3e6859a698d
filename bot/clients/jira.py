"""Baton's Jira adapter on the `jira` client: typed reads, exactly-once writes, mapped errors.

Jira wiki markup has no comment syntax (`<!-- … -->` renders literally) and Jira Cloud strips `{anchor}`
macros when it converts wiki markup to ADF (jgm/pandoc#6407). So Baton's marker on Jira is a last line of
white text, `{color:#ffffff}baton.effect=<key>{color}`, with every character of the key other than
letters, digits and `.` percent-encoded, so that no wiki markup (`-strike-`, `+under+`, `!image!`, `:D`)
can mangle it. It is invisible on Jira's default light theme and stays machine-readable after Cloud's
ADF round trip. `find_jira_marker` also accepts the generic `<!-- baton:effect=… -->` form.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from jira import JIRA, JIRAError

from bot.clients.retry import RetryableError, RetryPolicy, Sleep, exactly_once, parse_retry_after, retry_async
from bot.effects import (
    EffectLedger,
    find_jira_marker,
    is_jira_bot_text,
    jira_marker,
    marker,
    with_jira_marker,
)
from bot.redact import Redactor, redact_except_tail

__all__ = ["find_jira_marker", "is_jira_bot_text", "jira_marker", "with_jira_marker"]
from config.settings import Settings

T = TypeVar("T")
Raw = Mapping[str, Any]

TRANSIENT_STATUSES = frozenset({408, 425, 429})
ISSUE_FIELDS = "summary,description,labels,components,status,project,issuetype,issuelinks,comment"
MARKER_SEARCH_LIMIT = 100
MAX_DETAIL = 300


# --- the hidden marker, Jira flavour ----------------------------------------------------------------------


# --- typed results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JiraUser:
    """`account_id` is the Cloud accountId, or the Data Center user name."""

    account_id: str
    display_name: str


@dataclass(frozen=True)
class JiraLink:
    """A linked issue, with the relation as seen from this issue (e.g. "blocks", "is blocked by")."""

    key: str
    type: str
    summary: str


@dataclass(frozen=True)
class JiraComment:
    id: str
    author: JiraUser | None
    body: str
    created: str


@dataclass(frozen=True)
class JiraIssue:
    key: str
    id: str
    summary: str
    description: str | None
    labels: tuple[str, ...]
    status: str
    project_key: str
    links: tuple[JiraLink, ...]
    comments: tuple[JiraComment, ...]  # the most recent ones, oldest first
    components: tuple[str, ...] = ()  # names; several mapped ones make a multi-repository ticket


@dataclass(frozen=True)
class JiraTransition:
    id: str
    name: str
    to_status: str


def parse_user(raw: Raw | None) -> JiraUser | None:
    if not raw:
        return None
    account = raw.get("accountId") or raw.get("name") or raw.get("key")
    return JiraUser(str(account), str(raw.get("displayName") or account)) if account else None


def parse_comment(raw: Raw) -> JiraComment:
    return JiraComment(
        str(raw["id"]), parse_user(raw.get("author")), str(raw.get("body") or ""), str(raw.get("created", ""))
    )


def parse_link(raw: Raw) -> JiraLink:
    side = "outward" if "outwardIssue" in raw else "inward"
    other = raw[f"{side}Issue"]
    return JiraLink(
        str(other["key"]), str(raw["type"][side]), str(other.get("fields", {}).get("summary", ""))
    )


def parse_issue(raw: Raw, recent: int = 20) -> JiraIssue:
    fields = raw["fields"]
    comments = [parse_comment(c) for c in (fields.get("comment") or {}).get("comments", [])]
    return JiraIssue(
        key=str(raw["key"]),
        id=str(raw["id"]),
        summary=str(fields.get("summary") or ""),
        description=fields.get("description"),
        labels=tuple(fields.get("labels") or ()),
        status=str((fields.get("status") or {}).get("name", "")),
        project_key=str((fields.get("project") or {}).get("key", "")),
        links=tuple(parse_link(link) for link in fields.get("issuelinks") or ()),
        comments=tuple(comments[-recent:] if recent else ()),
        components=tuple(
            str(c["name"]) for c in fields.get("components") or () if isinstance(c, dict) and c.get("name")
        ),
    )


def parse_transition(raw: Raw) -> JiraTransition:
    return JiraTransition(str(raw["id"]), str(raw["name"]), str((raw.get("to") or {}).get("name", "")))


def pick_transition(options: list[JiraTransition], name: str) -> JiraTransition | None:
    """The offered transition called `name`, or leading to the status `name` (case-insensitive)."""
    wanted = name.casefold()
    return next((t for t in options if wanted in (t.name.casefold(), t.to_status.casefold())), None)


# --- errors -----------------------------------------------------------------------------------------------


class JiraProblem(Exception):
    """Any failure of a Jira call; messages never contain the token."""


class JiraError(JiraProblem):
    """Permanent: Jira refused the request (bad input, no permission, not found); retrying will not help."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class JiraUnavailable(JiraProblem, RetryableError):
    """Transient: timeout, connection failure, 429 or 5xx; retry later (`retry_after` s if known)."""


def translate(op: str, exc: BaseException, secret: str) -> JiraProblem | None:
    """Map a `jira`/`requests` failure onto Baton's errors (secret masked); None for programming errors."""
    if isinstance(exc, JIRAError):
        status = exc.status_code
        detail = " ".join(str(exc.text or "").split())
        detail = detail.replace(secret, "[REDACTED]") if secret else detail
        message = f"Jira {op} failed: HTTP {status}" + (f": {detail[:MAX_DETAIL]}" if detail else "")
        if status is None or status >= 500 or status in TRANSIENT_STATUSES:
            headers = exc.response.headers if exc.response is not None else {}
            return JiraUnavailable(message, retry_after=parse_retry_after(headers.get("Retry-After")))
        return JiraError(message, status)
    if isinstance(exc, requests.RequestException | ValueError):  # no usable answer (or not JSON)
        return JiraUnavailable(f"Jira {op} failed: {type(exc).__name__}")
    return None


# --- the client -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JiraConfig:
    """Where and how to reach Jira; `user` None means `token` is a Data Center PAT (Bearer)."""

    url: str
    token: str = field(repr=False)
    user: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 20.0
    reads: RetryPolicy = field(default_factory=RetryPolicy)  # Retry-After honoured up to its cap
    recent_comments: int = 20


def connect(config: JiraConfig) -> JIRA:
    """The `jira` client with timeouts always set and its own retries off (the adapter decides)."""
    auth: dict[str, Any] = (
        {"basic_auth": (config.user, config.token)} if config.user else {"token_auth": config.token}
    )
    timeout = (config.connect_timeout_s, config.read_timeout_s)
    return JIRA(server=config.url, timeout=timeout, max_retries=0, get_server_info=True, **auth)


# --- the one exit: every write's data passes through the redactor ------------------------------------------

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


def redact_posted(redactor: Redactor, text: str) -> str:
    """`text` redacted, its trailing effect marker (Jira or generic form) kept as it is."""
    key = find_jira_marker(text)
    return redact_except_tail(redactor, text, (jira_marker(key), marker(key)) if key else ())


def redact_payload(redactor: Redactor, data: Any) -> Any:
    """A request body with every string in it redacted: a JSON text is redacted value by value (so it
    stays valid JSON), any other text as a whole, a dict or list recursively."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return data
    if isinstance(data, str):
        try:
            parsed = json.loads(data)
        except ValueError:
            return redact_posted(redactor, data)
        return json.dumps(redact_payload(redactor, parsed)) if isinstance(parsed, dict | list | str) else data
    if isinstance(data, Mapping):
        return {k: redact_payload(redactor, v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_payload(redactor, v) for v in data]
    return data


def redact_writes(jira: JIRA, redactor: Redactor) -> None:
    """Route every POST/PUT/PATCH of this `jira` client through the redactor. Every call the `jira` library
    makes (`JIRA.add_comment`, `Comment.update`, transitions, …) goes through its one session's
    `request`, so that is where the body (`data=` or `json=`) is redacted; nothing bypasses it."""
    session = jira._session
    send = session.request

    def request(method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if method.upper() in WRITE_METHODS:
            for name in ("data", "json"):
                if kwargs.get(name) is not None:
                    kwargs[name] = redact_payload(redactor, kwargs[name])
        return send(method, url, *args, **kwargs)

    setattr(session, "request", request)  # noqa: B010 — an instance attribute, seen by session.post/put


class JiraClient:
    """Async facade: the sync `jira` client runs in a thread; reads retry, writes go exactly once."""

    def __init__(
        self,
        config: JiraConfig,
        ledger: EffectLedger,
        *,
        sleep: Sleep = asyncio.sleep,
        factory: Callable[[JiraConfig], JIRA] = connect,
        redactor: Redactor | None = None,
    ) -> None:
        self.config = config
        self._redactor = redactor or Redactor([config.token])  # every write's data passes through it
        self.ledger = ledger
        self._sleep = sleep
        self._factory = factory
        self._jira: JIRA | None = None
        self._lock = asyncio.Lock()
        self._bot: JiraUser | None = None

    async def close(self) -> None:
        if self._jira is not None:
            await asyncio.to_thread(self._jira.close)
            self._jira = None

    async def _connection(self) -> JIRA:
        async with self._lock:
            if self._jira is None:
                jira = await asyncio.to_thread(self._factory, self.config)
                redact_writes(jira, self._redactor)
                self._jira = jira
            return self._jira

    async def _call(self, op: str, fn: Callable[[JIRA], T]) -> T:
        """One attempt; `jira`/`requests` failures leave as JiraError/JiraUnavailable (no chained context)."""
        try:
            jira = await self._connection()
            return await asyncio.to_thread(fn, jira)
        except Exception as exc:
            problem = translate(op, exc, self.config.token)
            if problem is None:
                raise
        raise problem from None

    async def _read(self, op: str, fn: Callable[[JIRA], T]) -> T:
        """An idempotent read: retried on JiraUnavailable with the configured policy."""
        return await retry_async(lambda: self._call(op, fn), self.config.reads, sleep=self._sleep)

    # --- reads ----------------------------------------------------------------------------------------------

    async def bot_account(self) -> JiraUser:
        """The account the token belongs to (`GET /myself`), cached."""
        if self._bot is None:
            user = parse_user(await self._read("read myself", lambda j: j.myself()))
            if user is None:
                raise JiraError("Jira read myself failed: no account id in the answer")
            self._bot = user
        return self._bot

    async def issue(self, key: str) -> JiraIssue:
        raw = await self._read(f"read issue {key}", lambda j: j.issue(key, fields=ISSUE_FIELDS).raw)
        return parse_issue(raw, self.config.recent_comments)

    async def transitions(self, key: str) -> list[JiraTransition]:
        """The transitions available now; Baton only proposes them (`transition` is the approved path)."""
        raw = await self._read(f"read transitions of {key}", lambda j: j.transitions(key))
        return [parse_transition(t) for t in raw]

    async def user_in_group(self, account: str, group: str) -> bool:
        """Whether `account` (Cloud accountId / DC name) is in `group`; an unknown account is in no group."""
        try:
            raw = await self._read("read user groups", lambda j: j.user(account, expand="groups").raw)
        except JiraError as exc:
            if exc.status == 404:
                return False
            raise
        names = {str(g.get("name", "")).casefold() for g in (raw.get("groups") or {}).get("items", [])}
        return group.casefold() in names

    async def _comments(self, key: str) -> list[JiraComment]:
        raw = await self._read(
            f"read comments of {key}",
            lambda j: [c.raw for c in j.comments(key, order_by="-created", max_results=MARKER_SEARCH_LIMIT)],
        )
        return [parse_comment(c) for c in raw]

    # --- writes ---------------------------------------------------------------------------------------------

    async def _find_posted(self, key: str, effect_key: str) -> str | None:
        bot = await self.bot_account()
        for comment in await self._comments(key):
            author = comment.author.account_id if comment.author else None
            if author == bot.account_id and find_jira_marker(comment.body) == effect_key:
                return comment.id
        return None

    async def add_comment(self, key: str, body: str, effect_key: str, *, run_id: str | None = None) -> str:
        """Post `body` (wiki markup) once per `effect_key`; returns the comment id (recorded or adopted)."""
        text = with_jira_marker(body, effect_key)
        return await exactly_once(
            self.ledger,
            effect_key,
            "jira_comment",
            find=lambda: self._find_posted(key, effect_key),
            post=lambda: self._call(f"add comment to {key}", lambda j: str(j.add_comment(key, text).id)),
            run_id=run_id,
        )

    async def edit_comment(self, key: str, comment_id: str, body: str) -> None:
        """Replace a comment's text in place, keeping its marker (status comments are edited in place)."""
        current = await self._read(f"read comment {comment_id}", lambda j: j.comment(key, comment_id))
        kept = find_jira_marker(current.body)
        text = with_jira_marker(body, kept) if kept and find_jira_marker(body) is None else body
        await self._call(f"edit comment {comment_id}", lambda j: current.update(body=text))

    async def transition(self, key: str, name: str, effect_key: str, *, run_id: str | None = None) -> str:
        """Approved path only: move `key` by transition (or status) `name` once; returns the status.

        An issue already in the target status counts as done: after a lost response the transition usually
        is no longer offered, and re-reading the status is how its outcome is learned.
        """
        record = await self.ledger.get(effect_key)
        if record is not None and record.status == "done" and record.external_id:
            return record.external_id
        await self.ledger.begin(effect_key, "jira_transition", run_id)
        status = await self._read(
            f"read status of {key}", lambda j: str(j.issue(key, fields="status").fields.status.name)
        )
        match = pick_transition(await self.transitions(key), name)
        target = match.to_status if match else name
        if status.casefold() == target.casefold():
            await self.ledger.complete(effect_key, status)
            return status
        if match is None:
            raise JiraError(f"Jira transition {name!r} is not available for {key} (status {status!r})")
        await self._call(f"transition {key}", lambda j: j.transition_issue(key, match.id))
        await self.ledger.complete(effect_key, match.to_status)
        return match.to_status

    async def add_label(self, key: str, label: str) -> None:
        """Add one label (idempotent in Jira; used by the sandbox, the demo and tests)."""
        if not label or any(ch.isspace() for ch in label):
            raise JiraError(f"Jira labels cannot be empty or contain spaces: {label[:60]!r}")
        issue = await self._read(f"read issue {key}", lambda j: j.issue(key, fields="labels"))
        await self._call(f"add label to {key}", lambda j: issue.add_field_value("labels", label))


def client_from_settings(settings: Settings, ledger: EffectLedger) -> JiraClient:
    """The client for `BATON_JIRA_URL` with `BATON_JIRA_TOKEN` (and `BATON_JIRA_USER` for basic auth)."""
    if not settings.jira_url or settings.jira_token is None:
        raise JiraError("Jira is not configured: set BATON_JIRA_URL and BATON_JIRA_TOKEN")
    config = JiraConfig(
        url=settings.jira_url, token=settings.jira_token.get_secret_value(), user=settings.jira_user
    )
    return JiraClient(config, ledger, redactor=Redactor.from_settings(settings))
