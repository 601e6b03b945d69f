"""Config function tools: spec validation, real commands and callables, argument checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import types
from pathlib import Path

import pytest
from conftest import wait_until
from pydantic import ValidationError

from harmony_tui.engine.messages import FunctionTool
from harmony_tui.tools.base import Tool, ToolInvocation
from harmony_tui.tools.function_tools import (
    FunctionTools,
    FunctionToolSpec,
    parse_function_specs,
    schema_problem,
)

PY = sys.executable
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["c", "f"]},
        "where": {"type": "object", "properties": {"lat": {"type": "number"}},
                  "required": ["lat"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["city"],
    "additionalProperties": False,
}

CALLABLES_MODULE = '''
import asyncio

def greet(name, punctuation="!"):
    return f"hello {name}{punctuation}"

async def forecast(city, days=1):
    await asyncio.sleep(0)
    return {"city": city, "days": days, "sky": ["sun"] * days}

def explode(**kwargs):
    raise LookupError("no such thing")

def opaque(**kwargs):
    return object()

not_a_function = 42

class Box:
    @staticmethod
    def nested(x):
        return x * 2
'''


def call(name: str, arguments: object | str = "") -> ToolInvocation:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolInvocation(f"functions.{name}", text)


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        await asyncio.sleep(0.01)


@pytest.fixture
def callables_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"user_functions_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(CALLABLES_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


# --- specs ---------------------------------------------------------------------------------


def test_spec_needs_exactly_one_executor() -> None:
    with pytest.raises(ValidationError, match="exactly one of 'command' or 'callable', got both"):
        FunctionToolSpec(name="f", command="true", callable="os:getcwd")
    with pytest.raises(ValidationError, match="got neither"):
        FunctionToolSpec(name="f")


def test_parse_specs_gives_one_line_errors_naming_the_field() -> None:
    cases = {
        "functions[1].name: String should match pattern": [
            {"name": "ok", "command": "true"}, {"name": "bad name", "command": "true"}],
        "functions[0].parameters: the parameters schema must have type \"object\"": [
            {"name": "f", "command": "true", "parameters": {"type": "array"}}],
        "functions[0].comand: Extra inputs are not permitted": [
            {"name": "f", "comand": "true"}],
        "functions[0]: function 'f' needs exactly one": [{"name": "f"}],
        "functions[0].timeout_s: Input should be greater than 0": [
            {"name": "f", "command": "true", "timeout_s": 0}],
        "functions[0].callable: String should match pattern": [
            {"name": "f", "callable": "no_colon"}],
        "functions[0]: function 'f': 'cwd' only applies": [
            {"name": "f", "callable": "os:getcwd", "cwd": "/"}],
        "functions[0].command: the command must not be empty": [{"name": "f", "command": " "}],
    }
    for expected, items in cases.items():
        with pytest.raises(ValueError) as info:
            parse_function_specs(items)
        assert expected in str(info.value), str(info.value)
        assert "\n" not in str(info.value)


def test_parameters_without_type_become_an_object_schema() -> None:
    spec = FunctionToolSpec(name="f", command="true", parameters={"properties": {}})
    assert spec.parameters == {"type": "object", "properties": {}}


def test_bad_import_path_fails_at_load(callables_module: str) -> None:
    cases = {
        "no_such_module_xyz:run": "cannot import module 'no_such_module_xyz'",
        f"{callables_module}:missing": "has no attribute 'missing'",
        f"{callables_module}:not_a_function": "is a int, not a function",
    }
    for path, expected in cases.items():
        spec = FunctionToolSpec(name="f", callable=path)
        with pytest.raises(ValueError, match="function tool 'f': callable: ") as info:
            FunctionTools([spec])
        assert expected in str(info.value)


def test_duplicate_names_are_refused() -> None:
    spec = FunctionToolSpec(name="f", command="true")
    with pytest.raises(ValueError, match="'f' is defined twice"):
        FunctionTools([spec, spec])


def test_declarations_and_routing() -> None:
    tools = FunctionTools(parse_function_specs([
        {"name": "weather", "description": "Get weather", "parameters": WEATHER_SCHEMA,
         "command": "cat"},
        {"name": "now", "command": ["date"]},
    ]))
    assert isinstance(tools, Tool)
    assert tools.namespace == "functions"
    assert tools.declarations() == [
        FunctionTool("weather", "Get weather", WEATHER_SCHEMA), FunctionTool("now", "", None)]
    assert tools.handles("functions.weather")
    assert not tools.handles("functions.other")
    assert not tools.handles("browser.weather")


# --- approval -------------------------------------------------------------------------------


def test_approval_shows_command_and_arguments(tmp_path: Path, callables_module: str) -> None:
    tools = FunctionTools(parse_function_specs([
        {"name": "ask", "command": [PY, "-c", "print(1)"], "cwd": str(tmp_path)},
        {"name": "quiet", "command": "cat", "auto_approve": True},
        {"name": "greet", "callable": f"{callables_module}:greet"},
        {"name": "careful", "callable": f"{callables_module}:greet", "auto_approve": False},
    ]))
    request = tools.approval(call("ask", {"x": 1}))
    assert request is not None and request.kind == "code"
    assert request.title == "Run function ask"
    assert f"$ {PY} -c 'print(1)'" in request.body
    assert str(tmp_path) in request.body
    assert '"x": 1' in request.body
    assert "not json" in tools.approval(call("ask", "not json")).body
    assert tools.approval(call("quiet", {})) is None
    assert tools.approval(call("greet", {})) is None
    careful = tools.approval(call("careful", {"name": "Ada"}))
    assert careful is not None and f"{callables_module}:greet(**arguments)" in careful.body
    assert tools.approval(call("unknown", {})) is None


# --- commands -------------------------------------------------------------------------------


async def test_command_gets_arguments_on_stdin_and_runs_in_cwd(tmp_path: Path) -> None:
    script = "import json,os,sys; a=json.load(sys.stdin); print(a['city'].upper(), os.getcwd())"
    tools = FunctionTools(parse_function_specs([
        {"name": "weather", "parameters": WEATHER_SCHEMA, "command": [PY, "-c", script],
         "cwd": str(tmp_path)},
        {"name": "shell", "command": "cat | tr a-z A-Z"},
    ]))
    result = await tools.run(call("weather", {"city": "Zürich"}))
    assert not result.is_error, result.text
    assert result.text == f"ZÜRICH {tmp_path}\n"
    assert result.details["exit_code"] == 0
    assert result.duration_s > 0
    shell = await tools.run(call("shell", {"k": "v"}))
    assert shell.text == '{"K": "V"}'


async def test_command_failure_reports_status_and_stderr_tail() -> None:
    script = "import sys; sys.stderr.write('x' * 5000 + 'the real reason'); sys.exit(3)"
    tools = FunctionTools([FunctionToolSpec(name="bad", command=[PY, "-c", script])])
    result = await tools.run(call("bad", {}))
    assert result.is_error
    assert result.text.startswith("functions.bad: the command exited with status 3: ...")
    assert result.text.endswith("the real reason")
    assert len(result.text) < 2200


async def test_missing_command_and_missing_cwd(tmp_path: Path) -> None:
    tools = FunctionTools(parse_function_specs([
        {"name": "ghost", "command": ["no-such-program-xyz"]},
        {"name": "lost", "command": ["true"], "cwd": str(tmp_path / "gone")},
    ]))
    ghost = await tools.run(call("ghost"))
    assert ghost.is_error and "cannot run 'no-such-program-xyz'" in ghost.text
    lost = await tools.run(call("lost"))
    assert lost.is_error and f"in {tmp_path / 'gone'}" in lost.text


async def test_command_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    command = f"sleep 30 & echo $! > {pid_file}; wait"
    tools = FunctionTools([FunctionToolSpec(name="slow", command=command, timeout_s=0.5)])
    result = await tools.run(call("slow"))
    assert result.is_error
    assert result.text == "functions.slow: the command did not finish within 0.5s and was stopped"
    child = int(pid_file.read_text())
    await wait_for(lambda: not alive(child))


async def test_cancelled_call_stops_the_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"import os,time; open({str(pid_file)!r},'w').write(str(os.getpid())); time.sleep(30)"
    tools = FunctionTools([FunctionToolSpec(name="hang", command=[PY, "-c", script])])
    task = asyncio.create_task(tools.run(call("hang")))
    await wait_for(lambda: pid_file.exists() and pid_file.read_text() != "")
    pid = int(pid_file.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: not alive(pid))


async def test_aclose_stops_running_commands(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"import os,time; open({str(pid_file)!r},'w').write(str(os.getpid())); time.sleep(30)"
    tools = FunctionTools([FunctionToolSpec(name="hang", command=[PY, "-c", script])])
    task = asyncio.create_task(tools.run(call("hang")))
    await wait_for(lambda: pid_file.exists() and pid_file.read_text() != "")
    await tools.aclose()
    result = await task
    assert result.is_error and "killed by signal 9" in result.text
    assert not alive(int(pid_file.read_text()))


# --- callables ------------------------------------------------------------------------------


async def test_callables_sync_async_and_failures(callables_module: str) -> None:
    tools = FunctionTools(parse_function_specs([
        {"name": "greet", "callable": f"{callables_module}:greet"},
        {"name": "forecast", "callable": f"{callables_module}:forecast"},
        {"name": "explode", "callable": f"{callables_module}:explode"},
        {"name": "opaque", "callable": f"{callables_module}:opaque"},
        {"name": "double", "callable": f"{callables_module}:Box.nested"},
    ]))
    assert (await tools.run(call("greet", {"name": "Ada"}))).text == "hello Ada!"
    forecast = await tools.run(call("forecast", {"city": "Oslo", "days": 2}))
    assert json.loads(forecast.text) == {"city": "Oslo", "days": 2, "sky": ["sun", "sun"]}
    assert (await tools.run(call("double", {"x": 21}))).text == "42"
    explode = await tools.run(call("explode", {}))
    assert explode.is_error
    assert explode.text == (f"functions.explode: {callables_module}:explode raised LookupError:"
                            " no such thing")
    wrong = await tools.run(call("greet", {"nom": "Ada"}))
    assert wrong.is_error and "raised TypeError" in wrong.text and "'nom'" in wrong.text
    opaque = await tools.run(call("opaque", {}))
    assert opaque.is_error
    assert "returned a object, which is neither a str nor JSON-serialisable" in opaque.text


# --- arguments ------------------------------------------------------------------------------


async def test_bad_arguments_are_error_results_naming_the_field() -> None:
    tools = FunctionTools([FunctionToolSpec(name="weather", parameters=WEATHER_SCHEMA,
                                            command="cat")])
    cases = {
        "{not json": "functions.weather: arguments are not valid JSON",
        "[1, 2]": "functions.weather: arguments must be a JSON object, got array",
        "{}": "functions.weather: arguments.city: this required field is missing",
        '{"city": 3}': "functions.weather: arguments.city: expected string, got integer 3",
        '{"city": "a", "days": 1.5}': "arguments.days: expected integer, got number 1.5",
        '{"city": "a", "days": true}': "arguments.days: expected integer, got boolean true",
        '{"city": "a", "unit": "k"}': 'arguments.unit: "k" is not one of "c", "f"',
        '{"city": "a", "where": {}}': "arguments.where.lat: this required field is missing",
        '{"city": "a", "where": {"lat": "n"}}': "arguments.where.lat: expected number",
        '{"city": "a", "tags": ["x", 1]}': "arguments.tags[1]: expected string, got integer 1",
        '{"city": "a", "extra": 1}': "arguments.extra: unknown field (known fields: city, days",
    }
    for arguments, expected in cases.items():
        result = await tools.run(call("weather", arguments))
        assert result.is_error, arguments
        assert expected in result.text, result.text
    ok = await tools.run(call("weather", '{"city": "a", "days": 2.0, "where": {"lat": 1}}'))
    assert not ok.is_error, ok.text


def test_schema_problem_accepts_unions_and_ignores_unknown_keywords() -> None:
    schema = {"type": ["string", "null"], "format": "date"}
    assert schema_problem(None, schema) is None
    assert schema_problem("2024-01-01", schema) is None
    assert schema_problem(1, schema) == "arguments: expected string or null, got integer 1"
    assert schema_problem(1.0, {"enum": [1]}) is None
    assert schema_problem(True, {"enum": [1]}) == "arguments: true is not one of 1"


async def test_unknown_function_lists_the_known_ones() -> None:
    tools = FunctionTools(parse_function_specs([
        {"name": "a", "command": "true"}, {"name": "b", "command": "true"}]))
    result = await tools.run(call("c", {}))
    assert result.is_error
    assert result.text == ("unknown function 'functions.c'; known functions: functions.a, "
                           "functions.b")
    empty = await FunctionTools([]).run(call("c"))
    assert empty.text.endswith("known functions: none configured")


def test_runs_from_separate_event_loops() -> None:
    tools = FunctionTools([FunctionToolSpec(name="echo", command="cat")])
    for value in ("one", "two"):
        result = asyncio.run(tools.run(call("echo", {"v": value})))
        assert json.loads(result.text) == {"v": value}


# --- floods, escapes and leftovers (issue 11) -----------------------------------------------


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def kill_quietly(*pids: int | None) -> None:
    """Clean-up after a failed assertion: SIGKILL processes the test started, by pid."""
    for pid in pids:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


FLOOD_WITH_SETSID_CHILD = """
import os, sys
if os.fork() == 0:
    os.setsid()
    open(sys.argv[1], "w").write(str(os.getpid()))
while True:
    sys.stdout.write("x" * 65536)
"""


async def test_flooding_command_with_a_setsid_child_is_stopped_at_its_timeout(tmp_path: Path):
    """A command (and a child that left its session) flooding stdout: the call ends at the
    timeout instead of hanging on the full pipe, and the child is gone too."""
    pid_file = tmp_path / "child.pid"
    tools = FunctionTools([FunctionToolSpec(
        name="flood", command=[PY, "-c", FLOOD_WITH_SETSID_CHILD, str(pid_file)],
        timeout_s=1.0)])
    try:
        result = await asyncio.wait_for(tools.run(call("flood")), 30)
        assert result.is_error
        assert result.text == "functions.flood: the command did not finish within 1s and was " \
            "stopped"
        await wait_for(lambda: read_pid(pid_file) is not None)
        await wait_for(lambda: not alive(read_pid(pid_file)))
    finally:
        kill_quietly(read_pid(pid_file))


SETPGID = ("import os, sys, time; os.setpgid(0, 0); open(sys.argv[1], 'w').write(str(os.getpid()));"
           " time.sleep(60)")


@pytest.mark.parametrize("escape", ["setsid", "setpgid"])
async def test_descendants_that_left_the_process_group_die_at_the_timeout(
        tmp_path: Path, escape: str) -> None:
    pid_file = tmp_path / "escaped.pid"
    quiet = "</dev/null >/dev/null 2>&1"  # a daemon holds none of the command's pipes
    spawn = (f"setsid sleep 60 {quiet} & echo $! > {pid_file}" if escape == "setsid" else
             f"{shlex.join([PY, '-c', SETPGID, str(pid_file)])} {quiet} &")
    wait = f"while [ ! -s {pid_file} ]; do sleep 0.01; done"
    tools = FunctionTools([FunctionToolSpec(name="slow", command=f"{spawn}\n{wait}\nsleep 60",
                                            timeout_s=2)])
    try:
        result = await tools.run(call("slow"))
        assert result.is_error and "did not finish within 2s" in result.text
        await wait_for(lambda: read_pid(pid_file) is not None)
        await wait_for(lambda: not alive(read_pid(pid_file)))
    finally:
        kill_quietly(read_pid(pid_file))


async def test_daemons_left_behind_by_a_finished_command_are_stopped(tmp_path: Path) -> None:
    """A command that answers at once but leaves a detached daemon: the daemon goes with it."""
    pid_file = tmp_path / "daemon.pid"
    command = (f"( setsid sh -c 'echo $$ > {pid_file}; exec sleep 60' </dev/null >/dev/null "
               f"2>&1 & ); while [ ! -s {pid_file} ]; do sleep 0.01; done; echo answered")
    tools = FunctionTools([FunctionToolSpec(name="daemon", command=command, timeout_s=20)])
    try:
        result = await tools.run(call("daemon"))
        assert (result.text, result.is_error) == ("answered\n", False)
        await wait_for(lambda: read_pid(pid_file) is not None)
        await wait_for(lambda: not alive(read_pid(pid_file)))
    finally:
        kill_quietly(read_pid(pid_file))


KILLED_PARENT = """
import asyncio, sys
from harmony_tui.tools.base import ToolInvocation
from harmony_tui.tools.function_tools import FunctionTools, FunctionToolSpec

command = (f"echo $$ > {sys.argv[1]}.shell; setsid sleep 60 </dev/null >/dev/null 2>&1 & "
           f"echo $! > {sys.argv[1]}; sleep 60")
tools = FunctionTools([FunctionToolSpec(name="slow", command=command, timeout_s=60)])
asyncio.run(tools.run(ToolInvocation("functions.slow", "{}")))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper is Linux only")
def test_nothing_outlives_an_app_that_is_killed(tmp_path: Path) -> None:
    """SIGKILL the process running a call (the app crashing): the command and a child that left
    its session die too."""
    pid_file = tmp_path / "escaped.pid"
    app = subprocess.Popen([PY, "-c", KILLED_PARENT, str(pid_file)])
    try:
        wait_until(lambda: read_pid(pid_file) is not None, message="the command to start")
        app.kill()
        app.wait(timeout=10)
        wait_until(lambda: not alive(read_pid(pid_file)), timeout=10,
                   message="the escaped child to die")
    finally:
        app.kill()
        app.wait(timeout=10)
        kill_quietly(read_pid(pid_file))
        shell = read_pid(tmp_path / "escaped.pid.shell")
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.killpg(os.getpgid(shell), signal.SIGKILL)  # type: ignore[arg-type]


BIG_OUTPUT = """
import sys
out = sys.stdout.buffer
out.write(b"HEAD" + b"a" * 996)
block = b"x" * 1_000_000
for _ in range(60):
    out.write(block)
out.write(b"b" * 996 + b"TAIL")
"""


async def test_output_is_streamed_with_a_cap_keeping_head_and_tail() -> None:
    """60 MB of output: memory stays far below it, the result keeps the start and the end."""
    tools = FunctionTools([FunctionToolSpec(name="big", command=[PY, "-c", BIG_OUTPUT])])
    tracemalloc.start()
    try:
        result = await tools.run(call("big"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not result.is_error, result.text[-300:]
    assert peak < 8_000_000, f"peak {peak} bytes while reading 60 MB"
    assert result.text.startswith("HEAD" + "a" * 996)
    assert result.text.endswith("b" * 996 + "TAIL")
    omitted = 60_002_000 - 100_000  # all but what is kept
    assert f"\n[... {omitted} bytes omitted ...]\n" in result.text
    assert len(result.text) < 100_100
    assert result.details["output_bytes"] == 60_002_000


async def test_output_cap_is_configurable_and_applies_to_callables(callables_module: str):
    tools = FunctionTools(parse_function_specs([
        {"name": "chatty", "command": [PY, "-c", "print('y' * 50_000, end='')"],
         "max_output_chars": 2_000},
        {"name": "greet", "callable": f"{callables_module}:greet", "max_output_chars": 1_000},
    ]))
    chatty = await tools.run(call("chatty"))
    assert chatty.text == "y" * 1_000 + "\n[... 48000 bytes omitted ...]\n" + "y" * 1_000
    greet = await tools.run(call("greet", {"name": "z" * 5_000}))
    assert greet.text.startswith("hello zzz") and "characters omitted ...]" in greet.text
    assert len(greet.text) < 1_100
    with pytest.raises(ValueError, match=r"functions\[0\].max_output_chars: Input should be "
                       "greater than or equal to 1000"):
        parse_function_specs([{"name": "f", "command": "true", "max_output_chars": 10}])


async def test_a_command_that_ignores_large_arguments_still_answers() -> None:
    tools = FunctionTools([FunctionToolSpec(name="deaf", command=["echo", "ok"])])
    result = await tools.run(call("deaf", {"blob": "z" * 1_000_000}))
    assert (result.text, result.is_error) == ("ok\n", False)


async def test_wrap_command_hook_runs_the_command_through_a_wrapper(tmp_path: Path) -> None:
    """The sandbox's hook: the wrapper's argv runs, and the timeout still stops everything
    (the reaper stays outside the wrapper)."""
    seen: list[tuple[list[str], str]] = []

    def wrap(argv: list[str], spec: FunctionToolSpec) -> object:
        seen.append((argv, spec.name))
        if spec.name == "env":  # argv and a whole new environment, as sandbox.Sandboxed
            return types.SimpleNamespace(argv=argv, env={"PATH": os.defpath, "ONLY": "this"})
        return ["env", "WRAPPED=yes", *argv]

    pid_file = tmp_path / "escaped.pid"
    tools = FunctionTools(parse_function_specs([
        {"name": "show", "command": "echo $WRAPPED"},
        {"name": "env", "command": ["env"]},
        {"name": "slow", "command": f"setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $! > "
                                    f"{pid_file}; sleep 60",
         "timeout_s": 0.5},
    ]), wrap_command=wrap)
    try:
        assert (await tools.run(call("show"))).text == "yes\n"
        assert seen[0] == (["/bin/sh", "-c", "echo $WRAPPED"], "show")
        assert (await tools.run(call("env"))).text == f"PATH={os.defpath}\nONLY=this\n"
        slow = await tools.run(call("slow"))
        assert slow.is_error and "did not finish" in slow.text
        await wait_for(lambda: read_pid(pid_file) is not None)
        await wait_for(lambda: not alive(read_pid(pid_file)))
    finally:
        kill_quietly(read_pid(pid_file))
