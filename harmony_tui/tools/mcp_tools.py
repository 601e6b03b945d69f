"""Tools from MCP servers, exposed to the model as function tools ``{server}_{tool}``.

Each server connection lives in its own background thread with its own event loop: the SDK's
anyio task groups must be entered and left in one task, while ``run`` may be awaited from any
loop (Textual's, or ``asyncio.run`` in the CLI). Calls are proxied to the connection's loop with
``asyncio.run_coroutine_threadsafe`` and awaited with ``asyncio.wrap_future``.

Written against the official ``mcp`` SDK 2.x (``stdio_client``, ``streamable_http_client``,
``ClientSession``); the SDK is imported lazily because it takes most of a second.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harmony_tui.engine.messages import FunctionTool
from harmony_tui.tools.base import (
    ApprovalRequest,
    ToolError,
    ToolInvocation,
    ToolResult,
    cap_text,
)
from harmony_tui.tools.function_tools import describe_validation_error

NAMESPACE = "functions"
CLOSE_TIMEOUT_S = 15.0  # the SDK gives a stdio server 2 s after EOF, then 2 s after SIGTERM
MAX_TOOL_PAGES = 100
STDERR_TAIL_CHARS = 1_000
MAX_RESULT_CHARS = 100_000
SDK_MODULES = ("anyio", "httpx2", "mcp.client.session", "mcp.client.stdio",
               "mcp.client.streamable_http")


class McpStartError(RuntimeError):
    """An MCP server could not be started or did not list its tools."""


class McpServerSpec(BaseModel):
    """One MCP server from the config: a command (stdio) or a URL (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=60.0, gt=0)
    max_result_chars: int = Field(
        default=MAX_RESULT_CHARS, ge=1_000,
        description="largest result passed on to the model; the start and the end of a longer "
                    "one are kept, with a note of how much was left out")
    auto_approve: bool = False

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if (self.command is None) == (self.url is None):
            given = "both" if self.command is not None else "neither"
            raise ValueError(
                f"MCP server {self.name!r} needs exactly one of 'command' (stdio) or 'url' "
                f"(streamable HTTP), got {given}"
            )
        if self.url is not None:
            extra = [f for f in ("args", "env", "cwd") if getattr(self, f)]
            if extra:
                raise ValueError(f"MCP server {self.name!r}: {extra[0]!r} only applies to a "
                                 "'command' server")
        elif self.headers:
            raise ValueError(f"MCP server {self.name!r}: 'headers' only applies to a 'url' server")
        return self


def parse_mcp_specs(items: Sequence[Mapping[str, Any]],
                    where: str = "mcp_servers") -> list[McpServerSpec]:
    """Validate raw config entries; ValueError with a one-line message naming the field."""
    specs = []
    for index, item in enumerate(items):
        try:
            specs.append(McpServerSpec.model_validate(item))
        except ValidationError as err:
            raise ValueError(describe_validation_error(err, f"{where}[{index}]")) from None
    return specs


def function_name(server: str, tool: str) -> str:
    """``{server}_{tool}`` with everything outside ``[A-Za-z0-9_]`` turned into ``_``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", f"{server}_{tool}")
    return f"mcp_{name}" if name[0].isdigit() else name


def describe_error(err: BaseException) -> str:
    """One line for an exception, looking inside the exception groups anyio raises."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def result_text(result: Any) -> str:
    """The text of an MCP ``CallToolResult``: text parts verbatim, other parts summarised."""
    parts = [_content_text(item) for item in getattr(result, "content", None) or []]
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    return "\n".join(parts)


def _content_text(item: Any) -> str:
    kind = getattr(item, "type", "")
    if kind == "text":
        return str(item.text)
    if kind in ("image", "audio"):
        size = len(getattr(item, "data", "") or "") * 3 // 4
        return f"[{kind}: {getattr(item, 'mime_type', '') or 'unknown type'}, ~{size} bytes]"
    if kind == "resource_link":
        return f"[resource link: {item.name} {item.uri}]"
    if kind == "resource":
        resource = item.resource
        text = getattr(resource, "text", None)
        if text is not None:
            return str(text)
        blob = getattr(resource, "blob", "") or ""
        return f"[resource: {resource.uri}, ~{len(blob) * 3 // 4} bytes]"
    return f"[{kind or type(item).__name__} content]"


class McpConnection:
    """One server session, owned by a background thread that runs its own event loop."""

    def __init__(self, spec: McpServerSpec) -> None:
        self.spec = spec
        self.tools: list[Any] = []  # the SDK's Tool objects, once started
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: Any = None
        self._scope: Any = None  # anyio.CancelScope around the whole session
        self._closing = False
        self._failure: str | None = None
        self._thread = threading.Thread(target=self._thread_main, name=f"mcp-{spec.name}",
                                        daemon=True)
        self._stderr_path: Path | None = None
        self._stderr: TextIO | None = None

    # --- life cycle (any thread) ------------------------------------------------------------

    def launch(self) -> None:
        """Start the thread; ``wait_ready`` then waits for the tool list."""
        if self.spec.command is not None:
            fd, path = tempfile.mkstemp(prefix=f"mcp-{self.spec.name}-", suffix=".log")
            os.close(fd)
            self._stderr_path = Path(path)
            self._stderr = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._thread.start()

    def wait_ready(self) -> None:
        """Block until the tools are listed; McpStartError (one line, naming the server) else."""
        name = self.spec.name
        try:
            self._ready.result(timeout=self.spec.timeout_s)
            return
        except concurrent.futures.TimeoutError:
            problem = f"did not answer within {self.spec.timeout_s:g}s"
        except Exception as err:
            problem = f"could not start: {describe_error(err)}"
        self.close(keep_stderr=True)
        note = self._stderr_note()
        self._discard_stderr()
        raise McpStartError(f"MCP server {name!r} {problem}{note}")

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def close(self, timeout: float = CLOSE_TIMEOUT_S, *, keep_stderr: bool = False) -> None:
        """End the session and the server process; safe to call more than once."""
        with self._lock:
            self._closing = True
            loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._cancel_session)
            except RuntimeError:  # the loop has already closed
                pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not keep_stderr:
            self._discard_stderr()

    def _discard_stderr(self) -> None:
        if self._stderr is None or self._thread.is_alive():
            return
        self._stderr.close()
        self._stderr = None
        if self._stderr_path is not None:
            self._stderr_path.unlink(missing_ok=True)
            self._stderr_path = None

    def stderr_tail(self) -> str:
        """The end of what a stdio server wrote to stderr (only the end is read)."""
        if self._stderr_path is None:
            return ""
        try:
            with open(self._stderr_path, "rb") as file:
                file.seek(max(0, file.seek(0, os.SEEK_END) - 4 * STDERR_TAIL_CHARS))
                data = file.read()
        except OSError:
            return ""
        return data.decode("utf-8", errors="replace").strip()[-STDERR_TAIL_CHARS:]

    def _stderr_note(self) -> str:
        tail = " ".join(self.stderr_tail().splitlines()[-5:])
        return f" (server stderr: {tail})" if tail else ""

    # --- calls (any loop) ---------------------------------------------------------------------

    async def call_tool(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call ``tool`` on the connection's loop and await its ``CallToolResult`` here."""
        with self._lock:
            if self._closing or self._loop is None or self._session is None:
                reason = f" ({self._failure})" if self._failure else ""
                raise ToolError(f"MCP server {self.spec.name!r} is not connected{reason}")
            future = asyncio.run_coroutine_threadsafe(self._call(tool, arguments), self._loop)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and task is not None and not task.cancelling():
                raise ToolError(f"MCP server {self.spec.name!r} closed during the call"
                                ) from None
            raise

    # --- the connection's own thread and loop ------------------------------------------------

    def _thread_main(self) -> None:
        try:  # import here, not on the loop: the SDK takes most of a second to import
            for module in SDK_MODULES:
                importlib.import_module(module)
        except ImportError as err:
            self._ready.set_exception(err)
            return
        with asyncio.Runner() as runner:
            with self._lock:
                self._loop = runner.get_loop()
            try:
                runner.run(self._serve())
            except BaseException as err:
                self._failure = describe_error(err)
                if not self._ready.done():
                    self._ready.set_exception(err if isinstance(err, Exception)
                                              else ConnectionError(self._failure))
            finally:
                with self._lock:
                    self._closing = True  # no new calls; those already sent become tasks below
                runner.run(asyncio.sleep(0))
                if not self._ready.done():
                    self._ready.set_exception(ConnectionError("closed before it was ready"))
            # Leaving the runner cancels calls still in flight; their callers get an error.

    def _cancel_session(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _serve(self) -> None:
        import anyio
        from mcp.client.session import ClientSession

        with anyio.CancelScope() as scope:
            with self._lock:
                if self._closing:
                    return
                self._scope = scope
            async with AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(await self._transport(stack))
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self.tools = await _list_tools(session)
                self._session = session
                self._ready.set_result(None)
                await anyio.sleep_forever()

    async def _transport(self, stack: AsyncExitStack) -> AbstractAsyncContextManager[Any]:
        spec = self.spec
        if spec.command is not None:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(command=spec.command, args=spec.args,
                                           env=spec.env or None, cwd=spec.cwd)
            return stdio_client(params, errlog=self._stderr)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        timeout = httpx2.Timeout(spec.timeout_s, read=max(spec.timeout_s, 300.0))
        client = await stack.enter_async_context(
            httpx2.AsyncClient(headers=spec.headers, timeout=timeout))
        return streamable_http_client(spec.url or "", http_client=client)

    async def _call(self, tool: str, arguments: dict[str, Any]) -> Any:
        async with asyncio.timeout(self.spec.timeout_s):
            return await self._session.call_tool(tool, arguments)


async def _list_tools(session: Any) -> list[Any]:
    from mcp.types import PaginatedRequestParams

    tools: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


class McpTools:
    """The tools of every configured MCP server, as ``functions.{server}_{tool}``."""

    namespace = NAMESPACE

    def __init__(self, specs: Iterable[McpServerSpec]) -> None:
        self._specs: dict[str, McpServerSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"MCP server {spec.name!r} is configured twice")
            self._specs[spec.name] = spec
        self._connections: dict[str, McpConnection] = {}
        self._targets: dict[str, tuple[McpConnection, Any]] = {}  # function name -> tool
        self.errors: list[str] = []
        self._started = False

    def start(self, *, raise_on_error: bool = True) -> None:
        """Connect to every server at once and list their tools (blocking; once).

        A server that fails raises McpStartError (after closing the others), or with
        ``raise_on_error=False`` is left out and its message kept in ``errors``.
        """
        if self._started:
            raise RuntimeError("McpTools.start() was already called")
        self._started = True
        pending = [McpConnection(spec) for spec in self._specs.values()]
        for connection in pending:
            connection.launch()
        for connection in pending:
            try:
                connection.wait_ready()
            except McpStartError as err:
                self.errors.append(str(err))
                continue
            self._connections[connection.spec.name] = connection
        if self.errors and raise_on_error:
            self.close()
            raise McpStartError(self.errors[0])
        for connection in self._connections.values():
            for tool in connection.tools:
                self._targets[self._unique(function_name(connection.spec.name, tool.name))] = (
                    connection, tool)

    async def astart(self, *, raise_on_error: bool = True) -> None:
        """``start`` in a worker thread, for callers on an event loop."""
        await asyncio.to_thread(self.start, raise_on_error=raise_on_error)

    def _unique(self, name: str) -> str:
        candidate, number = name, 2
        while candidate in self._targets:
            candidate, number = f"{name}_{number}", number + 1
        return candidate

    @property
    def names(self) -> list[str]:
        return list(self._targets)

    def declarations(self) -> list[FunctionTool]:
        """What the model is told about each MCP tool."""
        return [
            FunctionTool(name, tool.description or getattr(tool, "title", None) or "",
                         tool.input_schema)
            for name, (_, tool) in self._targets.items()
        ]

    def handles(self, recipient: str) -> bool:
        prefix, _, name = recipient.partition(".")
        return prefix == NAMESPACE and name in self._targets

    def approval(self, call: ToolInvocation) -> ApprovalRequest | None:
        prefix, _, name = call.recipient.partition(".")
        target = self._targets.get(name) if prefix == NAMESPACE else None
        if target is None or target[0].spec.auto_approve:
            return None
        connection, tool = target
        try:
            arguments = json.dumps(call.json_arguments(), indent=2, ensure_ascii=False)
        except ToolError:
            arguments = call.arguments
        return ApprovalRequest("code", f"Call {tool.name} on MCP server {connection.spec.name}",
                               arguments, language="json")

    async def run(self, call: ToolInvocation) -> ToolResult:
        started = time.perf_counter()
        try:
            result = await self._run(call)
        except ToolError as err:
            result = ToolResult(str(err), is_error=True)
        return ToolResult(result.text, result.is_error, time.perf_counter() - started,
                          result.details)

    async def _run(self, call: ToolInvocation) -> ToolResult:
        prefix, _, name = call.recipient.partition(".")
        target = self._targets.get(name) if prefix == NAMESPACE else None
        if target is None:
            known = ", ".join(f"{NAMESPACE}.{n}" for n in self._targets) or "none available"
            raise ToolError(f"unknown function {call.recipient!r}; MCP functions: {known}")
        connection, tool = target
        arguments = call.json_arguments()
        if not isinstance(arguments, dict):
            raise ToolError(f"{call.recipient}: arguments must be a JSON object")
        try:
            result = await connection.call_tool(tool.name, arguments)
        except ToolError:
            raise
        except TimeoutError:
            raise ToolError(f"{call.recipient}: MCP server {connection.spec.name!r} did not "
                            f"answer within {connection.spec.timeout_s:g}s") from None
        except Exception as err:
            raise ToolError(f"{call.recipient}: MCP call failed: {describe_error(err)}"
                            ) from None
        details: dict[str, Any] = {"server": connection.spec.name, "tool": tool.name}
        text = result_text(result)
        if len(text) > connection.spec.max_result_chars:
            details["result_chars"] = len(text)
            text = cap_text(text, connection.spec.max_result_chars)
        return ToolResult(text, bool(result.is_error), details=details)

    def close(self) -> None:
        """Close every connection and stop the server processes (blocking)."""
        connections = list(self._connections.values())
        closers = [threading.Thread(target=c.close) for c in connections]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
