"""Containment on this host: which paths a sandbox sees, who owns the worktree while it runs, and
the refusal to run agent work unconfined unless a development setting allows it loudly."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.containment.confine import SETPRIV, Confinement, Drop, bwrap_argv

log = logging.getLogger("baton.containment")

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Only what programs need to start and name users; never /etc as a whole (shadow, ssh host keys, …).
ETC_FILES = (
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "localtime",
    "timezone",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "mime.types",
    "bash.bashrc",
    "profile",
    "inputrc",
    "python3",
    "python3.11",
)
INSTALL_HINT = (
    "install the Debian package 'bubblewrap' (apt-get install bubblewrap), "
    "or set BATON_ALLOW_UNCONTAINED=1 for development only"
)
UNCONTAINED_WARNING = (
    "BATON_ALLOW_UNCONTAINED is set: the agent and the repository's commands run WITHOUT the OS "
    "sandbox and can read this worker's secrets and reach the network. Development only."
)


PROBE_TIMEOUT_S = 10.0


class ContainmentUnavailable(RuntimeError):
    """The OS sandbox cannot run here, and running unconfined was not allowed."""


@dataclass(frozen=True)
class Containment:
    """How this worker confines a command. `bwrap` None means unconfined (explicitly allowed);
    `refusal` set means the sandbox cannot run here and every command is refused with that reason."""

    bwrap: str | None
    read_only: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    drop: Drop | None = None
    setpriv: str = SETPRIV
    refusal: str | None = None

    @property
    def enabled(self) -> bool:
        return self.bwrap is not None

    def wrap(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        writable: Iterable[Path] = (),
        read_only: Iterable[Path] = (),
    ) -> list[str]:
        """The argv that runs `command` confined (unchanged when containment is off)."""
        if self.refusal is not None:
            raise ContainmentUnavailable(self.refusal)
        if self.bwrap is None:
            return list(command)
        confinement = Confinement(
            read_only=(*self.read_only, *(str(p) for p in read_only)),
            writable=tuple(str(p) for p in writable),
            cwd=str(cwd),
            hidden=self.hidden,
            drop=self.drop,
            setpriv=self.setpriv,
        )
        return bwrap_argv(self.bwrap, confinement, command)

    def give(self, *directories: Path) -> None:
        """Hand private directories (the sandbox's home and temp dir) to the sandbox's uid."""
        if self.drop is None or self.bwrap is None:
            return
        for directory in directories:
            _chown_tree(directory, self.drop, include_root=True, listing=False)  # (small: no find)

    @contextlib.contextmanager
    def lend(self, worktree: Path) -> Iterator[None]:
        """Let the sandbox's uid write the worktree for the duration, then reseal its `.git` link.

        The worktree's root directory and its `.git` file stay owned by the worker (git refuses a
        repository owned by someone else); whatever the sandbox did to `.git` is undone afterwards,
        before the worker runs git there again.
        """
        dotgit = worktree / ".git"
        sealed = dotgit.read_bytes() if dotgit.is_file() and not dotgit.is_symlink() else None
        mode = stat.S_IMODE(worktree.stat().st_mode)
        if self.drop is not None and self.bwrap is not None:
            _chown_tree(worktree, self.drop, include_root=False, skip=(dotgit,))
            worktree.chmod(0o777)
        try:
            yield
        finally:
            if self.drop is not None and self.bwrap is not None:
                worktree.chmod(mode)
            if sealed is not None:
                reseal(dotgit, sealed)


def reseal(dotgit: Path, content: bytes) -> None:
    """Put back the worktree's `.git` file exactly as it was, whatever replaced it meanwhile."""
    try:
        info = dotgit.lstat()
    except FileNotFoundError:
        info = None
    intact = (
        info is not None
        and stat.S_ISREG(info.st_mode)
        and info.st_uid == os.geteuid()
        and info.st_nlink == 1
        and dotgit.read_bytes() == content
    )
    if intact:
        return
    if info is not None and stat.S_ISDIR(info.st_mode):
        shutil.rmtree(dotgit)
    elif info is not None:
        dotgit.unlink()
    fd = os.open(dotgit, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    log.warning("the sandbox changed %s; restored it", dotgit)


def _chown_tree(
    root: Path, drop: Drop, *, include_root: bool, skip: Sequence[Path] = (), listing: bool = True
) -> None:
    """lchown everything under `root` (never following a symlink) to the sandbox's uid. What it owns
    already is left alone: a warm worktree lent again costs a listing, not a metadata write per file
    (and keeps git's cached stat data valid, so the next `git status` does not re-read every file).

    Safe only while nothing the agent controls runs in the sandbox during the walk: the uid it hands
    files to could otherwise swap a directory for a symlink between the lstat and the chown of an entry
    below it. `lend` is entered before the agent's prompt is sent (bot/agent/runner.py: the CLI may be
    starting, but its prompt is held back until the walk is done) and before any repository command
    starts (orchestrators/validate.py); keep it so. `listing`: find(1) lists what is not the sandbox's
    (for a worktree); without it, the Python walk (for a small private directory: no process to start)."""
    if include_root:
        os.chown(root, drop.uid, drop.gid, follow_symlinks=False)
    skipped = tuple(str(p) for p in skip)
    inside = tuple(f"{p}/" for p in skipped)
    listed = _not_owned(root, drop) if listing else None
    for path in listed if listed is not None else _walk(root, skipped):
        if path in skipped or path.startswith(inside):
            continue
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(path)
            if (info.st_uid, info.st_gid) != (drop.uid, drop.gid):
                os.chown(path, drop.uid, drop.gid, follow_symlinks=False)


FIND_TIMEOUT_S = 300.0


def _not_owned(root: Path, drop: Drop) -> list[str] | None:
    """Every path below `root` that is not the sandbox's uid's and gid's already, listed by find(1): a
    walk in C, off the worker's interpreter (10k entries in ~15 ms; Python's own walk takes ~60 ms and
    holds the interpreter meanwhile). None when find cannot be run (the caller walks in Python).
    Directories find cannot read are skipped, as os.walk skips them."""
    if not root.is_absolute():
        return None
    not_ours = ["(", "!", "-uid", str(drop.uid), "-o", "!", "-gid", str(drop.gid), ")"]
    argv = ["find", "-P", str(root), "-mindepth", "1", *not_ours, "-print0"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=FIND_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0 and not done.stdout:
        return None
    return [os.fsdecode(entry) for entry in done.stdout.split(b"\0") if entry]


def _walk(root: Path, skipped: Sequence[str]) -> Iterator[str]:
    for top, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in skipped]
        for name in (*dirs, *files):
            yield os.path.join(top, name)


def system_paths(environ: Mapping[str, str], extra: Iterable[str] = ()) -> tuple[str, ...]:
    """What every sandbox sees read-only: system dirs, a few /etc files, the interpreter, PATH."""
    paths = [*SYSTEM_DIRS, *(f"/etc/{name}" for name in ETC_FILES), sys.prefix, sys.base_prefix]
    for entry in environ.get("PATH", "").split(os.pathsep):
        if entry.startswith("/") and ".." not in Path(entry).parts:
            # a version manager's shims (pyenv, rbenv) need the manager's own tree to run
            paths.append(str(Path(entry).parent) if Path(entry).name == "shims" else entry)
    paths += [p for p in extra if p.startswith("/")]
    return tuple(dict.fromkeys(os.path.normpath(p) for p in paths))


def host_containment(
    *,
    environ: Mapping[str, str] | None = None,
    hidden: Iterable[Path] = (),
    extra_paths: Iterable[str] = (),
    allow_uncontained: bool = False,
    uid: int = 65534,
    gid: int = 65534,
    bwrap_program: str = "bwrap",
) -> Containment:
    """The strict containment for this host; raises ContainmentUnavailable when bubblewrap is
    missing or does not work. `allow_uncontained` (development only) turns confinement off, loudly."""
    environ = os.environ if environ is None else environ
    if allow_uncontained:
        log.warning(UNCONTAINED_WARNING)
        return Containment(bwrap=None)
    bwrap = shutil.which(bwrap_program, path=environ.get("PATH", os.defpath))
    if bwrap is None:
        raise ContainmentUnavailable(f"the OS sandbox (bubblewrap) is not installed: {INSTALL_HINT}")
    drop = Drop(uid, gid) if os.geteuid() == 0 else None
    setpriv = shutil.which("setpriv") or SETPRIV
    if drop is not None and not Path(setpriv).exists():
        raise ContainmentUnavailable("a root worker needs setpriv (package util-linux) to drop to a uid")
    home = environ.get("HOME")
    concealed = [str(Path(p).resolve()) for p in hidden] + ([home] if home and home != "/" else [])
    containment = Containment(
        bwrap=bwrap,
        read_only=system_paths(environ, extra_paths),
        hidden=tuple(dict.fromkeys(concealed)),
        drop=drop,
        setpriv=setpriv,
    )
    problem = probe(containment)
    if problem is not None:
        raise ContainmentUnavailable(f"the OS sandbox does not work here: {problem}; {INSTALL_HINT}")
    return containment


def describe(containment: Containment) -> str:
    """One line saying how commands run here (for `baton doctor` and the worker's start-up log)."""
    if containment.refusal is not None:
        return f"agent work is refused: {containment.refusal}"
    if containment.bwrap is None:
        return "OFF: agent work runs without the OS sandbox (BATON_ALLOW_UNCONTAINED, development only)"
    who = f"uid {containment.drop.uid}" if containment.drop else "the worker's uid in a user namespace"
    return (
        f"bubblewrap at {containment.bwrap}: commands run as {who}, with a private /proc, no network, "
        f"and write access to the worktree and a private temp dir only"
    )


def probe(containment: Containment) -> str | None:
    """Start one confined `true`; None when it ran, else what went wrong (bwrap's own words)."""
    argv = containment.wrap(["/bin/true"], cwd=Path("/"))
    try:
        done = subprocess.run(argv, capture_output=True, timeout=PROBE_TIMEOUT_S, env={}, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot start bubblewrap: {exc}"
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip()[:300] or f"bwrap exited {done.returncode}"
    return None
