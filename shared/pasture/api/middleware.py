"""An ASGI guard that bounds request bodies while they stream in (Content-Length is checked
up front; chunked bodies are counted), so an oversized upload is refused with 413 before it
is buffered anywhere.

The limit may differ by path: `limits` maps path prefixes to their own byte limit (the
longest matching prefix wins), e.g. the speech routes' PASTURE_MAX_AUDIO_BYTES."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pasture.api.errors import dialect_for


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_bytes: int, limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Longest prefix first, so "/v1/audio" beats "/v1".
        self.limits = sorted((limits or {}).items(), key=lambda kv: len(kv[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        max_bytes = self.limit_for(path)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            await self._reject(scope, receive, send, path, max_bytes)
            return
        seen = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > max_bytes:
                    exceeded = True
                    raise _TooLarge()
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # drop whatever the app made of the interrupted body
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._reject(scope, receive, send, path, max_bytes)

    async def _reject(
        self, scope: Scope, receive: Any, send: Send, path: str, max_bytes: int
    ) -> None:
        response = dialect_for(path).error(
            413, f"request body is larger than the {max_bytes} byte limit"
        )
        await response(scope, receive, send)
