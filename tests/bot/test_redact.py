"""The one redactor: configured secrets in every form they travel in, and well-known token shapes."""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest

from bot.redact import MASK, Redactor, variants
from config.settings import Settings, load_settings

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


# -- more forms, and hostile inputs -----------------------------------------------------------------------

# secrets of each length modulo 3, so every base64 alignment meets each tail length
ODD_SECRETS = ["tok-0123456789ab", "tok-0123456789abc", "tok-0123456789abcd", 'p@ss w/rd+"x\\y=1&z']


@pytest.mark.parametrize("secret", ODD_SECRETS)
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode, base64.b32encode])
def test_a_secret_inside_a_larger_base64_blob_at_every_offset(
    secret: str, offset: int, encode: Callable[[bytes], bytes]
) -> None:
    blob = encode(b"\x00\xff" * offset + b"Authorization: " + secret.encode() + b"\r\n\r\n{...}").decode()
    clean = Redactor([secret]).redact(f"log: {blob} end")
    if encode is base64.b32encode:  # not a form the redactor claims to know: the control that it is exact
        assert clean == f"log: {blob} end"
        return
    assert MASK in clean and clean.startswith("log: ") and clean.endswith(" end")
    for core in variants(secret) - {secret}:
        assert core not in clean


@pytest.mark.parametrize("secret", ODD_SECRETS)
@pytest.mark.parametrize(
    "form",
    [
        lambda s: s,
        lambda s: quote(s, safe=""),
        lambda s: quote(s),
        lambda s: quote_plus(s),
        lambda s: quote(s, safe="").lower(),
        lambda s: json.dumps(s)[1:-1],
        lambda s: json.dumps(s).replace("/", "\\/")[1:-1],
        lambda s: json.dumps({"k": s[:7] + "\n" + s[7:]})[7:-2],  # a wrapped secret, JSON-escaped
        lambda s: html.escape(s),
    ],
)
def test_a_secret_in_each_text_encoding(secret: str, form: Callable[[str], str]) -> None:
    encoded = form(secret)
    clean = Redactor([secret]).redact(f"before {encoded} after")
    assert clean == f"before {MASK} after"


@pytest.mark.parametrize("column", [1, 2, 3, 7, 10, 16, 40])
@pytest.mark.parametrize("prefix", ["", "  ", "\t", "> ", ">> ", "    > "])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\\n", "  \n"])
def test_a_secret_hard_wrapped_at_any_column(column: int, prefix: str, newline: str) -> None:
    text = wrapped(f"the token is {SECRET} and more", column, "").replace("\n", newline + prefix)
    clean = REDACTOR.redact(text)
    joined = clean.replace(newline + prefix, "").replace(newline, "")
    assert SECRET not in joined and SECRET[:10] not in joined and SECRET[-10:] not in joined
    assert "more" in joined  # only the secret's lines are touched


def test_a_huge_text_with_many_lines_and_many_secrets_is_fast() -> None:
    secrets = [f"secret-number-{i:03d}-abcdefgh" for i in range(20)]
    redactor = Redactor(secrets)
    text = "\n".join(f"> line {i} with nothing in it at all, padding padding" for i in range(6000))
    text += (
        "\n" + secrets[7][:9] + "\n> " + secrets[7][9:] + " " + base64.b64encode(secrets[3].encode()).decode()
    )
    started = time.perf_counter()
    clean = redactor.redact(text)
    assert time.perf_counter() - started < 5.0
    assert len(text) > 300_000 and clean.count(MASK) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x a.b*c(d y", f"x {MASK} y"),  # a short secret made of regex metacharacters, as a word
        ("x aXb*c(d y abbbc(d", "x aXb*c(d y abbbc(d"),  # … never as a pattern
        ("1 abcdefgh12345678 2", f"1 {MASK} 2"),  # two secrets overlapping in the text: one mask
        ("long-secret-value-2 and long-secret-value", f"{MASK} and {MASK}"),  # one a prefix of the other
    ],
)
def test_metacharacters_overlaps_and_prefixes(text: str, expected: str) -> None:
    redactor = Redactor(["a.b*c(d", "abcdefgh12", "gh12345678", "long-secret-value", "long-secret-value-2"])
    assert redactor.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "/srv/.baton/worktrees/DEMO-1",  # short secrets stay out of words, paths and branch names
        "push baton/DEMO-1-fix",
        "batons and rebaton",
        "sqlite:///.baton/baton.db",
    ],
)
def test_a_short_secret_is_masked_only_as_a_whole_token(text: str) -> None:
    redactor = Redactor(["baton"])
    assert redactor.redact(text) == text
    assert redactor.redact("the password is baton.") == f"the password is {MASK}."
    assert redactor.redact("postgresql://baton:baton@db/x") == f"postgresql://baton:{MASK}@db/x"


def test_empty_and_missing_secrets() -> None:
    assert Redactor([None, "", "abc"]).secrets == ()  # nothing, and nothing too short to be a secret
    empty = Redactor.from_settings(load_settings({}, check=False))
    assert empty.secrets == ()
    assert empty.redact("nothing secret here") == "nothing secret here"
    assert empty.redact("but glpat-AAAAbbbbCCCCdddd1234 is") == f"but {MASK} is"  # shapes still apply
    assert empty.redact("") == "" and empty.redact_data(None) is None


def test_from_settings_covers_every_secret_field_even_one_added_later() -> None:
    """Every `SecretStr` field of Settings and the password in every URL field, found by looking at the
    fields themselves (a new secret setting needs no change here)."""
    secret_fields = [
        name for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation)
    ]
    assert len(secret_fields) >= 6
    values = {name: f"value-of-{name}-0123" for name in secret_fields}
    urls = {
        "jira_url": "https://bot:jira-url-password-1@jira.example.com",
        "redis_url": "redis://:r%2Fpass-2@r:6379",
    }
    settings = load_settings({}, check=False, **values, **urls)
    redactor = Redactor.from_settings(settings)
    text = " ".join([*values.values(), "jira-url-password-1", "r/pass-2", "r%2Fpass-2"])
    assert redactor.redact(text) == " ".join([MASK] * (len(values) + 3))
