"""Run the API server in a background thread of the current process (the TUI's embedded server).

``start`` binds the socket itself first, so a taken port fails at once with one line, then runs
uvicorn on that socket in a daemon thread (never the generation thread) and returns once it is
accepting connections. ``stop`` cancels the server's running turns and shuts uvicorn down.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harmony_tui.engine.messages import PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.errors import HarmonyTuiError
from harmony_tui.server.records import OnRequest


class ServerError(HarmonyTuiError):
    """The server could not start (port taken, bad address)."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; ServerError with one line if it cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise ServerError(f"cannot listen on {host}:{port}: unknown address ({err.strerror})") \
            from err
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        why = "the port is already in use" if err.errno == errno.EADDRINUSE else err.strerror
        raise ServerError(f"cannot listen on {host}:{port}: {why}") from err
    sock.set_inheritable(True)
    return sock


def serve_until_stopped(server: Any, sock: socket.socket, tools: Any = None) -> None:
    """Run uvicorn ``server`` on ``sock`` until it stops, then close ``tools`` (a ``ToolSet``)
    on the event loop its tools ran on (their HTTP clients belong to that loop)."""
    import asyncio

    async def serve_then_close() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            if tools is not None:
                await tools.aclose()

    if tools is None:
        server.run(sockets=[sock])
        return
    get_factory = getattr(server.config, "get_loop_factory", None)  # newer uvicorn
    if get_factory is None:  # older uvicorn sets the event loop policy instead
        server.config.setup_event_loop()
    with asyncio.Runner(loop_factory=get_factory() if get_factory else None) as runner:
        runner.run(serve_then_close())


class EmbeddedServer:
    """The OpenAI-compatible API on ``engine``, served by uvicorn in a background thread.

    ``tools``: a ``ToolSet`` of built-in tools the server runs for API requests (see
    ``create_app``); give the server its own, not the app's: it is closed when the server stops.
    """

    def __init__(self, engine: Any, host: str = "127.0.0.1", port: int = 8000,
                 api_key: str | None = None, cors_origins: Sequence[str] = (),
                 on_request: OnRequest | None = None, *,
                 setup: PromptSetup | Callable[[], PromptSetup] | None = None,
                 params: GenerationParams | None = None, models_dir: Path | None = None,
                 max_queue: int | None = None, log_level: str = "warning",
                 tools: Any = None, max_body_bytes: int | None = None,
                 insecure: bool = False) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.api_key = api_key
        self.cors_origins = tuple(cors_origins)
        self.on_request = on_request
        self.setup = setup
        self.params = params
        self.models_dir = models_dir
        self.max_queue = max_queue
        self.log_level = log_level
        self.tools = tools
        self.max_body_bytes = max_body_bytes  # None: body_limit.DEFAULT_MAX_BODY_BYTES
        self.insecure = insecure  # serve even where exposure.exposure_problem objects
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:8000``); the real port once started with port 0."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def app(self) -> Any:
        from harmony_tui.server.app import DEFAULT_MAX_QUEUE, create_app
        from harmony_tui.server.body_limit import DEFAULT_MAX_BODY_BYTES

        return create_app(self.engine, api_key=self.api_key, cors_origins=self.cors_origins,
                          on_request=self.on_request, setup=self.setup, params=self.params,
                          models_dir=self.models_dir,
                          max_queue=self.max_queue or DEFAULT_MAX_QUEUE, tools=self.tools,
                          max_body_bytes=self.max_body_bytes or DEFAULT_MAX_BODY_BYTES,
                          bind_host=self.host)

    def start(self, timeout: float = 15.0) -> None:
        """Listen and serve; returns once accepting. Raises ServerError (one line)."""
        if self.running:
            return
        import uvicorn

        from harmony_tui.server.exposure import exposure_problem

        names = tuple(self.tools.names()) if self.tools is not None else ()
        problem = exposure_problem(self.host, self.api_key, self.cors_origins, names)
        if problem and not self.insecure:
            raise ServerError(f"refusing to serve: {problem}")
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        # log_config=None: uvicorn must not add stderr handlers inside a full-screen app; its
        # errors go to the "uvicorn.error" logger (and ours to "harmony_tui.server").
        config = uvicorn.Config(self.app(), log_level=self.log_level, access_log=False,
                                timeout_graceful_shutdown=2, lifespan="off", log_config=None)
        server = uvicorn.Server(config)
        self._server, self._socket, self._error = server, sock, None

        def serve() -> None:
            try:
                serve_until_stopped(server, sock, self.tools)
            except BaseException as err:  # reported by start()
                self._error = err

        self._thread = threading.Thread(target=serve, name="harmony-api-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                cause = f": {self._error}" if self._error else ""
                raise ServerError(f"the API server on {self.host}:{self.port} did not "
                                  f"start{cause}")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel this server's running requests and shut it down (idempotent)."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
