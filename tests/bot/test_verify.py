"""Webhook authentication as pure tables, including hostile headers."""

from __future__ import annotations

import base64
import hmac

import pytest

from bot import verify
from bot.errors import Unauthorized
from bot.verify import header, jira_signature, standard_webhook_signature, verify_gitlab, verify_jira

SECRET = "s3cret-token-value"
SIGNING = "whsec_" + base64.b64encode(b"k" * 32).decode()
BODY = b'{"object_kind":"note"}'
NOW = 1_700_000_000.0


def signed_headers(body: bytes = BODY, stamp: float = NOW, token: str = SIGNING) -> dict[str, str]:
    sig = standard_webhook_signature(token, "idem-1", str(int(stamp)), body)
    return {"webhook-id": "idem-1", "webhook-timestamp": str(int(stamp)), "webhook-signature": sig}


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Gitlab-Token": SECRET},
        {"x-gitlab-token": SECRET},
        {"X-GITLAB-TOKEN": SECRET},
        signed_headers(),
        {**signed_headers(), "X-Gitlab-Token": SECRET},
        {**signed_headers(), "webhook-signature": "v1,bm9wZQ== " + signed_headers()["webhook-signature"]},
    ],
)
def test_gitlab_accepts(headers: dict[str, str]) -> None:
    verify_gitlab(headers, BODY, SECRET, SIGNING, NOW)


@pytest.mark.parametrize(
    ("headers", "signing"),
    [
        ({}, SIGNING),
        ({"X-Gitlab-Token": ""}, SIGNING),
        ({"X-Gitlab-Token": SECRET[:-1]}, SIGNING),
        ({"X-Gitlab-Token": SECRET + " "}, SIGNING),
        ({"X-Gitlab-Token": SECRET.upper()}, SIGNING),
        ({"X-Gitlab-Token": "\x00" + SECRET}, SIGNING),
        ({"X-Gitlab-Token": "é" * 40}, SIGNING),
        ({"X-Gitlab-Token": SECRET * 1000}, SIGNING),
        (signed_headers(body=b"{}"), SIGNING),  # signature over another body
        (signed_headers(stamp=NOW - 3600), SIGNING),  # replayed an hour later
        ({**signed_headers(), "webhook-timestamp": "not-a-number"}, SIGNING),
        ({**signed_headers(), "webhook-timestamp": "9" * 40}, SIGNING),
        ({**signed_headers(), "webhook-signature": "v1,"}, SIGNING),
        (signed_headers(token="whsec_" + base64.b64encode(b"x" * 32).decode()), SIGNING),
        (signed_headers(), None),  # signature mode not configured: a signature alone is not enough
        ({**signed_headers(), "X-Gitlab-Token": "wrong"}, SIGNING),  # every presented credential must hold
    ],
)
def test_gitlab_rejects(headers: dict[str, str], signing: str | None) -> None:
    with pytest.raises(Unauthorized) as info:
        verify_gitlab(headers, BODY, SECRET, signing, NOW)
    assert SECRET not in str(info.value)


def test_gitlab_token_without_configured_secret_is_rejected() -> None:
    with pytest.raises(Unauthorized):
        verify_gitlab({"X-Gitlab-Token": SECRET}, BODY, None, SIGNING, NOW)


@pytest.mark.parametrize(
    "signature",
    [jira_signature(SECRET, BODY), jira_signature(SECRET, BODY).upper().replace("SHA256=", "sha256=")],
)
def test_jira_accepts(signature: str) -> None:
    verify_jira({"X-Hub-Signature": signature}, BODY, SECRET)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature": ""},
        {"X-Hub-Signature": "sha1=" + "0" * 40},
        {"X-Hub-Signature": jira_signature(SECRET, BODY)[:-1]},
        {"X-Hub-Signature": jira_signature(SECRET, BODY)[:20]},
        {"X-Hub-Signature": jira_signature(SECRET, BODY + b" ")},
        {"X-Hub-Signature": jira_signature("other", BODY)},
        {"X-Hub-Signature": "sha256=" + "zz" * 32},
        {"X-Hub-Signature": "sha256=" + "\u0660" * 64},
    ],
)
def test_jira_rejects(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized):
        verify_jira(headers, BODY, SECRET)


def test_header_lookup_is_case_insensitive() -> None:
    assert header({"Idempotency-Key": "a"}, "idempotency-key") == "a"
    assert header({"x": "1"}, "y") is None


def test_every_credential_check_goes_through_a_constant_time_comparison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Timing is not measured: the test asserts which comparison decides. With `==` in its place,
    nothing is recorded and this fails."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)  # the module bot.verify calls through
    body = b'{"object_kind": "note"}'
    verify.verify_gitlab({"x-gitlab-token": "right-token"}, body, "right-token", None, 0.0)
    with pytest.raises(Unauthorized):
        verify.verify_gitlab({"x-gitlab-token": "wrong-token"}, body, "right-token", None, 0.0)
    signature = verify.jira_signature("jira-secret", body)
    verify.verify_jira({"x-hub-signature": signature}, body, "jira-secret")
    with pytest.raises(Unauthorized):
        verify.verify_jira({"x-hub-signature": "sha256=" + "0" * 64}, body, "jira-secret")
    assert (b"right-token", b"right-token") in seen and (b"wrong-token", b"right-token") in seen
    assert (signature.encode(), signature.encode()) in seen
    assert len(seen) == 4


def test_the_gitlab_signature_check_goes_through_a_constant_time_comparison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The HMAC `webhook-signature` path too: a `==` between the candidate and the expected signature
    records nothing and fails this."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    body, now, token = (
        b'{"object_kind": "note"}',
        1_700_000_000.0,
        "whsec_" + base64.b64encode(b"k" * 32).decode(),
    )
    good = verify.standard_webhook_signature(token, "msg-1", str(int(now)), body)
    signed = {"webhook-id": "msg-1", "webhook-timestamp": str(int(now))}
    verify.verify_gitlab({**signed, "webhook-signature": good}, body, None, token, now)
    bad = "v1," + base64.b64encode(b"\0" * 32).decode()
    with pytest.raises(Unauthorized):
        verify.verify_gitlab({**signed, "webhook-signature": bad}, body, None, token, now)
    assert seen == [(good.encode(), good.encode()), (bad.encode(), good.encode())]
