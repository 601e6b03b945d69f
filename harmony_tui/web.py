"""``harmony-tui --web``: the same app in a browser, served by ``textual-serve``.

Each browser tab runs its own app process (``python -m harmony_tui`` with the other flags of the
command line); textual-serve relays its screen over a websocket. Exposure follows ``--serve``:
127.0.0.1 by default; another address is refused unless ``--insecure`` (there is no key: whoever
reaches the page drives the app, its tools and its files). On loopback, requests whose ``Host``
header names another machine (DNS rebinding) get 421, and the websocket refuses pages from
other origins (any web page may open a websocket to 127.0.0.1).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from harmony_tui.errors import HarmonyTuiError
from harmony_tui.server.exposure import host_of, is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Flags of the web server itself, left out of the app's command (name -> takes a value).
WEB_FLAGS = {"--web": False, "--insecure": False, "--host": True, "--port": True}


def app_argv(argv: Sequence[str]) -> list[str]:
    """The command line minus the web server's own flags: what each tab's app runs with."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in WEB_FLAGS:
            skip = WEB_FLAGS[name] and "=" not in arg
            continue
        out.append(arg)
    return out


def web_problem(host: str, insecure: bool) -> str | None:
    """Why serving the app on ``host`` is refused (one line), or None."""
    if is_loopback(host) or insecure:
        return None
    return (f"--host {host} puts the app (its tools, your files) in reach of other machines, "
            "with no password; listen on 127.0.0.1 (and use an SSH tunnel), or pass "
            "--insecure if you mean it")


def origin_allowed(origin: str | None, host_header: str, port: int) -> bool:
    """A websocket may come from no page (a script) or from a page of this server: the same
    host and port as the request, or (on loopback) any loopback name with this port."""
    if not origin:
        return True
    parts = urlsplit(origin)
    if parts.netloc.lower() == host_header.strip().lower():
        return True
    try:
        origin_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    return is_loopback(parts.hostname or "") and is_loopback(host_of(host_header)) \
        and origin_port == port


def make_server(command: str, host: str, port: int) -> Any:
    """A textual-serve ``Server`` with the loopback Host check and the websocket origin check."""
    try:
        from aiohttp import web
        from textual_serve.server import Server
    except ImportError as err:
        raise HarmonyTuiError("--web needs textual-serve: pip install 'harmony-tui[web]'") \
            from err

    loopback = is_loopback(host)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Host", "")
        if loopback and not is_loopback(host_of(header)):
            return web.Response(status=421, text="this server answers only requests for "
                                "localhost (a protection against DNS rebinding)\n")
        if request.path == "/ws" and not origin_allowed(request.headers.get("Origin"), header,
                                                       port):
            return web.Response(status=403, text="websocket from another origin refused\n")
        return await handler(request)

    class GuardedServer(Server):
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(guard)
            return app

    return GuardedServer(command, host=host, port=port, title="harmony-tui")


def run_web(argv: Sequence[str], host: str | None, port: int | None, insecure: bool) -> int:
    """Serve the app until Ctrl+C."""
    host = host or DEFAULT_HOST
    port = DEFAULT_PORT if port is None else port
    problem = web_problem(host, insecure)
    if problem:
        raise HarmonyTuiError(problem)
    command = shlex.join([sys.executable, "-m", "harmony_tui", *app_argv(argv)])
    server = make_server(command, host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"harmony-tui: serving the app at http://{shown}:{port} (Ctrl+C stops)",
          file=sys.stderr, flush=True)
    server.serve()
    return 0
