"""Server-sent events shared by every dialect that streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Send

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
