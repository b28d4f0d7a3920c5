"""Reading an answer from a place an outsider chose: redirects followed by hand (each hop goes
through the same guarded client, so the same rules apply to it) and bodies read with the size
cap applied while reading, so an oversized answer is never buffered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urljoin

import httpx

from .guard import Refused

MAX_REDIRECTS = 3
_IDENTITY = {"Accept-Encoding": "identity"}  # bodies are counted as sent (see read_capped)


class TooLarge(Exception):
    """The answer is larger than the cap (declared or while reading): never worth a retry."""


class Unacceptable(Exception):
    """The first bytes show the answer is not what was asked for (``check_head`` said so)."""


@asynccontextmanager
async def open_stream(client: httpx.AsyncClient, url: str, *, timeout: httpx.Timeout,
                      max_redirects: int = MAX_REDIRECTS) -> AsyncIterator[httpx.Response]:
    """GET ``url`` as a stream, following at most ``max_redirects`` redirects; the final
    response is closed when the block ends (and every intermediate one at once)."""
    current = url
    for hop in range(max_redirects + 1):
        request = client.build_request("GET", current, timeout=timeout, headers=_IDENTITY)
        response = await client.send(request, stream=True)
        if not response.has_redirect_location:
            try:
                yield response
            finally:
                await response.aclose()
            return
        location = response.headers.get("location", "")
        await response.aclose()
        if hop == max_redirects:
            break
        try:
            current = urljoin(current, location)
        except ValueError:
            raise Refused("a redirect's Location cannot be parsed") from None
    raise Refused(f"more than {max_redirects} redirects")


async def read_capped(response: httpx.Response, max_bytes: int, *, head_bytes: int = 16,
                      check_head: Callable[[bytes], None] | None = None) -> bytes:
    """The body as sent (raw: no content decoding, so a compressed bomb cannot expand past the
    cap inside one chunk), refused (``TooLarge``) as soon as it passes ``max_bytes``;
    ``check_head`` sees the first ``head_bytes`` (or the whole body if shorter) before the rest
    is read. Ask for ``Accept-Encoding: identity``."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and len(declared) < 20 and int(declared) > max_bytes:
        raise TooLarge(f"the answer declares {declared} bytes; the cap is {max_bytes}")
    data = bytearray()
    checked = check_head is None
    chunks = response.aiter_raw() if not response.is_stream_consumed else _one(response.content)  # read already
    async for chunk in chunks:
        data += chunk
        if len(data) > max_bytes:
            raise TooLarge(f"the answer is over the cap of {max_bytes} bytes")
        if not checked and len(data) >= head_bytes:
            check_head(bytes(data[:head_bytes]))  # type: ignore[misc]
            checked = True
    if not checked:
        check_head(bytes(data))  # type: ignore[misc]
    return bytes(data)


async def _one(content: bytes) -> AsyncIterator[bytes]:
    yield content
