"""``harmony-tui --serve``: the headless API server's flags and its run loop.

Precedence for host, port, API key and CORS origins: flag > environment
(``HARMONY_TUI_API_KEY``) > the user config's ``server`` section > defaults (127.0.0.1:8000, no
key, no CORS). The model, prompt setup and generation settings resolve as for the TUI.

Built-in tools run for API requests only when enabled for the server explicitly: ``--server-tools
python,browser`` or ``tools`` in the user config's ``server`` section (none by default); their
settings come from the prompt config's ``tools`` section when it has them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

API_KEY_ENV = "HARMONY_TUI_API_KEY"
PROG = "harmony-tui"
SERVER_TOOLS = ("python", "browser")


def parse_server_tools(text: str) -> tuple[str, ...]:
    """``"python,browser"`` -> ``("python", "browser")``; ``""`` or ``"none"`` -> ``()``.

    ValueError naming the unknown entry otherwise (argparse reports it as a one-line error).
    """
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if names == ["none"]:
        return ()
    for name in names:
        if name not in SERVER_TOOLS:
            raise ValueError(f"unknown tool {name!r}; expected a comma list of "
                             f"{', '.join(SERVER_TOOLS)} (or none)")
    return tuple(dict.fromkeys(names))


def _server_tools_type(text: str) -> tuple[str, ...]:
    try:
        return parse_server_tools(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--serve`` and the server flags to ``parser``."""
    group = parser.add_argument_group("API server")
    group.add_argument("--serve", action="store_true",
                       help="serve the model over an OpenAI-compatible HTTP API, without the "
                       "terminal app (one log line per request on stderr)")
    group.add_argument("--host", default=None,
                       help="address to listen on (default: 127.0.0.1, or server.host in the "
                       "user config)")
    group.add_argument("--port", type=int, default=None,
                       help="port to listen on (default: 8000, or server.port in the user "
                       "config)")
    group.add_argument("--api-key", default=None, metavar="KEY",
                       help=f"require 'Authorization: Bearer KEY' on every endpoint but /health "
                       f"(default: ${API_KEY_ENV}, or server.api_key in the user config; "
                       "prefer those: other local users can read a command line); with "
                       "--backend openai (no --serve): the remote server's key")
    group.add_argument("--insecure", action="store_true", default=None,
                       help="serve even when it is risky: a non-loopback --host without an API "
                       "key, or --server-tools with --cors-origin '*' (refused otherwise)")
    group.add_argument("--cors-origin", action="append", dest="cors_origins", default=None,
                       metavar="ORIGIN", help="allow browser requests from ORIGIN (repeatable; "
                       "default: none)")
    group.add_argument("--max-queue", type=int, default=None, metavar="N",
                       help="most generation requests running or waiting at once; more get "
                       "HTTP 429 (default: 64)")
    group.add_argument("--max-body-bytes", type=int, default=None, metavar="N",
                       help="largest request body accepted, in bytes; larger ones get HTTP 413 "
                       "without being read (default: 4194304, or server.max_body_bytes in the "
                       "user config)")
    group.add_argument("--server-tools", type=_server_tools_type, default=None,
                       metavar="TOOLS", help="built-in tools the server runs itself for API "
                       "requests: a comma list of python, browser (default: none, or "
                       "server.tools in the user config; settings from the prompt config's "
                       "tools section); other tool calls always go back to the client")


def server_options(args: argparse.Namespace, user_server: Any = None) -> dict[str, Any]:
    """host, port, api_key, cors_origins, max_queue, max_body_bytes after precedence; raises
    ConfigError on bad values."""
    from harmony_tui.errors import ConfigError

    host = getattr(args, "host", None) or getattr(user_server, "host", None) or "127.0.0.1"
    port = getattr(args, "port", None)
    if port is None:
        port = getattr(user_server, "port", None)
    port = 8000 if port is None else port
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port={port}: expected a port number from 0 to 65535")
    api_key = (getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV)
               or getattr(user_server, "api_key", None) or None)
    origins = getattr(args, "cors_origins", None) or list(
        getattr(user_server, "cors_origins", None) or [])
    max_queue = getattr(args, "max_queue", None)
    if max_queue is not None and max_queue < 1:
        raise ConfigError(f"--max-queue={max_queue}: expected at least 1")
    max_body = getattr(args, "max_body_bytes", None)
    if max_body is None:
        max_body = getattr(user_server, "max_body_bytes", None)
    if max_body is None:
        from harmony_tui.server.body_limit import DEFAULT_MAX_BODY_BYTES

        max_body = DEFAULT_MAX_BODY_BYTES
    if max_body < 1:
        raise ConfigError(f"--max-body-bytes={max_body}: expected a positive number of bytes")
    insecure = bool(getattr(args, "insecure", None) or getattr(user_server, "insecure", False))
    return {"host": host, "port": port, "api_key": api_key, "cors_origins": origins,
            "max_queue": max_queue, "max_body_bytes": max_body, "insecure": insecure}


def server_tool_names(args: argparse.Namespace, user_server: Any = None) -> tuple[str, ...]:
    """The built-in tools enabled for the server: the flag, else ``server.tools`` (a list or a
    comma string), else none. ConfigError naming ``server.tools`` for a bad config value."""
    from harmony_tui.errors import ConfigError

    flagged = getattr(args, "server_tools", None)
    if flagged is not None:
        return tuple(flagged)
    configured = getattr(user_server, "tools", None)
    if not configured:
        return ()
    text = configured if isinstance(configured, str) else ",".join(str(t) for t in configured)
    try:
        return parse_server_tools(text)
    except ValueError as err:
        raise ConfigError(f"server.tools={configured!r}: {err}") from None


def server_toolset(names: tuple[str, ...], configured: Any = None) -> Any:
    """A ``ToolSet`` of the built-in tools ``names`` (None when empty). Settings come from
    ``configured`` (the prompt config's ``ToolsConfig``) where it has them, else defaults;
    nothing else of it (functions, MCP, apply_patch) is enabled for the server."""
    if not names:
        return None
    from harmony_tui.tools.config import ToolsConfig
    from harmony_tui.tools.toolset import ToolSet

    base = configured if configured is not None else ToolsConfig()
    config = ToolsConfig(
        python=base.python if "python" in names else None,
        browser=base.browser if "browser" in names else None,
        max_calls_per_turn=base.max_calls_per_turn,
    ).with_flags(python="python" in names, browser="browser" in names)
    return ToolSet(config)


def _settings(args: argparse.Namespace) -> Any:
    from harmony_tui.config.command_line import resolve_settings

    return resolve_settings(args)


def run_serve(args: argparse.Namespace) -> int:
    """Load the model and serve until interrupted. HarmonyTuiError for a bad setup."""
    import uvicorn

    from harmony_tui.engine.engine import Engine
    from harmony_tui.errors import ConfigError
    from harmony_tui.progress import ProgressPrinter
    from harmony_tui.server.app import DEFAULT_MAX_QUEUE, create_app
    from harmony_tui.server.exposure import exposure_problem
    from harmony_tui.server.records import RequestRecord
    from harmony_tui.server.runner import bind_socket, serve_until_stopped

    settings = _settings(args)
    user_server = getattr(settings.user, "server", None)
    options = server_options(args, user_server)
    tool_names = server_tool_names(args, user_server)
    problem = exposure_problem(options["host"], options["api_key"], options["cors_origins"],
                               tool_names)
    if problem and not options["insecure"]:
        raise ConfigError(f"refusing to serve: {problem}")
    if problem:
        print(f"{PROG}: warning: {problem.split(';')[0]} (--insecure)", file=sys.stderr,
              flush=True)
    if getattr(args, "api_key", None):
        print(f"{PROG}: warning: an API key on the command line is visible to other users of "
              f"this machine (ps); prefer ${API_KEY_ENV} or server.api_key", file=sys.stderr,
              flush=True)
    sock = bind_socket(options["host"], options["port"])  # fail before the slow model load
    progress = ProgressPrinter()
    engine = Engine.start(settings.model, models_dir=settings.models_dir, progress=progress)
    if settings.params.draft_model is not None:
        try:
            engine.load_draft(settings.params.draft_model).result()  # a bad draft: said now
        except BaseException:
            engine.close()
            raise
    progress.done()

    def log_request(record: RequestRecord) -> None:
        if record.state != "running":
            print(record.log_line(), file=sys.stderr, flush=True)

    try:
        prompt_tools = getattr(getattr(settings, "prompt", None), "tools", None)
        tools = server_toolset(tool_names, prompt_tools)
        app = create_app(engine, api_key=options["api_key"], cors_origins=options["cors_origins"],
                         on_request=log_request, setup=_setup_factory(settings),
                         params=settings.params, models_dir=settings.models_dir,
                         max_queue=options["max_queue"] or DEFAULT_MAX_QUEUE, tools=tools,
                         max_body_bytes=options["max_body_bytes"], bind_host=options["host"])
        port = sock.getsockname()[1]
        host = options["host"]
        shown = f"[{host}]" if ":" in host else host
        key_note = " (API key required)" if options["api_key"] else ""
        if tool_names:
            print(f"{PROG}: the server runs these built-in tools for API requests, without "
                  f"asking: {', '.join(tool_names)}", file=sys.stderr, flush=True)
        if tools is not None and tools.python is not None:  # which sandbox runs the code
            print(f"{PROG}: {tools.python.isolation_summary()}", file=sys.stderr, flush=True)
        print(f"{PROG}: serving {engine.model.name} at http://{shown}:{port}/v1{key_note}; "
              "Ctrl+C stops", file=sys.stderr, flush=True)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        _stop_on_sigterm()
        try:
            serve_until_stopped(uvicorn.Server(config), sock, tools)
        except KeyboardInterrupt:  # uvicorn re-raises the signal that stopped it
            pass
        print(f"{PROG}: server stopped", file=sys.stderr, flush=True)
    finally:
        sock.close()
        engine.close()
    return 0


def _stop_on_sigterm() -> None:
    """SIGTERM ends the server like Ctrl+C (graceful shutdown, exit status 0)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _setup_factory(settings: Any) -> Any:
    """The prompt setup, re-expanded per request so date/time placeholders stay current."""
    prompt = settings.prompt
    try:
        from harmony_tui.config.placeholders import Clock, expander
    except ImportError:  # pragma: no cover - older config package
        return lambda: prompt.setup()
    clock = Clock.from_env(getattr(prompt, "fixed_time", None))
    expand = expander(getattr(prompt, "placeholders", None), clock)
    return lambda: prompt.setup(expand)
