"""MCP tools against a real MCP server (tests/mcp_echo_server.py) over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_until

from harmony_tui.tools.base import Tool, ToolInvocation
from harmony_tui.tools.mcp_tools import (
    McpServerSpec,
    McpStartError,
    McpTools,
    function_name,
    parse_mcp_specs,
)

pytestmark = pytest.mark.filterwarnings("error")

PY = sys.executable
SERVER = str(Path(__file__).with_name("mcp_echo_server.py"))


def call(name: str, arguments: object | str = "") -> ToolInvocation:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolInvocation(f"functions.{name}", text)


def process_exists(pid: int) -> bool:
    """True while the process exists at all, zombies included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def mcp_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mcp-") and t.is_alive()]


@pytest.fixture(scope="module")
def http_process() -> Iterator[subprocess.Popen[str]]:
    """The echo server over streamable HTTP, in a subprocess that prints its port first."""
    process = subprocess.Popen([PY, SERVER, "--http"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    yield process
    process.terminate()
    process.wait(timeout=10)
    process.stdout.close()


@pytest.fixture(scope="module")
def echo_tools(http_process: subprocess.Popen[str]) -> Iterator[McpTools]:
    """A stdio echo server (the HTTP one boots meanwhile: both take ~1 s to import the SDK)."""
    tools = McpTools([McpServerSpec(name="echo", command=PY, args=[SERVER])])
    tools.start()
    yield tools
    tools.close()


@pytest.fixture(scope="module")
def http_server(http_process: subprocess.Popen[str]) -> str:
    """The URL of the HTTP echo server, once its port accepts connections."""
    ready, _, _ = select.select([http_process.stdout], [], [], 30)
    assert ready, "the HTTP MCP server did not report its port"
    port = int(http_process.stdout.readline())

    def accepting() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_until(accepting, message="the HTTP MCP server's port")
    return f"http://127.0.0.1:{port}/mcp"


# --- specs ---------------------------------------------------------------------------------


def test_specs_need_exactly_one_transport() -> None:
    cases = {
        "mcp_servers[0]: MCP server 'a' needs exactly one of 'command' (stdio) or 'url' "
        "(streamable HTTP), got neither": [{"name": "a"}],
        "got both": [{"name": "a", "command": "x", "url": "http://h/mcp"}],
        "mcp_servers[1].url: expected an http:// or https:// URL, got 'ftp://h'": [
            {"name": "a", "command": "x"}, {"name": "b", "url": "ftp://h"}],
        "mcp_servers[0]: MCP server 'a': 'headers' only applies to a 'url' server": [
            {"name": "a", "command": "x", "headers": {"k": "v"}}],
        "mcp_servers[0]: MCP server 'a': 'args' only applies to a 'command' server": [
            {"name": "a", "url": "http://h/mcp", "args": ["x"]}],
        "mcp_servers[0].transport: Extra inputs are not permitted": [
            {"name": "a", "command": "x", "transport": "stdio"}],
        "mcp_servers[0].name: String should match pattern": [{"name": "a b", "command": "x"}],
    }
    for expected, items in cases.items():
        with pytest.raises(ValueError) as info:
            parse_mcp_specs(items)
        assert expected in str(info.value), str(info.value)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="'a' is configured twice"):
        McpTools(parse_mcp_specs([{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]))


def test_function_names_are_sanitised() -> None:
    assert function_name("my-server", "get.weather") == "my_server_get_weather"
    assert function_name("9lives", "x") == "mcp_9lives_x"


# --- stdio ------------------------------------------------------------------------------------


def test_tools_are_declared_with_their_json_schema(echo_tools: McpTools) -> None:
    assert isinstance(echo_tools, Tool)
    declared = {d.name: d for d in echo_tools.declarations()}
    assert {"echo_echo", "echo_add", "echo_fail", "echo_pid"} <= set(declared)
    add = declared["echo_add"]
    assert add.description == "Add two integers."
    assert add.parameters["type"] == "object"
    assert add.parameters["required"] == ["a", "b"]
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert echo_tools.handles("functions.echo_add")
    assert not echo_tools.handles("functions.add")
    assert echo_tools.errors == []


async def test_calls_return_results(echo_tools: McpTools) -> None:
    echo = await echo_tools.run(call("echo_echo", {"text": "héllo\nworld"}))
    assert (echo.text, echo.is_error) == ("héllo\nworld", False)
    assert echo.details == {"server": "echo", "tool": "echo"}
    assert echo.duration_s > 0
    added = await echo_tools.run(call("echo_add", {"a": 2, "b": 40}))
    assert (added.text, added.is_error) == ("42", False)
    both = await asyncio.gather(*(echo_tools.run(call("echo_echo", {"text": str(i)}))
                                  for i in range(5)))
    assert [r.text for r in both] == ["0", "1", "2", "3", "4"]


async def test_errors_are_error_results(echo_tools: McpTools) -> None:
    raised = await echo_tools.run(call("echo_fail", {}))
    assert raised.is_error and "fail" in raised.text
    invalid = await echo_tools.run(call("echo_add", {"a": "x"}))
    assert invalid.is_error and "validation error" in invalid.text
    unknown = await echo_tools.run(call("echo_nope", {}))
    assert unknown.is_error
    assert unknown.text.startswith("unknown function 'functions.echo_nope'; MCP functions: "
                                   "functions.echo_echo, functions.echo_add")
    not_json = await echo_tools.run(call("echo_echo", "{oops"))
    assert not_json.is_error and "not valid JSON" in not_json.text
    not_object = await echo_tools.run(call("echo_echo", "[1]"))
    assert not_object.text == "functions.echo_echo: arguments must be a JSON object"


async def test_long_results_are_capped_with_a_note(echo_tools: McpTools) -> None:
    """A 2 MB result reaches the model as its first and last 50,000 characters and a note."""
    result = await echo_tools.run(call("echo_big", {"size": 2_000_000}))
    assert not result.is_error
    assert result.text == ("H" + "x" * 49_999 + "\n[... 1900000 characters omitted ...]\n"
                           + "x" * 49_999 + "T")
    assert result.details["result_chars"] == 2_000_000
    short = await echo_tools.run(call("echo_big", {"size": 100_000}))
    assert len(short.text) == 100_000 and "result_chars" not in short.details


async def test_result_cap_is_configurable(http_server: str) -> None:
    tools = McpTools(parse_mcp_specs([{"name": "web", "url": http_server,
                                       "max_result_chars": 1_000}]))
    await tools.astart()
    try:
        result = await tools.run(call("web_big", {"size": 5_000}))
        assert result.text == "H" + "x" * 499 + "\n[... 4000 characters omitted ...]\n" + \
            "x" * 499 + "T"
    finally:
        await tools.aclose()
    with pytest.raises(ValueError, match=r"mcp_servers\[0\].max_result_chars: Input should be "
                       "greater than or equal to 1000"):
        parse_mcp_specs([{"name": "a", "command": "x", "max_result_chars": 5}])


def test_used_from_two_event_loops(echo_tools: McpTools) -> None:
    first = asyncio.run(echo_tools.run(call("echo_echo", {"text": "one"})))
    second = asyncio.run(echo_tools.run(call("echo_echo", {"text": "two"})))
    assert (first.text, second.text) == ("one", "two")


def test_approval(echo_tools: McpTools) -> None:
    request = echo_tools.approval(call("echo_add", {"a": 1, "b": 2}))
    assert request is not None and request.kind == "code"
    assert request.title == "Call add on MCP server echo"
    assert json.loads(request.body) == {"a": 1, "b": 2}
    assert echo_tools.approval(call("echo_nope")) is None


# --- start failures ---------------------------------------------------------------------------


def test_missing_command_is_a_clear_start_error() -> None:
    tools = McpTools([McpServerSpec(name="ghost", command="no-such-mcp-server-xyz")])
    with pytest.raises(McpStartError) as info:
        tools.start()
    assert str(info.value) == ("MCP server 'ghost' could not start: FileNotFoundError: [Errno 2]"
                               " No such file or directory: 'no-such-mcp-server-xyz'")
    assert not [t for t in mcp_threads() if t.name == "mcp-ghost"]


def test_server_that_exits_reports_its_stderr() -> None:
    script = "import sys; sys.stderr.write('missing API key\\n'); sys.exit(3)"
    tools = McpTools([McpServerSpec(name="dies", command=PY, args=["-c", script])])
    with pytest.raises(McpStartError, match=r"^MCP server 'dies' could not start: .*"
                       r"\(server stderr: missing API key\)$"):
        tools.start()


def test_silent_server_times_out_and_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"import os,sys; open({str(pid_file)!r},'w').write(str(os.getpid())); sys.stdin.read()"
    tools = McpTools([McpServerSpec(name="mute", command=PY, args=["-c", script],
                                    timeout_s=0.5)])
    with pytest.raises(McpStartError, match=r"^MCP server 'mute' did not answer within 0.5s$"):
        tools.start()
    assert not process_exists(int(pid_file.read_text()))


def test_life_cycle_skip_failed_survive_dead_close_live() -> None:
    """One McpTools with a server that cannot start, one that dies and one that lives."""
    tools = McpTools(parse_mcp_specs([
        {"name": "ghost", "command": "no-such-mcp-server-xyz"},
        {"name": "frail", "command": PY, "args": [SERVER]},
        {"name": "short", "command": PY, "args": [SERVER], "auto_approve": True},
    ]))
    tools.start(raise_on_error=False)
    assert len(tools.errors) == 1 and tools.errors[0].startswith("MCP server 'ghost'")
    assert {"frail_echo", "short_echo"} <= set(tools.names)
    assert tools.approval(call("short_pid")) is None
    assert tools.approval(call("frail_pid")) is not None

    frail_pid = int(asyncio.run(tools.run(call("frail_pid"))).text)
    os.kill(frail_pid, 9)
    dead = asyncio.run(tools.run(call("frail_echo", {"text": "x"})))
    assert dead.is_error
    assert dead.text.startswith("functions.frail_echo: MCP call failed: ")

    short_pid = int(asyncio.run(tools.run(call("short_pid"))).text)
    assert process_exists(short_pid)
    asyncio.run(tools.aclose())
    assert not process_exists(short_pid)
    assert not process_exists(frail_pid)
    assert not [t for t in mcp_threads() if t.name in ("mcp-short", "mcp-frail")]
    after = asyncio.run(tools.run(call("short_echo", {"text": "x"})))
    assert after.is_error and after.text == "MCP server 'short' is not connected"
    tools.close()  # twice is fine


# --- streamable HTTP --------------------------------------------------------------------------


async def test_streamable_http_calls_with_headers(http_server: str) -> None:
    tools = McpTools([McpServerSpec(name="web", url=http_server,
                                    headers={"X-Harmony-Test": "secret-value"})])
    await tools.astart()
    try:
        assert "web_echo" in tools.names
        echo = await tools.run(call("web_echo", {"text": "over http"}))
        assert (echo.text, echo.is_error) == ("over http", False)
        header = await tools.run(call("web_header", {"name": "X-Harmony-Test"}))
        assert header.text == "secret-value"
    finally:
        await tools.aclose()


def test_streamable_http_call_timeout(http_server: str) -> None:
    tools = McpTools([McpServerSpec(name="web", url=http_server, timeout_s=1.0)])
    tools.start()
    try:
        result = asyncio.run(tools.run(call("web_wait", {"seconds": 30})))
        assert result.is_error
        assert result.text == "functions.web_wait: MCP server 'web' did not answer within 1s"
        assert asyncio.run(tools.run(call("web_echo", {"text": "still up"}))).text == "still up"
    finally:
        tools.close()


def test_unreachable_url_is_a_clear_start_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tools = McpTools([McpServerSpec(name="nowhere", url=f"http://127.0.0.1:{port}/mcp")])
    with pytest.raises(McpStartError, match=r"^MCP server 'nowhere' could not start: "
                       r"ConnectError: "):
        tools.start()
