"""Read a request body with a byte cap enforced while reading and an overall deadline."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request

from bot.errors import BadRequest, BodyTimeout, BodyTooLarge

# An oversized body is still read (and thrown away) up to this many times the cap before the 413 goes
# out: a client that is still sending when the server answers and closes gets a connection reset
# instead of the answer. Beyond it (or past the deadline) the answer goes out at once.
DRAIN_FACTOR = 4


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest("Content-Length is not a number")
    return int(raw)


async def read_capped(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body, or BodyTooLarge once more than `max_bytes` arrived (never buffered past it).

    An oversized body within `DRAIN_FACTOR` times the cap is read to its end and discarded first, so
    the sender sees the 413 rather than a reset connection; a larger declared length is refused at once.
    """
    length = declared_length(request)
    if length is not None and length > max_bytes * DRAIN_FACTOR:
        raise BodyTooLarge(f"body of {length} bytes is over the {max_bytes}-byte limit")
    kept, size = await _read(request, max_bytes, timeout_s)
    if size > max_bytes:
        raise BodyTooLarge(f"body is over the {max_bytes}-byte limit")
    return kept


async def _read(request: Request, max_bytes: int, timeout_s: float) -> tuple[bytes, int]:
    """Read to the end (or the drain bound, or, once over the cap, the deadline); keep bytes only while
    under the cap. Returns what was kept and how many bytes arrived."""
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    size = 0
    stream = request.stream().__aiter__()
    while size <= max_bytes * DRAIN_FACTOR:
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            chunk = await asyncio.wait_for(stream.__anext__(), remaining)
        except StopAsyncIteration:
            break
        except TimeoutError:
            if size > max_bytes:
                break  # draining took too long: answer anyway
            raise BodyTimeout(f"body not received within {timeout_s:g} s") from None
        size += len(chunk)
        if size <= max_bytes:
            chunks.append(chunk)
    return b"".join(chunks), size
