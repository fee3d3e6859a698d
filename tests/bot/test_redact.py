"""The one redactor: configured secrets in every form they travel in, and well-known token shapes."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from urllib.parse import quote

import pytest

from bot.redact import MASK, Redactor, variants
from config.settings import load_settings

SECRET = "sandbox-jira-bot-token-0123456789"
OTHER = "glpat-Zyx987_wvuTSRqpo654321"
REDACTOR = Redactor([SECRET, OTHER, "short"])


def wrapped(text: str, column: int, prefix: str = "") -> str:
    return f"\n{prefix}".join(text[i : i + column] for i in range(0, len(text), column))


def b64_in_blob(secret: str, offset: int, encode: Callable[[bytes], bytes] = base64.b64encode) -> str:
    blob = b"H" * offset + b"user:" + secret.encode() + b":and-more-after"
    return encode(blob).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"token {SECRET} leaked",
        f"https://oauth2:{SECRET}@gitlab.example.com/x.git",
        quote(f"a={SECRET}&b", safe=""),
        json.dumps({"env": f"TOKEN={SECRET}"}),
        *(b64_in_blob(SECRET, offset) for offset in range(3)),
        *(b64_in_blob(SECRET, offset, base64.urlsafe_b64encode) for offset in range(3)),
        *(wrapped(f"before {SECRET} after", column) for column in (5, 9, 16, 31)),
        wrapped(f"> quoted {SECRET} text", 10, "> "),
        wrapped(f"indented {SECRET} text", 7, "    "),
        wrapped(SECRET, 12).replace("\n", "\r\n"),
        wrapped(base64.b64encode(f"xx{SECRET}yy".encode()).decode(), 8),  # wrapped base64
    ],
)
def test_a_configured_secret_is_masked_in_every_form(text: str) -> None:
    clean = REDACTOR.redact(text)
    assert MASK in clean
    flat = clean.replace("\n", "").replace("\r", "").replace("> ", "").replace(" ", "")
    assert SECRET not in flat and SECRET[5:20] not in flat


@pytest.mark.parametrize(
    "text",
    [
        "key glpat-AAAAbbbbCCCCdddd1234 in a log",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
        "ATATT3xFfGF0abcdefghijklmnopqrstuvwxyz0123456789",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.signature",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----\ncut off in the middle",
    ],
)
def test_well_known_token_shapes_are_masked_without_configuration(text: str) -> None:
    clean = Redactor().redact(text)
    assert MASK in clean
    assert "abcdefghijklmnop" not in clean and "IOSFODNN7" not in clean and "b3BlbnNzaC1" not in clean


def test_bearer_keeps_the_word_and_masks_the_token() -> None:
    assert Redactor().redact("Bearer abcdefghijklmnop0123") == f"Bearer {MASK}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain text with nothing secret",
        "sandbox-jira-bot",  # a prefix of the secret is not the secret
        "a.b*c(d",
        "line one\nline two\n> quoted",
        "a git sha 6eea285241b2c4e9d0e1f2a3b4c5d6e7f8091a2b and a run id 00ce39860844484cac3132f71aa8977a",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert REDACTOR.redact(text) == text


def test_secrets_that_are_regex_metacharacters_or_prefixes_of_each_other() -> None:
    redactor = Redactor(["a.b*c(d)e[f]g", "a.b*c(d)e[f]g-longer-one", "x" * 3])
    masked = redactor.redact("1 a.b*c(d)e[f]g-longer-one 2 a.b*c(d)e[f]g 3 axbxc")
    assert masked == f"1 {MASK} 2 {MASK} 3 axbxc"
    assert "xxx" in redactor.redact("xxx")  # too short to be masked without shredding text


def test_short_secrets_are_masked_raw_only() -> None:
    assert variants("short") == {"short"}
    assert REDACTOR.redact("a short word") == f"a {MASK} word"
    assert len(variants(SECRET)) == 4  # raw, and base64 at three alignments (URL/JSON forms are the same)
    odd = 'a"b/c d+e=='
    assert {odd, 'a\\"b/c d+e==', "a%22b%2Fc%20d%2Be%3D%3D", "YSJiL2MgZCtlPT"} <= variants(odd)


def test_data_is_redacted_recursively_keys_and_values() -> None:
    data = {"out": [f"x {SECRET}", 3, None, (OTHER,)], SECRET: {"nested": f"{OTHER}!"}}
    assert json.dumps(REDACTOR.redact_data(data)).count(MASK) == 4
    assert SECRET not in json.dumps(REDACTOR.redact_data(data))


def test_a_few_hundred_kilobytes_are_redacted_quickly() -> None:
    text = ("lorem ipsum dolor sit amet\n" * 12_000) + SECRET
    started = time.perf_counter()
    clean = REDACTOR.redact(text)
    elapsed = time.perf_counter() - started
    assert clean.endswith(MASK)
    assert elapsed < 5.0  # generous: a correctness guard against pathological patterns, not a benchmark


def test_from_settings_takes_every_secret_setting_and_url_passwords() -> None:
    settings = load_settings(
        {
            "BATON_GITLAB_TOKEN": "gitlab-token-value-1",
            "BATON_GITLAB_WEBHOOK_SECRET": "gitlab-hook-secret-2",
            "BATON_GITLAB_SIGNING_TOKEN": "whsec_signing-token-3",
            "BATON_JIRA_TOKEN": "jira-token-value-4",
            "BATON_JIRA_WEBHOOK_SECRET": "jira-hook-secret-5",
            "BATON_ANTHROPIC_API_KEY": "model-key-value-6",
            "BATON_DATABASE_URL": "postgresql://baton:db%40password-7@db/baton",
            "BATON_REDIS_URL": "redis://:redis-password-8@redis:6379/0",
        },
        check=False,
    )
    redactor = Redactor.from_settings(settings)
    values = ["gitlab-token-value-1", "gitlab-hook-secret-2", "whsec_signing-token-3", "jira-token-value-4"]
    values += ["jira-hook-secret-5", "model-key-value-6", "db@password-7", "redis-password-8"]
    text = " ".join(values)
    assert redactor.redact(text) == " ".join([MASK] * 8)
