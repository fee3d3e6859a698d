"""The real OS sandbox on this host: bubblewrap as the worker builds it, against hostile commands.

Every escape is tried twice where that is possible: confined it must fail, and the same command
unconfined must succeed, which shows the test can see the escape and the sandbox is what stops it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.containment.confine import Drop
from bot.containment.host import (
    UNCONTAINED_WARNING,
    Containment,
    ContainmentUnavailable,
    describe,
    host_containment,
    probe,
    reseal,
    system_paths,
)
from tests.support.servers import CountingListener

NOBODY = 65534
PYTHON = sys.executable
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
UNCONFINED = Containment(bwrap=None)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop needs a root worker")


@functools.cache
def confined() -> Containment:
    return host_containment()


def run(
    containment: Containment,
    script: str,
    *,
    cwd: Path = Path("/"),
    writable: Sequence[Path] = (),
    read_only: Sequence[Path] = (),
) -> Any:
    """Run a Python script (confined or not) and return the JSON it prints last."""
    argv = containment.wrap([PYTHON, "-I", "-c", script], cwd=cwd, writable=writable, read_only=read_only)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=ENV, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener()
    yield server
    server.close()


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    """A linked worktree's shape: root-owned files and a `.git` file pointing at the main repository."""
    tree = tmp_path / "wt"
    (tree / "src").mkdir(parents=True)
    (tree / ".git").write_text("gitdir: /srv/baton/repos/demo/.git/worktrees/wt\n")
    (tree / "README.md").write_text("# demo\n")
    (tree / "src" / "app.py").write_text("print('hi')\n")
    tree.chmod(0o755)
    return tree


# --- who the command is and what it can see ---------------------------------------------------------

IDENTITY = """
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print(json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
                  "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
                  "no_new_privs": status["NoNewPrivs"].strip()}))
"""


@as_root
def test_a_confined_command_runs_as_nobody_without_groups_or_capabilities() -> None:
    seen = run(confined(), IDENTITY)

    assert (seen["uid"], seen["euid"], seen["gid"], seen["groups"]) == (NOBODY, NOBODY, NOBODY, [])
    assert int(seen["cap_eff"], 16) == 0
    assert int(seen["cap_bnd"], 16) == 0
    assert seen["no_new_privs"] == "1"
    assert run(UNCONFINED, IDENTITY)["uid"] == 0


PROCESSES = """
import json, os, sys
canary = sys.argv[1][::-1]  # reversed, so the script's own argv does not hold it
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
found = []
for pid in pids:
    for name in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{pid}/{name}", "rb").read()
        except OSError:
            continue
        if canary.encode() in data and pid != os.getpid():
            found.append(pid)
try:
    open("/proc/1/environ", "rb").read()
    init = "read"
except OSError as exc:
    init = type(exc).__name__
print(json.dumps({"pids": pids, "me": os.getpid(), "found": found, "init": init,
                  "init_cmd": open("/proc/1/cmdline", "rb").read().split(b"\\0")[0].decode()}))
"""


def test_a_confined_command_sees_no_process_but_its_own() -> None:
    canary = f"baton-canary-{uuid.uuid4().hex}"
    host = subprocess.Popen(["sleep", "30"], env={**ENV, "BATON_PROCESS_CANARY": canary})
    try:
        script = PROCESSES.replace("sys.argv[1]", repr(canary[::-1]))
        inside = run(confined(), script)
        outside = run(UNCONFINED, script)
    finally:
        host.kill()
        host.wait()

    assert outside["found"], "the unconfined scan must find the host process (else the test proves nothing)"
    assert inside["found"] == []
    # its own pid namespace: bubblewrap's init as pid 1, the command, nothing of the host's
    assert inside["init_cmd"].endswith("bwrap")
    assert set(inside["pids"]) <= {1, inside["me"]}
    if os.geteuid() == 0:
        assert inside["init"] == "PermissionError"


def test_a_hidden_dir_is_empty_inside_while_read_only_paths_in_and_around_it_are_visible(
    tmp_path: Path,
) -> None:
    srv = tmp_path / "srv"
    for sub in ("state/reviews/7/wt", "home/.ssh"):
        (srv / sub).mkdir(parents=True)
    (srv / "public.txt").write_text("public\n")
    (srv / "state" / "baton.db").write_text("canary-state-secret\n")
    (srv / "state" / "reviews" / "7" / "wt" / "code.py").write_text("x = 1\n")
    (srv / "home" / ".ssh" / "id_ed25519").write_text("canary-ssh-key\n")
    containment = host_containment(
        environ={**ENV, "HOME": str(srv / "home")}, hidden=[srv / "state"], extra_paths=[str(srv)]
    )
    script = f"""
import json, os
srv = {str(srv)!r}
def read(path):
    try:
        return open(path).read()
    except OSError as exc:
        return type(exc).__name__
print(json.dumps({{
    "public": read(srv + "/public.txt"),
    "state": sorted(os.listdir(srv + "/state")),
    "db": read(srv + "/state/baton.db"),
    "review": read(srv + "/state/reviews/7/wt/code.py"),
    "home": sorted(os.listdir(srv + "/home")),
    "key": read(srv + "/home/.ssh/id_ed25519"),
    "passwd": read("/etc/passwd")[:5],
    "shadow": os.path.exists("/etc/shadow"),
    "ssh_host_keys": os.path.exists("/etc/ssh"),
}}))
"""
    inside = run(containment, script, read_only=[srv / "state" / "reviews" / "7" / "wt"])
    outside = run(UNCONFINED, script)

    assert outside["db"] == "canary-state-secret\n"
    assert outside["key"] == "canary-ssh-key\n"
    assert inside["public"] == "public\n"
    assert inside["review"] == "x = 1\n"
    assert inside["state"] == ["reviews"]
    assert inside["db"] == "FileNotFoundError"
    assert inside["home"] == []
    assert inside["key"] == "FileNotFoundError"
    assert inside["passwd"] == "root:"
    assert inside["shadow"] is False


CONNECT = """
import json, socket, sys
port = int(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
    tcp = "connected"
except OSError as exc:
    tcp = type(exc).__name__
unix = socket.socket(socket.AF_UNIX)
try:
    unix.connect(sys.argv[2].encode().replace(b"@", b"\\0", 1))
    abstract = "connected"
except OSError as exc:
    abstract = type(exc).__name__
print(json.dumps({"tcp": tcp, "abstract": abstract}))
"""


def test_a_confined_command_cannot_reach_the_hosts_loopback(listener: CountingListener) -> None:
    name = f"@baton-test-{uuid.uuid4().hex}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(name.encode().replace(b"@", b"\0", 1))
    abstract.listen(4)
    script = CONNECT.replace("int(sys.argv[1])", str(listener.port)).replace("sys.argv[2]", repr(name))
    try:
        inside = run(confined(), script)
        assert listener.accepted == 0
        outside = run(UNCONFINED, script)
    finally:
        abstract.close()

    assert outside == {"tcp": "connected", "abstract": "connected"}
    assert inside["tcp"] != "connected"
    assert inside["abstract"] != "connected"
    deadline = time.monotonic() + 5
    while listener.accepted == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listener.accepted == 1


WRITE = """
import json, sys
out = {}
for path in sys.argv[1:]:
    try:
        with open(path, "w") as handle:
            handle.write("written")
        out[path] = "ok"
    except OSError as exc:
        out[path] = type(exc).__name__
print(json.dumps(out))
"""


def write_script(*paths: str | Path) -> str:
    return WRITE.replace("sys.argv[1:]", repr([str(p) for p in paths]))


def test_only_the_writable_dirs_can_be_written(tmp_path: Path) -> None:
    work, ro = tmp_path / "work", tmp_path / "ro"
    work.mkdir()
    ro.mkdir()
    ro.chmod(0o777)  # only the read-only mount may stop the write, not the mode
    confined().give(work)
    script = write_script(work / "a.txt", ro / "b.txt", "/usr/evil", "/tmp/scratch")

    inside = run(confined(), script, cwd=work, writable=[work], read_only=[ro])

    assert inside[str(work / "a.txt")] == "ok"
    assert (work / "a.txt").read_text() == "written"
    assert inside[str(ro / "b.txt")] == "OSError"  # EROFS
    assert not (ro / "b.txt").exists()
    assert inside["/usr/evil"] != "ok"
    assert not Path("/usr/evil").exists()
    assert inside["/tmp/scratch"] == "ok"  # a private tmpfs
    assert not Path("/tmp/scratch").exists()
    if os.geteuid() == 0:
        assert (work / "a.txt").stat().st_uid == NOBODY


# --- lending the worktree, and sealing its .git again -----------------------------------------------


@as_root
def test_lend_lets_the_sandbox_write_the_worktree_only_for_its_duration(worktree: Path) -> None:
    script = write_script(worktree / "README.md", worktree / "src" / "app.py", worktree / "new.txt")
    files = [str(worktree / n) for n in ("README.md", "src/app.py", "new.txt")]

    before = run(confined(), script, cwd=worktree, writable=[worktree])
    with confined().lend(worktree):
        during = run(confined(), script, cwd=worktree, writable=[worktree])

    assert [before[f] for f in files] == ["PermissionError"] * 3
    assert [during[f] for f in files] == ["ok"] * 3
    assert (worktree / "new.txt").read_text() == "written"
    assert stat.S_IMODE(worktree.stat().st_mode) == 0o755
    assert worktree.stat().st_uid == 0
    dotgit = (worktree / ".git").lstat()
    assert (dotgit.st_uid, stat.S_ISREG(dotgit.st_mode)) == (0, True)


@as_root
def test_lend_never_follows_a_symlink_out_of_the_worktree(worktree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("host file\n")
    (worktree / "link").symlink_to(outside)

    with confined().lend(worktree):
        assert outside.stat().st_uid == 0
        assert (worktree / "link").lstat().st_uid == NOBODY


SABOTAGE = {
    "symlink": "os.remove(dotgit); os.symlink(target, dotgit)",
    "directory": "os.remove(dotgit); os.mkdir(dotgit); open(dotgit + '/config', 'w').write('[core]\\n')",
    "same_content_own_file": "data = open(dotgit).read(); os.remove(dotgit); open(dotgit, 'w').write(data)",
    "hard_link": (
        "data = open(dotgit).read(); os.remove(dotgit); "
        "open('twin', 'w').write(data); os.link('twin', dotgit)"
    ),
    "removed": "os.remove(dotgit)",
    "rewritten": "os.remove(dotgit); open(dotgit, 'w').write('gitdir: /etc\\n')",
}


def sealed(dotgit: Path, content: bytes) -> bool:
    """The worker's own regular file, one link, the original content."""
    try:
        info = dotgit.lstat()
    except FileNotFoundError:
        return False
    regular = stat.S_ISREG(info.st_mode) and (info.st_uid, info.st_nlink) == (0, 1)
    return regular and dotgit.read_bytes() == content


@as_root
@pytest.mark.parametrize(
    ("sabotage", "target"), [*((name, "victim") for name in sorted(SABOTAGE)), ("symlink", "/etc/passwd")]
)
def test_whatever_the_sandbox_does_to_dotgit_lend_restores_it(
    worktree: Path, tmp_path: Path, sabotage: str, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    victim = tmp_path / "victim" if target == "victim" else Path(target)
    if target == "victim":
        victim.write_text("victim\n")
    dotgit = worktree / ".git"
    original = dotgit.read_bytes()
    victim_bytes, victim_stat = victim.read_bytes(), victim.stat()
    script = (
        f"import json, os\ndotgit, target = {str(worktree / '.git')!r}, {str(victim)!r}\n"
        f"{SABOTAGE[sabotage]}\nprint(json.dumps('done'))\n"
    )
    try:
        with caplog.at_level(logging.WARNING, "baton.containment"), confined().lend(worktree):
            run(confined(), script, cwd=worktree, writable=[worktree])
            assert not sealed(dotgit, original), "the sabotage did not happen"
    finally:
        if victim.read_bytes() != victim_bytes:  # put the host back before failing
            victim.write_bytes(victim_bytes)
            pytest.fail(f"reseal wrote through the sandbox's {sabotage} into {victim}")

    assert sealed(dotgit, original)
    assert victim.stat().st_mode == victim_stat.st_mode
    assert victim.stat().st_uid == victim_stat.st_uid
    assert "restored" in caplog.text


def test_reseal_leaves_an_intact_dotgit_alone(worktree: Path, caplog: pytest.LogCaptureFixture) -> None:
    dotgit = worktree / ".git"
    inode = dotgit.stat().st_ino

    with caplog.at_level(logging.WARNING, "baton.containment"):
        reseal(dotgit, dotgit.read_bytes())

    assert dotgit.stat().st_ino == inode
    assert caplog.text == ""


def test_reseal_replaces_a_symlink_without_writing_through_it(worktree: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("victim\n")
    dotgit = worktree / ".git"
    original = dotgit.read_bytes()
    dotgit.unlink()
    dotgit.symlink_to(victim)

    reseal(dotgit, original)

    assert victim.read_text() == "victim\n"
    assert not dotgit.is_symlink()
    assert dotgit.read_bytes() == original


# --- when there is no sandbox -----------------------------------------------------------------------


def test_a_missing_bubblewrap_is_refused_by_name() -> None:
    with pytest.raises(ContainmentUnavailable, match="bubblewrap") as raised:
        host_containment(bwrap_program="/nonexistent")

    assert "apt-get install bubblewrap" in str(raised.value)


def test_a_bubblewrap_that_does_not_work_is_refused_with_its_own_words(tmp_path: Path) -> None:
    broken = tmp_path / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    broken.chmod(0o755)

    with pytest.raises(ContainmentUnavailable, match="No permissions to create new namespace"):
        host_containment(bwrap_program=str(broken))
    assert probe(Containment(bwrap=str(broken))) == "bwrap: No permissions to create new namespace"


def test_a_working_bubblewrap_passes_the_probe() -> None:
    assert probe(confined()) is None
    assert "bubblewrap at" in describe(confined())
    if os.geteuid() == 0:
        assert f"uid {NOBODY}" in describe(confined())


def test_running_unconfined_must_be_asked_for_and_is_loud(
    caplog: pytest.LogCaptureFixture, worktree: Path
) -> None:
    with caplog.at_level(logging.WARNING, "baton.containment"):
        containment = host_containment(allow_uncontained=True, bwrap_program="/nonexistent")

    assert (logging.WARNING, UNCONTAINED_WARNING) in [(r.levelno, r.getMessage()) for r in caplog.records]
    assert containment.enabled is False
    command = ["sh", "-c", "echo hi"]
    assert containment.wrap(command, cwd=worktree, writable=[worktree]) == command
    assert describe(containment).startswith("OFF")
    with containment.lend(worktree):  # nothing is handed over
        assert worktree.stat().st_uid == os.geteuid()
        assert stat.S_IMODE(worktree.stat().st_mode) == 0o755


def test_a_refusing_containment_refuses_every_command() -> None:
    containment = Containment(bwrap=None, refusal="x: the sandbox cannot run here")

    with pytest.raises(ContainmentUnavailable, match="x: the sandbox cannot run here"):
        containment.wrap(["true"], cwd=Path("/"))
    assert describe(containment) == "agent work is refused: x: the sandbox cannot run here"


def test_a_drop_without_bwrap_hands_nothing_over(tmp_path: Path) -> None:
    containment = Containment(bwrap=None, drop=Drop(NOBODY, NOBODY))
    private = tmp_path / "home"
    private.mkdir()

    containment.give(private)

    assert private.stat().st_uid == os.geteuid()


# --- what every sandbox sees ------------------------------------------------------------------------


def test_system_paths_keep_absolute_path_entries_and_a_version_managers_tree() -> None:
    path = os.pathsep.join(
        ["relative/bin", "/opt/tool/bin", "/opt/../etc", "/home/u/.pyenv/shims", "", ".", "/usr/bin"]
    )
    paths = system_paths({"PATH": path}, extra=["/srv/extra/", "also/relative", "/srv//x"])

    assert "/opt/tool/bin" in paths
    assert "/home/u/.pyenv" in paths
    assert "/home/u/.pyenv/shims" not in paths
    assert "/srv/extra" in paths
    assert "/srv/x" in paths
    assert not any(p.startswith(("relative", "also", ".")) or ".." in p for p in paths)
    assert "/etc" not in paths
    assert "/etc/passwd" in paths
    assert "/etc/shadow" not in paths
    assert len(paths) == len(set(paths))
    assert {sys.prefix, sys.base_prefix} <= set(paths)
