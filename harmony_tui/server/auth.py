"""API-key check: with a key set, every path but ``/health`` needs ``Authorization: Bearer KEY``.

It is ASGI middleware (not a route dependency) so that ``/openapi.json`` and the docs pages are
covered too. CORS preflight requests (``OPTIONS`` with ``Access-Control-Request-Method``) pass,
as browsers send them without credentials.
"""

from __future__ import annotations

import hmac
from typing import Any

from harmony_tui.server.errors import APIError

OPEN_PATHS = frozenset({"/health"})


class APIKeyMiddleware:
    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS or _preflight(scope):
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        response = APIError(401, problem, code="invalid_api_key",
                            headers={"WWW-Authenticate": "Bearer"}).response()
        await response(scope, receive, send)

    def _problem(self, scope: dict[str, Any]) -> str | None:
        headers = dict(scope.get("headers") or [])
        value = headers.get(b"authorization", b"").strip()
        if not value:
            return "missing API key: send the header 'Authorization: Bearer YOUR_KEY'"
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return "malformed Authorization header: expected 'Bearer YOUR_KEY'"
        if not hmac.compare_digest(token.strip(), self._key):
            return "incorrect API key provided"
        return None


def _preflight(scope: dict[str, Any]) -> bool:
    if scope.get("method") != "OPTIONS":
        return False
    return any(name == b"access-control-request-method" for name, _ in scope.get("headers", []))
