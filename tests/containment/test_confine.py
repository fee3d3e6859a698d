"""`bwrap_argv`, the pure policy: what a confined process sees, in what order bubblewrap mounts it."""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import replace
from typing import Any

import pytest

from bot.containment.confine import NAMESPACES, Confinement, Drop, bwrap_argv

BWRAP = "/usr/bin/bwrap"
COMMAND = ["python", "-m", "pytest"]
# options that take one or two arguments; `--perms` belongs to the next mount
ONE_ARG = {"--tmpfs", "--dir", "--proc", "--dev", "--chdir", "--cap-add", "--perms"}
TWO_ARGS = {"--ro-bind", "--ro-bind-try", "--bind"}


def base(**changes: Any) -> Confinement:
    confinement = Confinement(read_only=("/usr", "/etc/passwd"), writable=("/work/wt",), cwd="/work/wt")
    return replace(confinement, **changes)


def options(argv: list[str]) -> list[str]:
    """bubblewrap's own options: everything between the program and the first `--`."""
    assert argv[0] == BWRAP
    return argv[1 : argv.index("--")]


def mounts(argv: list[str]) -> list[tuple[str, str, str]]:
    """The filesystem operations in order, as (operation, target, mode set by a preceding --perms)."""
    found: list[tuple[str, str, str]] = []
    opts = options(argv)
    perms = ""
    i = 0
    while i < len(opts):
        opt = opts[i]
        if opt in TWO_ARGS:
            assert opts[i + 1] == opts[i + 2], "paths appear at the same place inside"
            found.append((opt, opts[i + 2], perms))
            perms, i = "", i + 3
        elif opt == "--perms":
            perms, i = opts[i + 1], i + 2
        elif opt in ONE_ARG:
            if opt in {"--tmpfs", "--dir", "--proc", "--dev"}:
                found.append((opt, opts[i + 1], perms))
                perms = ""
            i += 2
        else:
            i += 1
    return found


def position(argv: list[str], op: str, target: str) -> int:
    ops = [(o, t) for o, t, _ in mounts(argv)]
    assert (op, target) in ops, f"{op} {target} missing from {ops}"
    return ops.index((op, target))


def targets(argv: list[str], op: str) -> list[str]:
    return [t for o, t, _ in mounts(argv) if o == op]


@pytest.mark.parametrize("drop", [None, Drop(65534, 65534)])
def test_every_namespace_and_a_private_proc_dev_tmp_are_always_there(drop: Drop | None) -> None:
    argv = bwrap_argv(BWRAP, base(drop=drop), COMMAND)
    opts = options(argv)

    for flag in (*NAMESPACES, "--unshare-net", "--unshare-pid", "--die-with-parent", "--new-session"):
        assert flag in opts
    assert ("--proc", "/proc", "") in mounts(argv)
    assert ("--dev", "/dev", "") in mounts(argv)
    assert ("--tmpfs", "/tmp", "1777") in mounts(argv)
    assert "--share-net" not in opts


@pytest.mark.parametrize(("drop", "user_namespace"), [(None, True), (Drop(65534, 65534), False)])
def test_a_user_namespace_only_without_a_drop(drop: Drop | None, user_namespace: bool) -> None:
    assert ("--unshare-user" in options(bwrap_argv(BWRAP, base(drop=drop), COMMAND))) is user_namespace


def test_a_drop_runs_the_command_through_setpriv_without_groups_capabilities_or_new_privileges() -> None:
    argv = bwrap_argv(BWRAP, base(drop=Drop(1234, 5678), setpriv="/opt/setpriv"), COMMAND)

    after = argv[argv.index("--") + 1 :]
    assert after == [
        "/opt/setpriv",
        "--reuid=1234",
        "--regid=5678",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        *COMMAND,
    ]
    caps = [options(argv)[i + 1] for i, opt in enumerate(options(argv)) if opt == "--cap-add"]
    assert sorted(caps) == ["CAP_SETGID", "CAP_SETUID"]


def test_without_a_drop_the_command_follows_bwrap_directly_and_gains_no_capability() -> None:
    argv = bwrap_argv(BWRAP, base(), COMMAND)

    assert argv[argv.index("--") + 1 :] == COMMAND
    assert "--cap-add" not in argv
    assert not any("setpriv" in part for part in argv)


def test_a_command_that_looks_like_bwrap_options_stays_a_command() -> None:
    hostile = ["sh", "--bind", "/", "/", "--share-net"]
    argv = bwrap_argv(BWRAP, base(), hostile)

    assert argv[-len(hostile) :] == hostile
    assert argv[-len(hostile) - 1] == "--"
    assert ("--bind", "/", "") not in mounts(argv)


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(ValueError, match="no command"):
        bwrap_argv(BWRAP, base(), [])


BAD_PATHS = ["relative/dir", "dir", "", ".", "..", "/srv/../etc", "/..", "/srv/x/..", "./srv"]


@pytest.mark.parametrize("field", ["read_only", "writable", "hidden", "cwd"])
@pytest.mark.parametrize("bad", BAD_PATHS)
def test_relative_and_dotdot_paths_are_refused_in_every_field(field: str, bad: str) -> None:
    changed: object = bad if field == "cwd" else (*getattr(base(), field), bad)

    with pytest.raises(ValueError, match="absolute without"):
        bwrap_argv(BWRAP, base(**{field: changed}), COMMAND)


@pytest.mark.parametrize(
    ("spelled", "meant"),
    [
        ("/srv/./data", "/srv/data"),
        ("/srv/data/", "/srv/data"),
        ("///srv/data", "/srv/data"),
        ("//srv/data", "/srv/data"),
    ],
)
def test_paths_are_normalised_before_they_are_compared(spelled: str, meant: str) -> None:
    argv = bwrap_argv(BWRAP, base(read_only=(spelled,)), COMMAND)

    assert targets(argv, "--ro-bind-try") == [meant]


@pytest.mark.parametrize("spelled", ["/srv/state", "//srv/state", "/srv/./state/", "///srv//state"])
def test_a_hidden_dir_is_hidden_however_it_is_spelled(spelled: str) -> None:
    """`//srv/state` is /srv/state to the kernel; it must not slip past the comparison with /srv."""
    argv = bwrap_argv(BWRAP, base(read_only=("/srv",), hidden=(spelled,)), COMMAND)

    assert targets(argv, "--tmpfs") == ["/tmp", "/srv/state"]


def test_a_nul_in_a_path_fails_closed() -> None:
    """A NUL may not truncate a path into another one: it is refused, here or when exec'd."""
    try:
        argv = bwrap_argv("/nonexistent/bwrap", base(hidden=("/usr/secret\x00x",)), COMMAND)
    except ValueError:
        return
    assert "/usr/secret" not in argv
    with pytest.raises(ValueError, match="null byte"):
        subprocess.run(argv, check=False)


def test_a_hidden_dir_under_a_read_only_one_becomes_an_empty_tmpfs_after_the_bind() -> None:
    argv = bwrap_argv(BWRAP, base(read_only=("/usr", "/srv"), hidden=("/srv/state",)), COMMAND)

    assert position(argv, "--ro-bind-try", "/srv") < position(argv, "--tmpfs", "/srv/state")
    assert ("--tmpfs", "/srv/state", "0755") in mounts(argv)
    assert "/srv/state" not in targets(argv, "--ro-bind-try")


def test_a_hidden_dir_outside_every_read_only_one_is_simply_never_mounted() -> None:
    argv = bwrap_argv(BWRAP, base(hidden=("/root", "/var/lib/baton")), COMMAND)

    assert not any(t.startswith(("/root", "/var")) for _, t, _ in mounts(argv))


def test_a_read_only_path_inside_a_hidden_dir_is_mounted_on_top_of_the_tmpfs() -> None:
    confinement = base(read_only=("/srv", "/srv/state/reviews/7/wt", "/usr"), hidden=("/srv/state",))
    argv = bwrap_argv(BWRAP, confinement, COMMAND)

    tmpfs = position(argv, "--tmpfs", "/srv/state")
    for parent in ("/srv/state/reviews", "/srv/state/reviews/7"):
        assert ("--dir", parent, "0755") in mounts(argv)
        assert tmpfs < position(argv, "--dir", parent)
    assert position(argv, "--dir", "/srv/state/reviews/7") < position(
        argv, "--ro-bind", "/srv/state/reviews/7/wt"
    )
    # strict (not -try), and the hidden dir itself is neither re-created nor bound
    assert "/srv/state/reviews/7/wt" not in targets(argv, "--ro-bind-try")
    assert "/srv/state" not in targets(argv, "--dir")


def test_a_read_only_path_inside_a_concealed_dir_that_nothing_mounts_still_gets_its_parents() -> None:
    confinement = base(read_only=("/usr", "/root/.pyenv"), hidden=("/root",))
    argv = bwrap_argv(BWRAP, confinement, COMMAND)

    assert ("--dir", "/root", "0755") in mounts(argv)
    assert position(argv, "--dir", "/root") < position(argv, "--ro-bind", "/root/.pyenv")
    assert "/root" not in targets(argv, "--tmpfs")
    assert "/root" not in targets(argv, "--ro-bind-try")


def test_parents_of_read_only_paths_are_made_traversable_before_their_binds() -> None:
    argv = bwrap_argv(BWRAP, base(read_only=("/opt/tools/bin",)), COMMAND)

    assert ("--dir", "/opt", "0755") in mounts(argv)
    assert ("--dir", "/opt/tools", "0755") in mounts(argv)
    assert position(argv, "--dir", "/opt/tools") < position(argv, "--ro-bind-try", "/opt/tools/bin")


def test_nested_and_repeated_read_only_paths_collapse_to_the_outermost() -> None:
    argv = bwrap_argv(BWRAP, base(read_only=("/usr/lib", "/usr", "/usr", "/usr/bin/python3")), COMMAND)

    assert targets(argv, "--ro-bind-try") == ["/usr"]


def test_writable_paths_are_bound_after_every_other_mount() -> None:
    confinement = base(
        read_only=("/usr", "/srv", "/srv/state/reviews/wt"),
        hidden=("/srv/state",),
        writable=("/tmp/run/home", "/srv/work/wt", "/srv/state/jobs/wt"),
    )
    argv = bwrap_argv(BWRAP, confinement, COMMAND)

    ops = mounts(argv)
    binds = [i for i, (op, _, _) in enumerate(ops) if op == "--bind"]
    others = [i for i, (op, _, _) in enumerate(ops) if op != "--bind"]
    assert [ops[i][1] for i in binds] == ["/srv/work/wt", "/tmp/run/home", "/srv/state/jobs/wt"]
    assert max(others) < min(binds)
    # parents that exist in the sandbox already are left alone; the others are made 0755
    assert ("--dir", "/tmp/run", "0755") in ops
    assert ("--dir", "/srv/state/jobs", "0755") in ops
    assert "/srv/work" not in targets(argv, "--dir")
    assert "/srv" not in targets(argv, "--dir")


def test_the_working_directory_is_normalised() -> None:
    argv = bwrap_argv(BWRAP, base(cwd="/work/./wt/"), COMMAND)

    opts = options(argv)
    assert opts[opts.index("--chdir") + 1] == "/work/wt"


def test_the_same_confinement_in_any_order_gives_the_same_argv() -> None:
    read_only = ("/usr", "/srv", "/etc/passwd", "/srv/state/reviews/wt", "/opt/x/bin")
    hidden = ("/srv/state", "/root", "/srv/config")
    writable = ("/srv/work/wt", "/tmp/run/home", "/tmp/run/tmp")
    expected = bwrap_argv(BWRAP, base(read_only=read_only, hidden=hidden, writable=writable), COMMAND)

    for ro, hid, wr in zip(
        itertools.permutations(read_only),
        itertools.cycle(itertools.permutations(hidden)),
        itertools.cycle(itertools.permutations(writable)),
        strict=False,
    ):
        assert bwrap_argv(BWRAP, base(read_only=ro, hidden=hid, writable=wr), COMMAND) == expected


def test_a_read_only_path_that_is_a_concealed_dir_itself_stays_concealed() -> None:
    """A PATH entry equal to the worker's home (or `$HOME/shims`, whose parent is the home) must not
    mount the whole home read-only on top of its hiding."""
    confinement = Confinement(
        read_only=("/usr", "/home/worker", "/home/worker/.pyenv"),
        writable=("/work/tree",),
        cwd="/work/tree",
        hidden=("/home/worker",),
    )
    argv = bwrap_argv("/usr/bin/bwrap", confinement, ["true"])
    binds = [argv[i + 1] for i, a in enumerate(argv) if a in ("--ro-bind", "--ro-bind-try", "--bind")]
    assert "/home/worker" not in binds
    assert "/home/worker/.pyenv" in binds
