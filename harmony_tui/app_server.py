"""The app's embedded API server and its tools: start/stop on the loaded model, the requests
pane, MCP servers connected in the background, built-in tools turned on and off."""

from __future__ import annotations

import asyncio
import contextlib
import os

from textual import work
from textual.css.query import NoMatches
from textual.message import Message as TextualMessage

from harmony_tui.logs import logger
from harmony_tui.tools.toolset import ToolSet
from harmony_tui.widgets.requests import RequestsPane

WIDE = 110  # columns from which the side panes show by default


class ApiRequest(TextualMessage):
    """A request record from the embedded server (posted from its thread)."""

    def __init__(self, record) -> None:
        super().__init__()
        self.record = record



class ServerMixin:
    """The embedded API server and the tools (part of ``HarmonyApp``)."""

    # -- embedded API server ----------------------------------------------------------------------

    async def action_toggle_server(self) -> None:
        """Start the API server on the loaded model, or stop it."""
        if self.server is not None:
            server, self.server = self.server, None
            await asyncio.to_thread(server.stop)
            self.status.server_url = ""
            self.notify("API server stopped", timeout=3)
            self._layout_panes(self.size.width)
            return
        if not self.model_ready:
            self.notify("Load a model before starting the API server", severity="warning")
            return
        if getattr(self.engine.model, "remote", False):
            self.notify("The API server serves a model loaded here; this app uses a remote "
                        "server's model (--backend openai)", severity="warning", timeout=8)
            return
        from harmony_tui.server.cli_args import server_toolset
        from harmony_tui.server.runner import EmbeddedServer

        options = self.run_settings.user.server if self.run_settings else None
        # Built-in tools the server runs itself (server.tools); its own set, on its own loop.
        tools = server_toolset(tuple(options.tools) if options else (),
                               self.prompt_config.tools if self.prompt_config else None)
        prompt = self.prompt_config

        def setup():
            return prompt.setup(self.expand) if prompt is not None else self.setup_prompt

        # the command line's --host, --port ... over the user config (cli.server_options)
        chosen = self.server_options or {
            "host": options.host if options else "127.0.0.1",
            "port": options.port if options else 8000,
            "api_key": (options.api_key if options else None) or os.environ.get(
                "HARMONY_TUI_API_KEY"),
            "cors_origins": options.cors_origins if options else (),
            "max_body_bytes": options.max_body_bytes if options else None,
            "insecure": options.insecure if options else False}
        server = EmbeddedServer(
            self.engine, host=chosen["host"], port=chosen["port"], api_key=chosen["api_key"],
            cors_origins=chosen["cors_origins"],
            on_request=lambda record: self.post_message(ApiRequest(record)),
            setup=setup, params=self.params, models_dir=self.models_dir, tools=tools,
            max_body_bytes=chosen["max_body_bytes"], insecure=chosen["insecure"],
            max_queue=chosen.get("max_queue"))
        try:
            await asyncio.to_thread(server.start)
        except Exception as err:
            self.notify(f"API server not started: {err}", severity="error", timeout=10)
            return
        self.server = server
        self.status.server_url = f"{server.url}/v1"
        key = " (API key required)" if server.api_key else ""
        self.notify(f"API server at {server.url}/v1{key}", timeout=8)
        logger.info("API server started at %s", server.url)
        if "requests" not in self._panes_user_set and self.size.width >= WIDE:
            self.query_one(RequestsPane).display = True
            self._update_side()

    def on_api_request(self, message: ApiRequest) -> None:
        with contextlib.suppress(NoMatches):  # a request that ends while the app closes
            self.query_one(RequestsPane).show(message.record)
        if message.record.state != "running":
            logger.info("api %s", message.record.log_line())

    @work(group="tools-start")
    async def start_tools(self, toolset: ToolSet) -> None:
        """Connect the MCP servers of the config (in the background); failures are shown.
        The status bar shows the python tool's sandbox (a warning when there is none)."""
        python = toolset.python
        self.status.isolation = "" if python is None else await asyncio.to_thread(
            python.isolation_label)
        if python is not None and not self.status.isolation.endswith(("bubblewrap",
                                                                       "sandbox-exec")):
            self.notify(python.isolation_summary(), severity="warning", timeout=15)
        if not toolset.config.mcp_servers:
            return
        await toolset.astart()
        for error in toolset.errors:
            self.notify(error, severity="error", timeout=15)
        if toolset.functions:
            names = ", ".join(f.name for f in toolset.functions)
            self.log.info(f"function tools: {names}")

    def action_toggle_tool(self, name: str) -> None:
        """Turn a built-in tool on or off for the next turns."""
        config = self.toolset.config
        on = getattr(config, name) is None
        config = config.with_flags(**{name: True}) if on else \
            config.model_copy(update={name: None})
        old = self.toolset
        self.toolset = ToolSet(config)
        self.toolset._allowed = set(old._allowed)
        self.run_worker(old.aclose(), group="tools-close")
        self.start_tools(self.toolset)
        label = {"apply_patch": "apply_patch"}.get(name, name)
        self.notify(f"{label} tool {'on' if on else 'off'}", timeout=3)

