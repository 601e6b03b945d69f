"""A limit on request body size: 413 in OpenAI's error shape, enforced while the body is read.

A declared ``Content-Length`` over the limit is refused before a byte of the body is read; a
body without one (chunked) is counted as it arrives and refused as soon as it passes the limit,
so a huge body is never buffered whole. The connection is closed after a 413 (the rest of the
body is never read).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

from harmony_tui.server.errors import APIError

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


def too_large_message(limit: int) -> str:
    return (f"the request body is larger than the server's limit of {limit} bytes "
            "(--max-body-bytes / server.max_body_bytes); send a smaller request")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the limit; FastAPI re-raises HTTP errors
    from body reading, and the app's handler answers it as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=too_large_message(limit))


class BodyLimitMiddleware:
    """Pure ASGI middleware refusing bodies over ``max_bytes`` (None: no limit)."""

    def __init__(self, app: Any, max_bytes: int | None) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        limit = self.max_bytes
        if scope["type"] != "http" or limit is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(limit, scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:  # read outside a route (the routes answer it themselves)
            if started:
                raise
            await _refuse(limit, scope, receive, send)


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(limit: int, scope: dict[str, Any], receive: Any, send: Any) -> None:
    response = APIError(413, too_large_message(limit), code="request_too_large",
                        headers={"Connection": "close"}).response()
    await response(scope, receive, send)
