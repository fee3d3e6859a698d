"""The worker marks itself non-dumpable: a process of the same uid cannot read its environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.containment.harden import dumpable, no_dump

CANARY = "canary-worker-token-5e1f"
# As root, both sides run as an unprivileged uid (root may read any process's /proc files).
AS_OTHER = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
HOLDER = (
    "import sys, time\n"
    "sys.path.insert(0, {root!r})\n"
    "if {harden}:\n"
    "    from bot.containment.harden import no_dump\n"
    "    assert no_dump()\n"
    "print('ready', flush=True)\n"
    "time.sleep(30)\n"
)
READER = (
    "import sys\n"
    "try:\n"
    "    print(open(sys.argv[1], 'rb').read().decode(errors='replace'))\n"
    "except OSError as e:\n"
    "    print(type(e).__name__)\n"
)
ROOT = str(Path(__file__).resolve().parents[2])


def read_environ_of_holder(harden: bool) -> str:
    holder = subprocess.Popen(
        [*AS_OTHER, sys.executable, "-I", "-c", HOLDER.format(root=ROOT, harden=harden)],
        env={"BATON_GITLAB_TOKEN": CANARY, "PATH": os.environ.get("PATH", "")},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        time.sleep(0.05)
        seen = subprocess.run(
            [*AS_OTHER, sys.executable, "-I", "-c", READER, f"/proc/{holder.pid}/environ"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return seen.stdout
    finally:
        holder.kill()
        holder.wait(10)


@pytest.mark.parametrize(("harden", "reachable"), [(False, True), (True, False)])
def test_a_process_of_the_same_uid_reads_the_environment_only_when_not_hardened(
    harden: bool, reachable: bool
) -> None:
    seen = read_environ_of_holder(harden)
    assert (CANARY in seen) is reachable
    if not reachable:
        assert "PermissionError" in seen


def test_no_dump_in_this_process_reports_what_it_did() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bot.containment.harden import no_dump, dumpable; print(dumpable(), no_dump(), dumpable())",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=20,
    )
    assert done.stdout.split() == ["True", "True", "False"]
    assert dumpable() is True and callable(no_dump)  # the test process itself is untouched
