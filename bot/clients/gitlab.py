"""Baton's GitLab adapter on python-gitlab: typed results, bounded read retries, exactly-once writes.

Every python-gitlab call runs in a worker thread with a timeout. Reads (GET) are retried on 5xx,
429 (`Retry-After` honoured, capped) and lost connections; writes are never retried blindly: each
posting method takes an `effect_key`, is guarded by the effect ledger, and ends its text with the
hidden marker `<!-- baton:effect=KEY -->` so a retry finds what an earlier attempt already posted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, BinaryIO, TypeVar

import gitlab
import gitlab.exceptions
import requests

from bot.clients.retry import RetryableError, RetryPolicy, exactly_once, parse_retry_after, retry_async
from bot.effects import EffectLedger, find_marker, marker, with_marker
from bot.redact import Redactor, redact_except_tail
from config.settings import Settings

T = TypeVar("T")
ProjectRef = int | str
USER_AGENT = "baton/0.1 (python-gitlab)"
DEFAULT_TIMEOUT_S = 10.0
SEARCH_LIMIT = 200
MAX_MESSAGE = 200
TRACE_TAIL_BYTES = 256 * 1024  # what `job_trace` keeps of a log's end
TRACE_READ_LIMIT = 64 * 1024 * 1024  # a log is read at most this far (GitLab caps logs at 100 MB)
DRAFT_PREFIX = "Draft: "


class AccessLevel(IntEnum):
    """GitLab's project access levels (`access_level` in the members API)."""

    NONE = 0
    GUEST = 10
    REPORTER = 20
    DEVELOPER = 30
    MAINTAINER = 40
    OWNER = 50


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GitLabUser:
    id: int
    username: str
    name: str


@dataclass(frozen=True)
class Project:
    id: int
    path_with_namespace: str
    default_branch: str
    web_url: str
    http_url_to_repo: str


@dataclass(frozen=True)
class DiffRefs:
    base_sha: str
    head_sha: str
    start_sha: str


@dataclass(frozen=True)
class MergeRequest:
    project_id: int
    iid: int
    id: int
    title: str
    description: str
    state: str
    source_branch: str
    target_branch: str
    sha: str | None
    web_url: str
    draft: bool
    labels: tuple[str, ...]
    author: GitLabUser | None
    diff_refs: DiffRefs | None


@dataclass(frozen=True)
class FileDiff:
    old_path: str
    new_path: str
    diff: str
    new_file: bool
    renamed_file: bool
    deleted_file: bool


@dataclass(frozen=True)
class MergeRequestDiff:
    diff_refs: DiffRefs | None
    files: tuple[FileDiff, ...]

    def patch(self) -> str:
        """The whole change as one unified diff (file headers added to GitLab's per-file hunks)."""
        parts = []
        for f in self.files:
            old = "/dev/null" if f.new_file else f"a/{f.old_path}"
            new = "/dev/null" if f.deleted_file else f"b/{f.new_path}"
            parts.append(f"--- {old}\n+++ {new}\n{f.diff}")
        return "".join(parts)


@dataclass(frozen=True)
class Position:
    """Where a diff note sits (`position` in the discussions API)."""

    base_sha: str | None
    start_sha: str | None
    head_sha: str | None
    old_path: str | None
    new_path: str | None
    old_line: int | None
    new_line: int | None
    position_type: str


@dataclass(frozen=True)
class Note:
    id: int
    body: str
    author: GitLabUser | None
    system: bool
    type: str | None
    created_at: str
    resolvable: bool
    resolved: bool
    position: Position | None


@dataclass(frozen=True)
class Discussion:
    id: str
    individual_note: bool
    notes: tuple[Note, ...]

    @property
    def resolved(self) -> bool:
        resolvable = [n for n in self.notes if n.resolvable]
        return bool(resolvable) and all(n.resolved for n in resolvable)

    @property
    def position(self) -> Position | None:
        return self.notes[0].position if self.notes else None


@dataclass(frozen=True)
class Pipeline:
    """A CI pipeline (`GET /projects/:id/pipelines/:pipeline_id`)."""

    id: int
    project_id: int
    sha: str
    ref: str
    status: str
    source: str
    web_url: str


@dataclass(frozen=True)
class Job:
    """A CI job of a pipeline (`GET /projects/:id/pipelines/:pipeline_id/jobs`); `failure_reason` only
    when it failed."""

    id: int
    name: str
    stage: str
    status: str
    failure_reason: str | None
    allow_failure: bool
    web_url: str
    pipeline_id: int | None = None


# -- errors ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hook:
    """A project webhook: where it points and which events it sends (its token is never read back)."""

    id: int
    url: str
    note_events: bool
    merge_requests_events: bool
    push_events: bool
    pipeline_events: bool = False


def to_hook(data: Mapping[str, Any]) -> Hook:
    return Hook(
        id=int(data["id"]),
        url=str(data.get("url") or ""),
        note_events=bool(data.get("note_events")),
        merge_requests_events=bool(data.get("merge_requests_events")),
        push_events=bool(data.get("push_events")),
        pipeline_events=bool(data.get("pipeline_events")),
    )


class GitLabProblem(Exception):
    """Any failure of a GitLab call; messages never contain the token."""


class GitLabError(GitLabProblem):
    """A permanent failure: retrying the same call will not help."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitLabNotFound(GitLabError):
    """404: the project, MR, note, branch or member does not exist (or is invisible to the bot)."""


class GitLabForbidden(GitLabError):
    """401/403: the token is wrong or lacks the rights for this call."""


class GitLabConflict(GitLabError):
    """409: e.g. an open merge request already exists for this source branch."""


class GitLabUnavailable(GitLabProblem, RetryableError):
    """GitLab is busy or unreachable (5xx, 429, timeout, lost connection): retry later."""


PERMANENT_ERRORS: Mapping[int, type[GitLabError]] = {
    401: GitLabForbidden,
    403: GitLabForbidden,
    404: GitLabNotFound,
    409: GitLabConflict,
}


class _RateLimited(Exception):
    """Raised from the session hook on 429, so the header reaches us (python-gitlab drops headers)."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("429 Too Many Requests")
        self.retry_after = retry_after


def _raise_on_rate_limit(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    if response.status_code == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        response.close()
        raise _RateLimited(retry_after)


def _clean(text: object, secret: str) -> str:
    line = " ".join(str(text).split())
    if secret:
        line = line.replace(secret, "[REDACTED]")
    return line[:MAX_MESSAGE]


def translate(what: str, exc: BaseException, secret: str) -> GitLabProblem | None:
    """Map a python-gitlab / requests failure onto Baton's errors; None for programming errors."""
    if isinstance(exc, _RateLimited):
        return GitLabUnavailable(f"{what}: HTTP 429 rate limited", retry_after=exc.retry_after)
    if isinstance(exc, requests.RequestException):
        return GitLabUnavailable(f"{what}: {type(exc).__name__} (no usable answer)")
    if not isinstance(exc, gitlab.exceptions.GitlabError):
        return None
    code = exc.response_code
    message = f"{what}: HTTP {code} {_clean(exc.error_message, secret)}".rstrip()
    if code is None or code == 429 or code >= 500:
        return GitLabUnavailable(message)
    return PERMANENT_ERRORS.get(code, GitLabError)(message, code)


# -- conversions (pure) ------------------------------------------------------------------------------


def to_user(data: Mapping[str, Any] | None) -> GitLabUser | None:
    if not data:
        return None
    return GitLabUser(int(data["id"]), str(data["username"]), str(data.get("name") or data["username"]))


def to_project(data: Mapping[str, Any]) -> Project:
    return Project(
        id=int(data["id"]),
        path_with_namespace=str(data["path_with_namespace"]),
        default_branch=str(data.get("default_branch") or "main"),
        web_url=str(data.get("web_url") or ""),
        http_url_to_repo=str(data.get("http_url_to_repo") or ""),
    )


def to_diff_refs(data: Mapping[str, Any] | None) -> DiffRefs | None:
    if not data or not all(data.get(k) for k in ("base_sha", "head_sha", "start_sha")):
        return None
    return DiffRefs(str(data["base_sha"]), str(data["head_sha"]), str(data["start_sha"]))


def to_merge_request(data: Mapping[str, Any]) -> MergeRequest:
    return MergeRequest(
        project_id=int(data["project_id"]),
        iid=int(data["iid"]),
        id=int(data["id"]),
        title=str(data["title"]),
        description=str(data.get("description") or ""),
        state=str(data["state"]),
        source_branch=str(data["source_branch"]),
        target_branch=str(data["target_branch"]),
        sha=data.get("sha"),
        web_url=str(data.get("web_url") or ""),
        draft=bool(data.get("draft", data.get("work_in_progress", False))),
        labels=tuple(str(label) for label in data.get("labels") or ()),
        author=to_user(data.get("author")),
        diff_refs=to_diff_refs(data.get("diff_refs")),
    )


def to_pipeline(data: Mapping[str, Any]) -> Pipeline:
    return Pipeline(
        id=int(data["id"]),
        project_id=int(data.get("project_id") or 0),
        sha=str(data.get("sha") or ""),
        ref=str(data.get("ref") or ""),
        status=str(data.get("status") or ""),
        source=str(data.get("source") or ""),
        web_url=str(data.get("web_url") or ""),
    )


def to_job(data: Mapping[str, Any]) -> Job:
    pipeline = data.get("pipeline")
    return Job(
        id=int(data["id"]),
        name=str(data.get("name") or ""),
        stage=str(data.get("stage") or ""),
        status=str(data.get("status") or ""),
        failure_reason=data.get("failure_reason") or None,
        allow_failure=bool(data.get("allow_failure")),
        web_url=str(data.get("web_url") or ""),
        pipeline_id=_int_or_none(pipeline.get("id")) if isinstance(pipeline, Mapping) else None,
    )


def to_file_diff(data: Mapping[str, Any]) -> FileDiff:
    return FileDiff(
        old_path=str(data["old_path"]),
        new_path=str(data["new_path"]),
        diff=str(data.get("diff") or ""),
        new_file=bool(data.get("new_file")),
        renamed_file=bool(data.get("renamed_file")),
        deleted_file=bool(data.get("deleted_file")),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def to_position(data: Mapping[str, Any] | None) -> Position | None:
    if not data:
        return None
    return Position(
        base_sha=data.get("base_sha"),
        start_sha=data.get("start_sha"),
        head_sha=data.get("head_sha"),
        old_path=data.get("old_path"),
        new_path=data.get("new_path"),
        old_line=_int_or_none(data.get("old_line")),
        new_line=_int_or_none(data.get("new_line")),
        position_type=str(data.get("position_type") or "text"),
    )


def to_note(data: Mapping[str, Any]) -> Note:
    return Note(
        id=int(data["id"]),
        body=str(data.get("body") or ""),
        author=to_user(data.get("author")),
        system=bool(data.get("system")),
        type=data.get("type"),
        created_at=str(data.get("created_at") or ""),
        resolvable=bool(data.get("resolvable")),
        resolved=bool(data.get("resolved")),
        position=to_position(data.get("position")),
    )


def to_discussion(data: Mapping[str, Any]) -> Discussion:
    notes = tuple(to_note(n) for n in data.get("notes") or ())
    return Discussion(id=str(data["id"]), individual_note=bool(data.get("individual_note")), notes=notes)


def marked(
    items: Iterable[Mapping[str, Any]], key: str, field: str, limit: int = SEARCH_LIMIT, id_field: str = "id"
) -> str | None:
    """The `id_field` of the first item (of at most `limit`) whose `field` carries the marker for `key`."""
    for count, item in enumerate(items):
        if count >= limit:
            break
        if find_marker(item.get(field)) == key:
            return str(item[id_field])
    return None


# -- the one exit: every write's data passes through the redactor -----------------------------------------

# Fields a write sends a secret in on purpose: the token a project hook is registered with is the webhook
# secret GitLab sends back with each delivery (`add_project_hook`).
UNREDACTED_FIELDS = frozenset({"token"})
WRITE_VERBS = frozenset({"post", "put", "patch"})


def redact_posted(redactor: Redactor, text: str) -> str:
    """`text` redacted, its trailing effect marker kept as it is (a retry finds the post by it)."""
    key = find_marker(text)
    return redact_except_tail(redactor, text, [marker(key)] if key else [])


def redact_fields(redactor: Redactor, data: Mapping[str, Any]) -> dict[str, Any]:
    """Every string in a write's form/JSON data, redacted (lists and nested objects too), but for
    `UNREDACTED_FIELDS`."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return redact_posted(redactor, value)
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return {k: v if k in UNREDACTED_FIELDS else clean(v) for k, v in data.items()}


class RedactingGitlab(gitlab.Gitlab):
    """python-gitlab whose every request goes through `http_request`: there, the data and query of each
    POST/PUT/PATCH (note and reply bodies, MR titles and descriptions, whatever is added later) pass
    through the redactor before they leave the process. Nothing Baton writes to GitLab can bypass it."""

    def __init__(self, redactor: Redactor, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redactor = redactor

    def http_request(
        self,
        verb: str,
        path: str,
        query_data: dict[str, Any] | None = None,
        post_data: dict[str, Any] | bytes | BinaryIO | None = None,
        raw: bool = False,
        streamed: bool = False,
        files: dict[str, Any] | None = None,
        timeout: float | None = None,
        obey_rate_limit: bool = True,
        retry_transient_errors: bool | None = None,
        max_retries: int = 10,
        extra_headers: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        if verb.lower() in WRITE_VERBS:
            if isinstance(post_data, Mapping):
                post_data = redact_fields(self.redactor, post_data)
            if query_data:
                query_data = redact_fields(self.redactor, query_data)
        return super().http_request(
            verb,
            path,
            query_data=query_data,
            post_data=post_data,
            raw=raw,
            streamed=streamed,
            files=files,
            timeout=timeout,
            obey_rate_limit=obey_rate_limit,
            retry_transient_errors=retry_transient_errors,
            max_retries=max_retries,
            extra_headers=extra_headers,
            **kwargs,
        )


# -- the client ----------------------------------------------------------------------------------------


class GitLabClient:
    """Async GitLab operations Baton needs; returns small dataclasses, never python-gitlab objects."""

    def __init__(
        self,
        url: str,
        token: str,
        ledger: EffectLedger,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        read_policy: RetryPolicy | None = None,
        search_limit: int = SEARCH_LIMIT,
        redactor: Redactor | None = None,
    ) -> None:
        session = requests.Session()
        session.hooks["response"].append(_raise_on_rate_limit)
        self._gl = RedactingGitlab(
            redactor or Redactor([token]),
            url,
            private_token=token,
            timeout=timeout_s,
            retry_transient_errors=False,
            per_page=100,
            session=session,
            user_agent=USER_AGENT,
        )
        self._secret = token
        self._ledger = ledger
        self._read_policy = read_policy or RetryPolicy()
        self._search_limit = search_limit
        self._me: GitLabUser | None = None

    @classmethod
    def from_settings(cls, settings: Settings, ledger: EffectLedger) -> GitLabClient:
        """The client for `BATON_GITLAB_URL` / `BATON_GITLAB_TOKEN`."""
        if not settings.gitlab_url or settings.gitlab_token is None:
            raise GitLabError("GitLab is not configured: set BATON_GITLAB_URL and BATON_GITLAB_TOKEN")
        token = settings.gitlab_token.get_secret_value()
        return cls(settings.gitlab_url, token, ledger, redactor=Redactor.from_settings(settings))

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._gl.session.close()

    # -- plumbing ------------------------------------------------------------------------------------

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except Exception as exc:
            problem = translate(what, exc, self._secret)
            if problem is None:
                raise
            raise problem from exc

    async def _read(self, what: str, fn: Callable[[], T]) -> T:
        return await retry_async(lambda: self._call(what, fn), self._read_policy)

    def _project(self, project: ProjectRef) -> Any:
        return self._gl.projects.get(project, lazy=True)

    def _mr(self, project: ProjectRef, iid: int) -> Any:
        return self._project(project).mergerequests.get(iid, lazy=True)

    # -- reads ---------------------------------------------------------------------------------------

    async def bot_user(self) -> GitLabUser:
        """The token's own user (`GET /user`), cached."""
        if self._me is None:

            def fetch() -> GitLabUser | None:
                self._gl.auth()
                return to_user(self._gl.user.attributes if self._gl.user else None)

            me = await self._read("GET /user", fetch)
            if me is None:
                raise GitLabError("GET /user: no user in the answer")
            self._me = me
        return self._me

    async def project(self, project: ProjectRef) -> Project:
        return await self._read("GET project", lambda: to_project(self._gl.projects.get(project).attributes))

    async def merge_request(self, project: ProjectRef, iid: int) -> MergeRequest:
        mrs = self._project(project).mergerequests
        return await self._read("GET merge request", lambda: to_merge_request(mrs.get(iid).attributes))

    async def find_merge_request(
        self, project: ProjectRef, source_branch: str, state: str = "opened"
    ) -> MergeRequest | None:
        """The newest merge request from `source_branch` in `state` (`opened`, `merged`, `all`, ...)."""
        mrs = self._project(project).mergerequests

        def first() -> MergeRequest | None:
            for listed in mrs.list(source_branch=source_branch, state=state, iterator=True):
                return to_merge_request(mrs.get(listed.iid).attributes)  # the single view has diff_refs
            return None

        return await self._read("GET merge requests", first)

    async def mr_diff(self, project: ProjectRef, iid: int) -> MergeRequestDiff:
        """The MR's diff refs and per-file diffs (`GET .../merge_requests/:iid/diffs`, all pages)."""
        mr = await self.merge_request(project, iid)
        path = f"{self._project(project).mergerequests.path}/{iid}/diffs"

        def files() -> tuple[FileDiff, ...]:
            return tuple(to_file_diff(d) for d in self._gl.http_list(path, get_all=True))

        return MergeRequestDiff(mr.diff_refs, await self._read("GET merge request diffs", files))

    async def discussions(self, project: ProjectRef, iid: int) -> list[Discussion]:
        """Every thread of the MR with its notes and diff positions."""
        manager = self._mr(project, iid).discussions
        return await self._read(
            "GET discussions", lambda: [to_discussion(d.attributes) for d in manager.list(get_all=True)]
        )

    async def member_access_level(self, project: ProjectRef, user_id: int) -> int:
        """The user's effective access level (inherited included); 0 when not a member."""
        members = self._project(project).members_all
        try:
            return await self._read("GET member", lambda: int(members.get(user_id).access_level))
        except GitLabNotFound:
            return AccessLevel.NONE

    async def branch_head(self, project: ProjectRef, branch: str) -> str | None:
        """The commit SHA at the head of `branch`, or None when the branch does not exist."""
        branches = self._project(project).branches
        try:
            return await self._read("GET branch", lambda: str(branches.get(branch).commit["id"]))
        except GitLabNotFound:
            return None

    # -- CI: pipelines, jobs, logs -------------------------------------------------------------------

    async def pipeline(self, project: ProjectRef, pipeline_id: int) -> Pipeline:
        pipelines = self._project(project).pipelines
        return await self._read("GET pipeline", lambda: to_pipeline(pipelines.get(pipeline_id).attributes))

    async def latest_pipeline(self, project: ProjectRef, ref: str) -> Pipeline | None:
        """The newest pipeline of `ref` (a branch), or None when it has none."""
        pipelines = self._project(project).pipelines

        def first() -> Pipeline | None:
            for listed in pipelines.list(ref=ref, order_by="id", sort="desc", iterator=True):
                return to_pipeline(listed.attributes)
            return None

        return await self._read("GET pipelines", first)

    async def pipeline_jobs(self, project: ProjectRef, pipeline_id: int) -> list[Job]:
        """Every job of the pipeline, retried attempts too (`include_retried=true`): the retry history."""
        jobs = self._project(project).pipelines.get(pipeline_id, lazy=True).jobs
        return await self._read(
            "GET pipeline jobs",
            lambda: [to_job(j.attributes) for j in jobs.list(include_retried=True, get_all=True)],
        )

    async def job_trace(
        self, project: ProjectRef, job_id: int, tail_bytes: int = TRACE_TAIL_BYTES
    ) -> tuple[bytes, bool]:
        """The last `tail_bytes` of a job's log, streamed (never held whole), and whether it was cut."""
        job = self._project(project).jobs.get(job_id, lazy=True)

        def read() -> tuple[bytes, bool]:
            kept, total = bytearray(), 0
            for chunk in job.trace(streamed=True, iterator=True, chunk_size=64 * 1024):
                total += len(chunk)
                kept += chunk
                if len(kept) > 2 * tail_bytes:
                    del kept[: len(kept) - tail_bytes]
                if total >= TRACE_READ_LIMIT:
                    break
            return bytes(kept[-tail_bytes:]), total > tail_bytes

        return await self._read("GET job trace", read)

    # -- writes (exactly once) -------------------------------------------------------------------------

    async def post_note(
        self, project: ProjectRef, iid: int, body: str, effect_key: str, *, run_id: str | None = None
    ) -> int:
        """Comment on the MR once per `effect_key`; returns the note id."""
        notes = self._mr(project, iid).notes

        def find() -> str | None:
            listing = notes.list(sort="desc", order_by="created_at", iterator=True)
            return marked((n.attributes for n in listing), effect_key, "body", self._search_limit)

        text = with_marker(body, effect_key)
        return int(
            await exactly_once(
                self._ledger,
                effect_key,
                "gitlab.note",
                find=lambda: self._read("GET notes", find),
                post=lambda: self._call("POST note", lambda: str(notes.create({"body": text}).id)),
                run_id=run_id,
            )
        )

    async def reply_in_discussion(
        self,
        project: ProjectRef,
        iid: int,
        discussion_id: str,
        body: str,
        effect_key: str,
        *,
        run_id: str | None = None,
    ) -> int:
        """Reply in a thread once per `effect_key`; returns the note id."""
        discussions = self._mr(project, iid).discussions

        def find() -> str | None:
            return marked(discussions.get(discussion_id).attributes.get("notes") or (), effect_key, "body")

        def post() -> str:
            thread = discussions.get(discussion_id, lazy=True)
            return str(thread.notes.create({"body": with_marker(body, effect_key)}).id)

        return int(
            await exactly_once(
                self._ledger,
                effect_key,
                "gitlab.reply",
                find=lambda: self._read("GET discussion", find),
                post=lambda: self._call("POST reply", post),
                run_id=run_id,
            )
        )

    async def start_discussion(
        self, project: ProjectRef, iid: int, body: str, effect_key: str, *, run_id: str | None = None
    ) -> str:
        """Start a thread on the MR once per `effect_key`; returns the discussion id."""
        discussions = self._mr(project, iid).discussions

        def find() -> str | None:
            listing = (d.attributes for d in discussions.list(iterator=True))
            for count, thread in enumerate(listing):
                if count >= self._search_limit:
                    break
                notes = thread.get("notes") or ()
                if notes and find_marker(notes[0].get("body")) == effect_key:
                    return str(thread["id"])
            return None

        text = with_marker(body, effect_key)
        return await exactly_once(
            self._ledger,
            effect_key,
            "gitlab.discussion",
            find=lambda: self._read("GET discussions", find),
            post=lambda: self._call("POST discussion", lambda: str(discussions.create({"body": text}).id)),
            run_id=run_id,
        )

    async def create_merge_request(
        self,
        project: ProjectRef,
        source_branch: str,
        target_branch: str,
        title: str,
        description: str,
        labels: Iterable[str],
        draft: bool,
        effect_key: str,
        *,
        run_id: str | None = None,
    ) -> MergeRequest:
        """Open the MR once per `effect_key` (the marker goes in the description); returns it."""
        mrs = self._project(project).mergerequests
        data = {
            "source_branch": source_branch,
            "target_branch": target_branch,
            "title": f"{DRAFT_PREFIX}{title}" if draft and not title.lower().startswith("draft:") else title,
            "description": with_marker(description, effect_key),
            "labels": list(labels),
        }

        def find() -> str | None:
            listing = mrs.list(source_branch=source_branch, state="all", iterator=True)
            return marked(
                (m.attributes for m in listing), effect_key, "description", self._search_limit, "iid"
            )

        async def post() -> str:
            try:
                return await self._call("POST merge request", lambda: str(mrs.create(data).iid))
            except GitLabConflict:
                adopted = await self._read("GET merge requests", find)
                if adopted is None:
                    raise
                return adopted

        iid = await exactly_once(
            self._ledger,
            effect_key,
            "gitlab.merge_request",
            find=lambda: self._read("GET merge requests", find),
            post=post,
            run_id=run_id,
        )
        return await self.merge_request(project, int(iid))

    async def award_emoji(
        self,
        project: ProjectRef,
        iid: int,
        note_id: int | None,
        name: str,
        effect_key: str,
        *,
        run_id: str | None = None,
    ) -> int:
        """Award `name` on a note (or on the MR when `note_id` is None) once; returns the award id."""
        marker(effect_key)  # validates the key like every other write
        mr = self._mr(project, iid)
        awards = mr.notes.get(note_id, lazy=True).awardemojis if note_id is not None else mr.awardemojis
        me = await self.bot_user()

        def find() -> str | None:
            for award in awards.list(iterator=True):
                if award.name == name and (award.user or {}).get("id") == me.id:
                    return str(award.id)
            return None

        async def post() -> str:
            try:
                return await self._call("POST award emoji", lambda: str(awards.create({"name": name}).id))
            except GitLabNotFound as exc:  # GitLab answers 404 "has already been taken" for a repeat
                adopted = await self._read("GET award emoji", find)
                if adopted is None:
                    raise exc
                return adopted

        return int(
            await exactly_once(
                self._ledger,
                effect_key,
                "gitlab.award_emoji",
                find=lambda: self._read("GET award emoji", find),
                post=post,
                run_id=run_id,
            )
        )

    # -- idempotent updates ------------------------------------------------------------------------------

    async def edit_note(
        self, project: ProjectRef, iid: int, note_id: int, body: str, *, effect_key: str | None = None
    ) -> None:
        """Replace a note's text (e.g. the status comment); keeps the marker when `effect_key` is given."""
        notes = self._mr(project, iid).notes
        text = body if effect_key is None else with_marker(body, effect_key)
        await self._call("PUT note", lambda: notes.update(note_id, {"body": text}))

    async def resolve_discussion(
        self, project: ProjectRef, iid: int, discussion_id: str, *, resolved: bool = True
    ) -> None:
        discussions = self._mr(project, iid).discussions
        await self._call("PUT discussion", lambda: discussions.update(discussion_id, {"resolved": resolved}))

    # -- onboarding ----------------------------------------------------------------------------------

    async def project_hooks(self, project: ProjectRef) -> list[Hook]:
        hooks = self._project(project).hooks
        return await self._read(
            "GET project hooks", lambda: [to_hook(h.attributes) for h in hooks.list(iterator=True)]
        )

    async def add_project_hook(
        self, project: ProjectRef, url: str, token: str, events: Mapping[str, bool]
    ) -> Hook:
        """Register a webhook (needs Maintainer); callers check `project_hooks` first to stay idempotent."""
        hooks = self._project(project).hooks
        data = {"url": url, "token": token, "enable_ssl_verification": url.startswith("https://"), **events}
        return await self._call("POST project hook", lambda: to_hook(hooks.create(data).attributes))
