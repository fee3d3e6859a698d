"""Baton's small exception hierarchy, mapped to HTTP status in one place."""

from __future__ import annotations


class BatonError(Exception):
    """Base class; `status` is the HTTP status the webhook endpoint answers with."""

    status = 500


class NotConfigured(BatonError):
    status = 404


class Unauthorized(BatonError):
    status = 401


class BadRequest(BatonError):
    status = 400


class BodyTimeout(BatonError):
    status = 408


class BodyTooLarge(BatonError):
    status = 413


class StoreUnavailable(BatonError):
    status = 503
