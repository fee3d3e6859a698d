"""Run one Claude Code call under a profile, a tool policy, a clean environment and a hard timeout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions, HookMatcher, Message, ResultError, ResultMessage, query
from claude_agent_sdk.types import SystemPromptPreset
from pydantic import ValidationError

from bot.agent.cli_wrapper import Launcher, bundled_cli, write_launcher
from bot.agent.env import build_agent_env
from bot.agent.policy import NETWORK_TOOLS
from bot.agent.process import kill_run, running
from bot.agent.profiles import Profile, get_profile
from bot.agent.recorder import Recorder
from bot.agent.result import AgentRequest, AgentResult, TokenUsage
from bot.agent.worktree import FingerprintError, fingerprint, refresh_index
from bot.containment.model_proxy import ModelRelay

log = logging.getLogger(__name__)
CANCEL_WAIT_S = 10.0


@dataclass(frozen=True)
class _Outcome:
    timed_out: bool = False
    error: str | None = None


def _options(
    request: AgentRequest, profile: Profile, launcher: Launcher, recorder: Recorder
) -> ClaudeAgentOptions:
    prompt: SystemPromptPreset = {"type": "preset", "preset": "claude_code"}
    if request.append_system_prompt:
        prompt["append"] = request.append_system_prompt
    schema = request.output_model.model_json_schema() if request.output_model else None
    return ClaudeAgentOptions(
        cwd=str(recorder.worktree),
        cli_path=str(launcher.path),
        system_prompt=prompt,
        tools=list(profile.tools),
        disallowed_tools=sorted(NETWORK_TOOLS),
        permission_mode="default",
        can_use_tool=recorder.can_use_tool,
        hooks={"PreToolUse": [HookMatcher(matcher=None, hooks=[recorder.pre_tool_use])]},
        setting_sources=[],
        skills=[],
        strict_mcp_config=True,
        max_turns=request.max_turns,
        max_budget_usd=request.max_budget_usd,
        model=request.model,
        output_format={"type": "json_schema", "schema": schema} if schema else None,
        stderr=recorder.on_stderr,
    )


class _Gate:
    """Holds the prompt back until the worktree is ready (lent, fingerprinted), so the sandbox and the
    CLI start meanwhile: the SDK asks for the prompt once the CLI has answered its initialize request,
    and the agent can do nothing before the prompt. A closed gate sends none and the CLI ends."""

    def __init__(self, marks: _Marks, prompted: list[asyncio.Event]) -> None:
        self.prompt, self.marks, self.prompted = "", marks, prompted
        self._open = asyncio.Event()
        self._send = False

    def release(self, send: bool, prompt: str = "") -> None:
        self._send, self.prompt = send, prompt
        self._open.set()

    async def opened(self) -> None:
        await self._open.wait()

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        self.marks.started = time.perf_counter()  # the CLI answered initialize
        await self._open.wait()
        self.marks.prompted = time.perf_counter()
        if self._send:  # the message the SDK itself sends for a string prompt
            for event in self.prompted:  # the CLI is up and has its prompt
                event.set()
            yield {
                "type": "user",
                "session_id": "",
                "message": {"role": "user", "content": self.prompt},
                "parent_tool_use_id": None,
            }


@dataclass
class _Marks:
    """perf_counter() times of one call, for its `mechanics_ms`."""

    begun: float = field(default_factory=time.perf_counter)
    asked: float | None = None  # the prompt was given (later than `begun` for a prestarted CLI)
    started: float | None = None  # the CLI answered the SDK's initialize request
    ready: float | None = None  # the worktree was lent and fingerprinted
    prompted: float | None = None
    result: float | None = None  # the CLI's result message arrived
    driven: float | None = None  # the CLI's processes are gone

    def mechanics_ms(self, after_s: float) -> dict[str, int]:
        """Baton's own time around the agent: `agent start` (launcher, sandbox, CLI start, the SDK's
        handshake, while the worktree is lent and fingerprinted; for a prestarted CLI only what of its
        start outlasted the wait for the prompt), `fingerprint` (what of the first fingerprint outlasted
        the start, and all of the second), `agent end` (the CLI's exit, reaping)."""
        found: dict[str, float] = {"fingerprint": after_s}
        if self.started is not None:
            waited_from = max(self.begun, self.asked or self.begun)
            found["agent start"] = max(0.0, self.started - waited_from)
            if self.ready is not None:
                found["fingerprint"] += max(0.0, self.ready - max(self.started, waited_from))
        if self.result is not None and self.driven is not None:
            found["agent end"] = self.driven - self.result
        return {name: round(seconds * 1000) for name, seconds in found.items()}


async def _consume(messages: AsyncIterator[Message], recorder: Recorder, marks: _Marks) -> None:
    async for message in messages:
        if isinstance(message, ResultMessage):
            marks.result = time.perf_counter()
        recorder.observe(message)


async def _drive(
    request: AgentRequest, options: ClaudeAgentOptions, recorder: Recorder, launcher: Launcher, gate: _Gate
) -> _Outcome:
    task = asyncio.create_task(_consume(query(prompt=gate.stream(), options=options), recorder, gate.marks))
    opened = asyncio.create_task(gate.opened())  # the call's time runs from its prompt (or its refusal)
    try:
        await asyncio.wait({task, opened}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        opened.cancel()
    done, _ = await asyncio.wait({task}, timeout=request.timeout_s)
    if task not in done:
        await kill_run(launcher.pid(), launcher.marker, request.kill_grace_s)
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_WAIT_S)
        return _Outcome(
            timed_out=True, error=f"timed out after {request.timeout_s:g}s; the agent's processes were killed"
        )
    exc = task.exception()
    if exc is None or (isinstance(exc, ResultError) and recorder.result is not None):
        return _Outcome()
    tail = " | ".join(recorder.stderr)
    return _Outcome(
        error=f"the agent failed: {type(exc).__name__}: {exc}" + (f" (stderr: {tail})" if tail else "")
    )


async def _state(worktree: Path, profile: Profile) -> str | None:
    """A read-only run's worktree fingerprint (None: unreadable). A run that may edit is not
    fingerprinted: changing the worktree is its job, and validate's diff says what changed."""
    if not profile.read_only:
        return None
    try:
        return await fingerprint(worktree)
    except FingerprintError:
        return None


def _from_cli(recorder: Recorder, outcome: _Outcome, profile: Profile) -> AgentResult:
    rm = recorder.result
    denials = recorder.all_denials()
    if rm is None:
        return AgentResult(
            profile.name,
            True,
            outcome.error or "the agent ended without a result",
            timed_out=outcome.timed_out,
            session_id=recorder.session_id,
            num_turns=recorder.assistant_messages,
            usage=recorder.streamed_usage(),
            total_cost_usd=recorder.streamed_cost(),  # no CLI total: the streamed tokens, priced
            denials=denials,
        )
    error = outcome.error
    if rm.is_error and error is None:
        detail = "; ".join(rm.errors or []) or (rm.result or "")
        error = f"the agent reported an error ({rm.subtype}, {rm.terminal_reason}): {detail[:500]}"
    return AgentResult(
        profile=profile.name,
        is_error=rm.is_error or error is not None,
        error=error,
        subtype=rm.subtype,
        terminal_reason=rm.terminal_reason,
        text=rm.result,
        structured_output=rm.structured_output,
        session_id=rm.session_id,
        num_turns=rm.num_turns,
        duration_ms=rm.duration_ms,
        usage=TokenUsage.of(rm.usage),
        total_cost_usd=float(rm.total_cost_usd or 0.0),
        denials=denials,
        timed_out=outcome.timed_out,
    )


def _typed_output(result: AgentResult, request: AgentRequest) -> AgentResult:
    model = request.output_model
    if model is None or result.is_error:
        return result
    if result.structured_output is None:
        return replace(result, is_error=True, error=f"the agent returned no {model.__name__}")
    try:
        return replace(result, structured_output=model.model_validate(result.structured_output))
    except ValidationError as exc:
        return replace(
            result, is_error=True, error=f"the agent's output is not a valid {model.__name__}: {exc}"[:800]
        )


def _guard_worktree(
    result: AgentResult, profile: Profile, before: str | None, after: str | None
) -> AgentResult:
    changed = None if before is None or after is None else before != after
    result = replace(result, worktree_changed=changed)
    if profile.read_only and changed is not False:
        why = "changed the worktree" if changed else "left a worktree whose state cannot be verified"
        return replace(result, is_error=True, error=f"the read-only {profile.name} run {why}")
    return result


def _private_dirs(run_dir: Path) -> tuple[Path, Path, Path]:
    """The run's HOME and TMPDIR (handed to the sandbox's uid) and the relay's socket dir."""
    home, tmp, relay = run_dir / "home", run_dir / "tmp", run_dir / "relay"
    for directory in (home / ".claude", tmp):
        directory.mkdir(parents=True, mode=0o700)
    relay.mkdir(mode=0o755)
    return home, tmp, relay


async def _run_in(
    run_dir: Path,
    request: AgentRequest,
    profile: Profile,
    prompt: asyncio.Future[str | None],
    idle_s: float,
    prompted: list[asyncio.Event],
    placed: asyncio.Future[bool],
) -> AgentResult:
    """One call in `run_dir`; `prompt` resolves to the prompt (None: the call is not wanted after all,
    the CLI gets none and ends). A normal call has it at once; a prestarted one later. The events in
    `prompted` are set once the CLI is up and has its prompt (the call's own start is behind it).
    `placed` resolves once the worktree is ready to be lent (False: it never will be, see `_placed`)."""
    marks = _Marks()
    worktree = request.worktree.resolve()
    home, tmp, relay_dir = _private_dirs(run_dir)
    containment = request.containment
    containment.give(home, tmp)
    cli = (request.cli_path or bundled_cli()).resolve()
    recorder = Recorder(profile, worktree, request.declared_commands)
    shared = [worktree] if profile.read_only else []
    argv = containment.wrap(
        [str(cli)],
        cwd=worktree,
        writable=[home, tmp, *([] if profile.read_only else [worktree])],
        read_only=[cli, relay_dir, *shared],
    )
    lent = containment.lend(worktree) if profile.may_edit else contextlib.nullcontext()
    gate = _Gate(marks, prompted)
    async with ModelRelay(relay_dir / "model.sock", request.base_url, request.api_key) as relay:
        env = build_agent_env(request.environ, home=home, tmpdir=tmp, socket=relay.socket, token=relay.token)
        launcher = write_launcher(run_dir, argv, env)
        drive = asyncio.create_task(_drive_and_reap(request, profile, launcher, recorder, gate))
        with contextlib.ExitStack() as stack:  # leaves (reseals `.git`) only once the CLI is gone
            try:
                # while the sandbox and the CLI start; the prompt waits for it (lend's chown walk is safe
                # only while nothing the agent controls runs: containment.host._chown_tree)
                if await _placed(placed, prompt, idle_s):
                    await _enter(stack, lent)
                    if profile.may_edit:  # (nothing of the agent's runs yet)
                        await refresh_index(worktree)
                    given = await _given(prompt, launcher, idle_s, drive)
                else:
                    given = None
                marks.asked = time.perf_counter()
                before = None if given is None else await _state(worktree, profile)
                marks.ready = time.perf_counter()
                wanted = given is not None and (before is not None or not profile.read_only)
                gate.release(send=wanted, prompt=given or "")
                outcome = await asyncio.shield(drive)
            except asyncio.CancelledError as exc:  # what the call streamed before it was stopped
                exc.partial = _from_cli(recorder, _Outcome(error="cancelled"), profile)  # type: ignore[attr-defined]
                raise
            finally:
                if not drive.done():  # cancelled or failed: the drive kills the run (and re-raises)
                    drive.cancel()
                    await asyncio.wait({drive})
    marks.driven = time.perf_counter()
    if given is None:
        return AgentResult(profile.name, True, "the prestarted call was not used", subtype=UNUSED)
    if before is None and profile.read_only:
        return AgentResult(
            profile.name, True, f"cannot fingerprint the worktree {worktree}; refusing a read-only run"
        )
    if _died_unused(idle_s, outcome, recorder):
        return AgentResult(profile.name, True, f"its CLI had ended: {outcome.error}", subtype=UNUSED)
    result = _typed_output(_from_cli(recorder, outcome, profile), request)
    checked = time.perf_counter()
    after = await _state(worktree, profile)
    result = replace(result, mechanics_ms=marks.mechanics_ms(time.perf_counter() - checked))
    return _guard_worktree(result, profile, before, after)


async def _placed(placed: asyncio.Future[bool], prompt: asyncio.Future[str | None], idle_s: float) -> bool:
    """Whether the worktree the CLI was started in is ready for the call: at once for a normal call; a
    CLI started while its worktree was still being reset waits for that. False when it never will be
    (the call was refused meanwhile, nothing came within `idle_s`, or the directory is no longer the
    one the CLI was started in)."""
    if not placed.done():
        waits: set[asyncio.Future[Any]] = {placed, prompt}
        await asyncio.wait(waits, timeout=idle_s or None, return_when=asyncio.FIRST_COMPLETED)
    return placed.done() and placed.result()


def _identity(path: Path) -> tuple[int, int] | None:
    """The directory itself (device, inode), not its name: a sandbox binds what the name meant then."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _died_unused(idle_s: float, outcome: _Outcome, recorder: Recorder) -> bool:
    """A prestarted CLI (`idle_s` set) that ended as it was given its prompt, before it answered at all
    (its death raced the prompt): the caller starts the call afresh, as for one that ended before."""
    died = outcome.error is not None and not outcome.timed_out
    return bool(idle_s) and died and recorder.result is None and not recorder.assistant_messages


WATCH_S = 0.25  # how often a prestarted call waiting for its prompt checks that its CLI still runs


async def _given(
    prompt: asyncio.Future[str | None], launcher: Launcher, idle_s: float, drive: asyncio.Task[_Outcome]
) -> str | None:
    """The prompt, once given; None when the call is refused, when a prestarted CLI ended before it (the
    caller starts the call afresh) or after `idle_s` without one (a prestarted CLI nobody used). Ended:
    its processes are gone, or the SDK's drive of it is over (also when the launcher died before it
    wrote its pid file)."""
    deadline = time.monotonic() + idle_s
    while not prompt.done():
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        await asyncio.wait({prompt}, timeout=min(WATCH_S, left))
        if not prompt.done() and (drive.done() or _ended(launcher)):
            return None
    if prompt.cancelled() or (idle_s and (drive.done() or _ended(launcher))):  # (once more as it is given)
        return None
    return prompt.result()


def _ended(launcher: Launcher) -> bool:
    pid = launcher.pid()
    return pid is not None and not running(pid)


async def _enter(stack: contextlib.ExitStack, context: contextlib.AbstractContextManager[None]) -> None:
    """Enter `context` (lending walks the worktree) in a thread; if cancelled meanwhile, wait for the
    thread, so the stack holds the context and undoes it."""
    entering = asyncio.ensure_future(asyncio.to_thread(stack.enter_context, context))
    try:
        await asyncio.shield(entering)
    except asyncio.CancelledError:
        await asyncio.wait({entering})
        raise


async def _drive_and_reap(
    request: AgentRequest, profile: Profile, launcher: Launcher, recorder: Recorder, gate: _Gate
) -> _Outcome:
    try:
        options = _options(request, profile, launcher, recorder)
        outcome = await _drive(request, options, recorder, launcher, gate)
    except asyncio.CancelledError as exc:  # /cancel or a worker shutdown: the agent must not outlive the job
        await asyncio.shield(kill_run(launcher.pid(), launcher.marker, request.kill_grace_s))
        exc.partial = _from_cli(recorder, _Outcome(error="cancelled"), profile)  # type: ignore[attr-defined]
        raise
    survivors = await kill_run(launcher.pid(), launcher.marker, request.kill_grace_s)
    if survivors:
        log.error("agent processes survived SIGKILL: %s", sorted(survivors))
    return outcome


async def run_agent(request: AgentRequest, prompted: asyncio.Event | None = None) -> AgentResult:
    """Run the agent once; never raises for agent failures, timeouts or policy denials. `prompted` is set
    once the CLI is up and has its prompt."""
    prompt: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    prompt.set_result(request.prompt)
    placed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    placed.set_result(True)
    return await _run(request, prompt, idle_s=0.0, prompted=[prompted] if prompted else [], placed=placed)


UNUSED = "unused"  # the subtype of a prestarted call that got no prompt


class Prestarted:
    """A call whose CLI starts now (sandbox, CLI, the SDK's handshake; an implementer's worktree lent)
    and whose prompt comes later (`ask`): a phase starts the next phase's CLI while it still works,
    so that start is off the ticket's path. The agent can do nothing before its prompt; a read-only
    call fingerprints its worktree only once asked. The call's timeout runs from the prompt. Unused, it
    must be `discard`ed (the CLI gets no prompt and ends); after twice the request's timeout without a
    prompt it ends on its own.

    With `placed=False` the CLI starts in a worktree that is still being reset (bot/git/workspace.py
    `create_worktree`'s `arriving`): nothing is lent, and no prompt taken, before `place()`."""

    def __init__(self, request: AgentRequest, *, placed: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self._where = _identity(request.worktree)
        self._placed: asyncio.Future[bool] = loop.create_future()
        if placed:
            self._placed.set_result(True)
        self._prompt: asyncio.Future[str | None] = loop.create_future()
        self._prompted: list[asyncio.Event] = []
        self._call = asyncio.create_task(
            _run(request, self._prompt, 2 * request.timeout_s, prompted=self._prompted, placed=self._placed)
        )

    def place(self) -> bool:
        """The worktree is ready: the call may have it lent and take its prompt. False, and the CLI ends
        unused, when the directory at the worktree's path is not the one the CLI was started in (a reset
        that failed was replaced by a fresh checkout): the caller starts another."""
        if not self._placed.done():
            now = _identity(self.request.worktree)
            self._placed.set_result(now is not None and now == self._where)
        return self._placed.result()

    def fits(self, request: AgentRequest) -> bool:
        """Whether this CLI was started for `request`'s call (all but the prompt the same)."""
        return replace(request, prompt="") == replace(self.request, prompt="")

    @property
    def waiting(self) -> bool:
        """Its CLI still runs, and has no prompt yet."""
        return not self._call.done() and not self._prompt.done()

    async def ask(self, prompt: str, prompted: asyncio.Event | None = None) -> AgentResult | None:
        """The call's result; None when the CLI is no longer waiting (it ended unused or failed before
        its prompt): the caller starts the call afresh. `prompted` as for `run_agent`."""
        if not self.waiting or not (self._placed.done() and self._placed.result()):  # never `place`d
            await self.discard()
            return None
        if prompted is not None:
            self._prompted.append(prompted)
        self._prompt.set_result(prompt)
        try:
            result = await asyncio.shield(self._call)
        except asyncio.CancelledError as exc:
            self._call.cancel()  # the runner kills the CLI
            await asyncio.wait({self._call})
            try:
                self._call.result()
            except asyncio.CancelledError as inner:  # the runner's own, carrying what the call streamed
                exc.partial = getattr(inner, "partial", None)  # type: ignore[attr-defined]
            raise
        return None if result.subtype == UNUSED else result

    async def discard(self) -> None:
        if not self._prompt.done():
            self._prompt.set_result(None)
        await asyncio.wait({self._call})
        if not self._call.cancelled() and self._call.exception() is not None:
            log.warning("a prestarted agent call failed unused: %s", self._call.exception())


async def _run(
    request: AgentRequest,
    prompt: asyncio.Future[str | None],
    idle_s: float,
    *,
    prompted: list[asyncio.Event],
    placed: asyncio.Future[bool],
) -> AgentResult:
    profile = get_profile(request.profile)
    with tempfile.TemporaryDirectory(prefix="baton-agent-", dir=request.run_root) as run_dir:
        result = await _run_in(Path(run_dir), request, profile, prompt, idle_s, prompted, placed)
    log.info(
        "agent %s: error=%s turns=%d tokens=%d/%d cost=%.4f denials=%d",
        profile.name,
        result.is_error,
        result.num_turns,
        result.usage.prompt_tokens,
        result.usage.output_tokens,
        result.total_cost_usd,
        len(result.denials),
    )
    return result
