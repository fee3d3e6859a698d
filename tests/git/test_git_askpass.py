"""The askpass helper and remote-URL checks: the token is answered to one host only, URLs carry none."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from bot.git.askpass import askpass_env, check_remote_url, install_script
from bot.git.errors import UnsafeInput

TOKEN = "glpat-askpass-test-token"


def ask(script: Path, env: dict[str, str], prompt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script), prompt],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=10,
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://gitlab.example.com/group/project.git",
        "http://127.0.0.1:8080/group/project.git",
        "https://[::1]:8443/g/p.git",
        "/srv/git/project.git",
        "file:///srv/git/project.git",
    ],
)
def test_acceptable_remote_urls(url: str) -> None:
    assert check_remote_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://oauth2:glpat-x@gitlab.example.com/g/p.git",
        "https://user@gitlab.example.com/g/p.git",
        "ext::sh -c touch /tmp/pwned",
        "ssh://git@gitlab.example.com/g/p.git",
        "git@gitlab.example.com:g/p.git",
        "--upload-pack=touch /tmp/pwned",
        "https://gitlab.example.com/g/p.git\nhttps://evil",
        "https://exa mple.com/x",
        "https://-evil.com/x",
        "relative/path.git",
        "",
    ],
)
def test_refused_remote_urls(url: str) -> None:
    with pytest.raises(UnsafeInput):
        check_remote_url(url)


def test_helper_answers_only_the_expected_host(tmp_path: Path) -> None:
    script = install_script(tmp_path / "bin")
    env = askpass_env(script, "http://127.0.0.1:8080/g/p.git", TOKEN)
    assert env["GIT_ASKPASS"] == str(script)

    user = ask(script, env, "Username for 'http://127.0.0.1:8080': ")
    password = ask(script, env, "Password for 'http://oauth2@127.0.0.1:8080': ")
    assert (user.returncode, user.stdout) == (0, "oauth2\n")
    assert (password.returncode, password.stdout) == (0, f"{TOKEN}\n")

    for prompt in (
        "Password for 'http://oauth2@127.0.0.1:8080.evil.test': ",
        "Password for 'http://oauth2@evil.test': ",
        "Password for 'http://oauth2@x127.0.0.1:8080': ",
        "Are you sure you want to continue connecting (yes/no)? ",
        "",
    ):
        answer = ask(script, env, prompt)
        assert answer.returncode != 0
        assert TOKEN not in answer.stdout


def test_helper_refuses_without_a_host(tmp_path: Path) -> None:
    script = install_script(tmp_path / "bin")
    answer = ask(script, {"BATON_GIT_TOKEN": TOKEN}, "Password for 'http://oauth2@': ")
    assert answer.returncode != 0
    assert answer.stdout == ""


def test_install_is_idempotent_private_and_secret_free(tmp_path: Path) -> None:
    first = install_script(tmp_path / "bin")
    mtime = first.stat().st_mtime_ns
    assert install_script(tmp_path / "bin") == first
    assert first.stat().st_mtime_ns == mtime
    assert stat.S_IMODE(first.stat().st_mode) == 0o700
    assert TOKEN not in first.read_text()
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["askpass"]


@pytest.mark.parametrize(("username", "token"), [("bad user", TOKEN), ("oauth2", ""), ("oauth2", "tok\nen")])
def test_askpass_env_refuses_odd_credentials(tmp_path: Path, username: str, token: str) -> None:
    with pytest.raises(UnsafeInput):
        askpass_env(tmp_path / "askpass", "https://gitlab.example.com/g/p.git", token, username)
