"""Read a request body with a byte cap enforced while reading and an overall deadline."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request

from bot.errors import BadRequest, BodyTimeout, BodyTooLarge


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest("Content-Length is not a number")
    return int(raw)


async def read_capped(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body, or BodyTooLarge as soon as more than `max_bytes` arrive (never buffered past it)."""
    length = declared_length(request)
    if length is not None and length > max_bytes:
        raise BodyTooLarge(f"body of {length} bytes is over the {max_bytes}-byte limit")
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    size = 0
    stream = request.stream().__aiter__()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BodyTimeout(f"body not received within {timeout_s:g} s")
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), remaining)
        except StopAsyncIteration:
            return b"".join(chunks)
        except TimeoutError:
            raise BodyTimeout(f"body not received within {timeout_s:g} s") from None
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"body is over the {max_bytes}-byte limit")
        chunks.append(chunk)
