"""Webhook authentication as pure functions of headers and raw body (constant-time compares)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from bot.errors import Unauthorized

SIGNATURE_TOLERANCE_S = 300
_JIRA_PREFIX = "sha256="


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup over any mapping."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def _signing_key(token: str) -> bytes:
    """A Standard Webhooks `whsec_<base64>` token's key bytes (the raw token if not in that form)."""
    if token.startswith("whsec_"):
        try:
            return base64.b64decode(token[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return token.encode("utf-8")


def standard_webhook_signature(token: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">`, as GitLab's signing token sends."""
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(_signing_key(token), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _signature_valid(headers: Mapping[str, str], body: bytes, token: str, now: float) -> bool:
    msg_id, stamp, signatures = (
        header(headers, h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and stamp and signatures) or not stamp.isdigit() or len(stamp) > 12:
        return False
    if abs(now - int(stamp)) > SIGNATURE_TOLERANCE_S:
        return False
    expected = standard_webhook_signature(token, msg_id, stamp, body)
    return any(_same(candidate, expected) for candidate in signatures.split()[:8])


def verify_gitlab(
    headers: Mapping[str, str], body: bytes, secret: str | None, signing_token: str | None, now: float
) -> None:
    """Accept a GitLab delivery by its `X-Gitlab-Token`, or by its HMAC signature when configured.

    Every credential the delivery presents must be valid, and at least one must be present.
    """
    token = header(headers, "x-gitlab-token")
    signed = header(headers, "webhook-signature") is not None
    verified = False
    if token is not None:
        if secret is None or not _same(token, secret):
            raise Unauthorized("X-Gitlab-Token does not match the configured secret")
        verified = True
    if signed and signing_token is not None:
        if not _signature_valid(headers, body, signing_token, now):
            raise Unauthorized("webhook-signature is invalid or too old")
        verified = True
    if not verified:
        raise Unauthorized("missing X-Gitlab-Token")


def jira_signature(secret: str, body: bytes) -> str:
    return _JIRA_PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_jira(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    """Accept a Jira delivery whose `X-Hub-Signature: sha256=<hex>` is the HMAC of the raw body."""
    given = header(headers, "x-hub-signature")
    if given is None:
        raise Unauthorized("missing X-Hub-Signature")
    if not given.lower().startswith(_JIRA_PREFIX):
        raise Unauthorized("X-Hub-Signature must be sha256=<hex>")
    if not _same(_JIRA_PREFIX + given[len(_JIRA_PREFIX) :].strip().lower(), jira_signature(secret, body)):
        raise Unauthorized("X-Hub-Signature does not match the body")
