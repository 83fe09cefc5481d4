"""Server-sent events shared by every dialect that streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Send

from pasture.domain.errors import Unavailable

T = TypeVar("T")
_POLL_SECONDS = 0.25

# Proxies (nginx) buffer responses unless told not to; caches must not keep a live stream.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStream(StreamingResponse):
    """A text/event-stream response that always closes its iterator.

    Starlette abandons the body iterator when the client disconnects while a chunk is being
    sent; closing it here runs the iterator's cleanup at once, which is what stops the model.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # Starlette adds "; charset=utf-8" to text/ media types.
        super().__init__(frames, headers={**SSE_HEADERS, **(headers or {})})
        self._frames = frames

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self._frames, "aclose", None)
            if aclose is not None:
                await aclose()


async def until_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await `work`, cancelling it if the client goes away first (a non-streamed generation
    would otherwise hold the model for a reply nobody reads). Returns as soon as `work` is done;
    the disconnect check only runs while waiting."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                # Nobody reads this answer; it only ends the request cleanly.
                raise Unavailable("the client disconnected before the reply was ready")
    finally:
        if not task.done():
            task.cancel()
