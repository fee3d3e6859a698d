"""The pure core of containment: what one confined process may see, turned into a bubblewrap argv.

Nothing here touches the host. `bwrap_argv` is the whole policy: a fresh root with only the listed
paths, private /proc, /dev and /tmp, no network (a new network namespace with only loopback), no
view of other processes (a new pid namespace), and, when the worker is root, a drop to an
unprivileged uid before the command starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

NAMESPACES = ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try")
SETPRIV = "/usr/bin/setpriv"


@dataclass(frozen=True)
class Drop:
    """Become this uid/gid (no supplementary groups, no capabilities) before the command runs."""

    uid: int
    gid: int


@dataclass(frozen=True)
class Confinement:
    """What one confined process may see. Paths are absolute and appear at the same place inside.

    `read_only`: host paths visible read-only (system dirs, the interpreter). `writable`: the only
    places it may write (the worktree, its private home and temp dir). `hidden`: paths replaced by an
    empty directory where they lie under a read-only path (state dir, config, the worker's home).
    `drop`: the uid to become when the worker runs as root; without it the sandbox runs in a user
    namespace as the worker's own uid.
    """

    read_only: tuple[str, ...]
    writable: tuple[str, ...]
    cwd: str
    hidden: tuple[str, ...] = ()
    drop: Drop | None = None
    setpriv: str = SETPRIV


def _norm(path: str) -> PurePosixPath:
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"confinement paths must be absolute without '..': {path[:120]!r}")
    return PurePosixPath("/", *pure.parts[1:])  # "//x" is /x to the kernel; keep one spelling


def _under(path: PurePosixPath, roots: Iterable[PurePosixPath]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _parents(
    targets: Sequence[PurePosixPath], exists: Callable[[PurePosixPath], bool], seen: set[PurePosixPath]
) -> list[str]:
    """`--dir` lines for the ancestors a mount needs, 0755 so an unprivileged uid can traverse them
    (bwrap would copy the host's modes, and a 0700 /root would block /root/.pyenv)."""
    out: list[str] = []
    for target in targets:
        for parent in reversed(target.parents):
            if parent in seen or exists(parent):
                continue
            seen.add(parent)
            out += ["--perms", "0755", "--dir", str(parent)]
    return out


def _ordered(paths: Iterable[str | PurePosixPath]) -> list[PurePosixPath]:
    """Outer paths first, so a mount never hides one made before it; deterministic."""
    return sorted({_norm(str(p)) for p in paths}, key=lambda p: (len(p.parts), str(p)))


def _outermost(paths: Iterable[str | PurePosixPath]) -> list[PurePosixPath]:
    normed = _ordered(paths)
    return [p for i, p in enumerate(normed) if not _under(p, normed[:i])]


def bwrap_argv(bwrap: str, confinement: Confinement, command: Sequence[str]) -> list[str]:
    """The complete argv: `bwrap <namespaces> <filesystem> -- [setpriv …] <command>`.

    The environment is not in the argv (other processes can read argv): bwrap passes its own
    environment to the command, so the caller execs bwrap with exactly the environment it wants.
    """
    if not command:
        raise ValueError("no command to confine")
    concealed = _outermost(confinement.hidden)
    asked = [_norm(p) for p in confinement.read_only]
    read_only = _outermost(p for p in asked if not _under(p, concealed))
    hidden = [h for h in concealed if _under(h, read_only)]
    # read-only paths inside a concealed one (a reviewer's worktree in the state dir, a version
    # manager under the worker's home) go on top of it, after the hiding
    # (a concealed path itself, e.g. a PATH entry that is the worker's home, stays concealed)
    late = _outermost(p for p in asked if _under(p, concealed) and p not in concealed)
    writable = _ordered(confinement.writable)
    argv = [bwrap, *NAMESPACES]
    if confinement.drop is None:
        argv += ["--unshare-user"]
    argv += ["--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev"]
    argv += ["--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108 - a private tmpfs inside the sandbox
    made = {PurePosixPath(p) for p in ("/", "/tmp", "/proc", "/dev")}  # noqa: S108 - paths inside the sandbox
    argv += _parents(read_only, lambda _: False, made)
    for path in read_only:
        argv += ["--ro-bind-try", str(path), str(path)]
    for path in hidden:
        argv += ["--perms", "0755", "--tmpfs", str(path)]
    made.update(hidden)
    argv += _parents([*late, *writable], lambda p: _under(p, read_only) and not _under(p, hidden), made)
    for path in late:
        argv += ["--ro-bind", str(path), str(path)]
    for path in writable:
        argv += ["--bind", str(path), str(path)]
    argv += ["--chdir", str(_norm(confinement.cwd))]
    if confinement.drop is not None:
        drop = confinement.drop
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--", confinement.setpriv]
        argv += [f"--reuid={drop.uid}", f"--regid={drop.gid}", "--clear-groups"]
        argv += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    return [*argv, "--", *command]
