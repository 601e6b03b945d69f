"""A small MCP server for the MCP tool tests, built with the official SDK.

``python mcp_echo_server.py`` serves over stdio. ``python mcp_echo_server.py --http`` binds a free
loopback port, prints it on the first stdout line, then serves streamable HTTP there with uvicorn.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("echo", log_level="CRITICAL")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail(reason: str = "broken on purpose") -> str:
    """Always raise."""
    raise RuntimeError(reason)


@server.tool()
def big(size: int) -> str:
    """A text of ``size`` characters: "H", x's, "T"."""
    return "H" + "x" * (size - 2) + "T"


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
async def wait(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "done"


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The value of an HTTP request header ('' over stdio or when absent)."""
    return (ctx.headers or {}).get(name.lower(), "")


async def serve_http() -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    if "--http" in sys.argv[1:]:
        asyncio.run(serve_http())
    else:
        server.run()
