"""Who can reach the API server: refuse risky setups, and reject requests for other host names.

The API runs the loaded model and, with ``--server-tools``, code. Rules:

- Listening on anything but loopback without an API key, or serving tools to every web page
  (CORS ``*`` with server tools), is refused unless ``--insecure`` (``server.insecure``) says
  the person means it.
- A server on loopback answers only requests whose ``Host`` header names loopback: a web page
  that rebinds its own DNS name to 127.0.0.1 (DNS rebinding) cannot use a keyless local server,
  because its requests carry the page's host name.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a Host header's name) is this machine only."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_problem(host: str, api_key: str | None, cors_origins: Sequence[str],
                     tool_names: Sequence[str]) -> str | None:
    """Why serving this way is risky (one line), or None. The caller refuses unless insecure."""
    if not is_loopback(host) and not api_key:
        return (f"--host {host} makes the API reachable from other machines without an API key; "
                "set HARMONY_TUI_API_KEY (or server.api_key), listen on 127.0.0.1, or pass "
                "--insecure (server.insecure: true) if you mean it")
    if tool_names and "*" in cors_origins:
        return (f"--server-tools ({', '.join(tool_names)}) with --cors-origin '*' lets any web "
                "page you open run them; name the origins you trust, or pass --insecure "
                "(server.insecure: true) if you mean it")
    return None


def host_of(header: str) -> str:
    """The name in a Host header (``localhost:8000`` -> ``localhost``, ``[::1]:80`` -> ``::1``)."""
    header = header.strip()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class LoopbackHostMiddleware:
    """Pure ASGI: 421 for HTTP requests whose Host header does not name loopback."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            raw = headers.get(b"host", b"").decode("latin-1")
            if not is_loopback(host_of(raw)):
                await _refuse(send, raw)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Any, host: str) -> None:
    shown = json.dumps(host[:100])
    body = json.dumps({"error": {
        "message": f"the Host header {shown} does not name this machine; this server answers "
                   "only requests for localhost (a protection against DNS rebinding)",
        "type": "invalid_request_error", "param": None, "code": "host_not_allowed"}}).encode()
    await send({"type": "http.response.start", "status": 421, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
