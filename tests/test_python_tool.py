"""The python tool with real child interpreters, real folders and real process groups.

The interpreters run in the sandbox the tool picks by default (bubblewrap on Linux). Where no
sandbox is installed these tests run unisolated (``sandbox: none``), except in CI (``CI=true``),
where they insist on the sandbox (``.ci/run`` installs bubblewrap)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_until
from pydantic import ValidationError

from harmony_tui.tools.base import Tool, ToolInvocation, run_safely
from harmony_tui.tools.python_tool import (
    NO_OUTPUT,
    OutputCollector,
    PythonTool,
    PythonToolSettings,
    extract_code,
)
from harmony_tui.tools.sandbox import SandboxUnavailable, detect


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def sandbox_problem() -> str | None:
    """Why the default sandbox cannot run here (None when it can)."""
    try:
        detect("auto")
    except SandboxUnavailable as err:
        return str(err)
    return None


# The sandbox setting the mechanics tests use: the default, unless no sandbox is installed on
# a developer's machine (CI must have it: there the default stays and missing bwrap fails).
SANDBOX = "auto" if sandbox_problem() is None or in_ci() else "none"


def settings(**values) -> PythonToolSettings:
    return PythonToolSettings(**{"sandbox": SANDBOX, **values})


def marked_processes(marker: str) -> list[int]:
    """Host pids of live processes whose command line contains ``marker`` (namespaced pids
    mean nothing here, so processes are found by a marker in their arguments)."""
    needle = marker.encode()
    if not Path("/proc/self/cmdline").exists():  # macOS
        listing = subprocess.run(["ps", "-axo", "pid=,stat=,command="], capture_output=True,
                                 check=True).stdout.splitlines()
        return [int(line.split()[0]) for line in listing
                if needle in line and b"Z" not in line.split()[1]]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes() and not process_gone(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_marked(marker: str) -> None:
    """Clean up after a failing run: kill what a test's code left behind."""
    for pid in marked_processes(marker):
        try:
            os.kill(pid, 9)
        except OSError:
            pass


def call(code: str, chat_id: str | None = "chat-1", recipient: str = "python") -> ToolInvocation:
    return ToolInvocation(recipient=recipient, arguments=code, call_id="c1", chat_id=chat_id)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for a reaper counts as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError):
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def wait_for(condition, timeout: float = 10.0, message: str = "condition") -> None:
    """Poll ``condition`` on the event loop until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def tool():
    tool = PythonTool(settings(timeout_s=10))
    yield tool
    await tool.aclose()


@pytest.fixture
async def stateful():
    tool = PythonTool(settings(timeout_s=10, stateful=True))
    yield tool
    await tool.aclose()


def test_tool_protocol_and_settings() -> None:
    assert isinstance(PythonTool(), Tool)
    assert PythonTool().namespace == "python"
    settings = PythonToolSettings()
    assert (settings.timeout_s, settings.memory_mb, settings.max_output_chars) == (30, 1024, 10000)
    assert settings.python == sys.executable and settings.workdir is None
    assert not settings.stateful and not settings.auto_approve
    assert settings.sandbox == "auto" and not settings.network
    assert all(field.description for field in PythonToolSettings.model_fields.values())
    for bad in ({"timeout_s": 0}, {"memory_mb": 32}, {"colour": "red"}, {"sandbox": "docker"}):
        with pytest.raises(ValidationError):
            PythonToolSettings(**bad)


async def test_print_output_and_details(tool: PythonTool) -> None:
    result = await run_safely(tool, call("print('hello')\nprint('world')"))
    assert not result.is_error
    assert result.text == "hello\nworld"
    assert result.duration_s > 0
    assert result.details["timed_out"] is False and result.details["stateful"] is False
    assert result.details["isolation"] == ("none" if SANDBOX == "none" else
                                           "sandbox-exec" if sys.platform == "darwin" else "bwrap")


async def test_stderr_is_part_of_the_output(tool: PythonTool) -> None:
    result = await tool.run(call("import sys\nprint('out')\nprint('err', file=sys.stderr)"))
    assert not result.is_error and result.text == "out\nerr"


async def test_last_expression_value_is_shown_unless_none(tool: PythonTool) -> None:
    result = await tool.run(call("x = 6\nprint('computing')\nx * 7"))
    assert result.text == "computing\n42"
    assert (await tool.run(call("'a' + 'b'"))).text == "'ab'"
    none_result = await tool.run(call("x = [1]\nx.append(2)"))
    assert none_result.text == NO_OUTPUT and not none_result.is_error
    # A dict literal is Python, not a JSON envelope: it is evaluated and shown.
    assert (await tool.run(call('{"a": 1}'))).text == "{'a': 1}"


async def test_top_level_await(tool: PythonTool) -> None:
    result = await tool.run(call("import asyncio\nawait asyncio.sleep(0)\n'done'"))
    assert result.text == "'done'" and not result.is_error


async def test_exception_traceback_is_an_error_result(tool: PythonTool) -> None:
    result = await tool.run(call("print('before')\ndef f():\n    return 1 / 0\nf()"))
    assert result.is_error
    assert result.text.startswith("before\nTraceback (most recent call last):")
    assert "return 1 / 0" in result.text  # the cell's source lines show in the traceback
    assert result.text.endswith("ZeroDivisionError: division by zero")
    assert "python_runner" not in result.text

    syntax = await tool.run(call("def broken(:\n    pass"))
    assert syntax.is_error and "SyntaxError" in syntax.text

    exited = await tool.run(call("import sys\nsys.exit(3)"))
    assert exited.is_error and "SystemExit: 3" in exited.text
    assert not (await tool.run(call("import sys\nprint('bye')\nsys.exit(0)"))).is_error

    died = await tool.run(call("import os\nprint('last words', flush=True)\nos._exit(4)"))
    assert died.is_error
    assert died.text == "last words\n\npython: the interpreter exited with code 4"


async def test_input_reads_nothing_instead_of_the_protocol(tool: PythonTool) -> None:
    result = await tool.run(call("input()"))
    assert result.is_error and "EOFError" in result.text


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    tool = PythonTool(settings(timeout_s=1, workdir=tmp_path))
    marker = f"harmony-test-grandchild-{os.getpid()}-{time.monotonic_ns()}"
    code = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', "
        f"{marker!r}])\n"
        "print('spinning', flush=True)\n"
        "while True:\n    pass\n"
    )
    try:
        started = time.monotonic()
        result = await tool.run(call(code))
        assert time.monotonic() - started < 5
        assert result.is_error and result.details["timed_out"]
        assert result.text.startswith("python: timed out after 1 s")
        assert "spinning" in result.text
        assert process_gone(result.details["pid"])
        await wait_for(lambda: not marked_processes(marker), message="the grandchild to die")
    finally:
        kill_marked(marker)
        await tool.aclose()


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS does not enforce RLIMIT_AS")
async def test_memory_limit_raises_memory_error() -> None:
    tool = PythonTool(settings(memory_mb=128))
    result = await tool.run(call("big = bytearray(2 * 1024 ** 3)"))
    assert result.is_error
    assert "MemoryError" in result.text and "bytearray" in result.text
    # A modest allocation still works under the same limit.
    assert (await tool.run(call("len(bytearray(16 * 1024 ** 2))"))).text == str(16 * 1024 ** 2)
    await tool.aclose()


async def test_output_is_capped_keeping_head_and_tail() -> None:
    tool = PythonTool(settings(max_output_chars=1000))
    result = await tool.run(call("print('a' * 5000 + 'END')"))
    assert not result.is_error
    assert result.text.startswith("a" * 500)
    assert result.text.endswith("aEND")
    assert "\n[... 4004 characters omitted ...]\n" in result.text  # 5004 chars incl. newline
    assert result.details["omitted_chars"] == 4004
    flood = await tool.run(call("for i in range(100000):\n    print(i)"))
    assert flood.text.startswith("0\n1\n2\n") and flood.text.endswith("99998\n99999")
    assert "characters omitted" in flood.text and len(flood.text) < 1100
    await tool.aclose()


def test_output_collector_counts_exactly() -> None:
    collector = OutputCollector(10)
    for piece in ["abc", "defgh", "ijklmnop", "qrstuvwxyz"]:
        collector.add(piece)
    assert collector.total == 26 and collector.omitted == 16
    assert collector.text() == "abcde\n[... 16 characters omitted ...]\nvwxyz"
    short = OutputCollector(10)
    short.add("0123456789")
    assert short.text() == "0123456789" and short.omitted == 0


async def test_secrets_are_not_inherited(tool: PythonTool,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("HF_TOKEN", "hf-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    result = await tool.run(call("import os\nprint(sorted(os.environ))\nprint(os.environ['HOME'])\n"
                                 "open(os.path.expanduser('~/probe'), 'w').write('ok')\n"
                                 "os.listdir(os.environ['HOME'])"))
    names_line, home, listing = result.text.splitlines()
    for secret in ("OPENAI_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "PYTHONPATH"):
        assert secret not in names_line
    assert "LC_ALL" in names_line and "PATH" in names_line
    # The home is private and writable: in a sandbox an empty tmpfs, without one the work folder.
    assert home == ("/home/sandbox" if result.details["isolation"] == "bwrap"
                    else result.details["workdir"])
    assert "'probe'" in listing


async def test_working_folder_is_temporary_writable_and_per_chat() -> None:
    tool = PythonTool(settings())
    first = await tool.run(call("import os\nopen('notes.txt', 'w').write('kept')\nos.getcwd()"))
    folder = Path(first.details["workdir"])
    assert first.text == repr(str(folder)) and (folder / "notes.txt").read_text() == "kept"
    assert folder.is_relative_to(Path(os.path.realpath(__import__("tempfile").gettempdir())))
    # Files survive between stateless calls of one chat; another chat has its own folder.
    assert (await tool.run(call("open('notes.txt').read()"))).text == "'kept'"
    other = await tool.run(call("import os\nos.path.exists('notes.txt')", chat_id="chat-2"))
    assert other.text == "False" and other.details["workdir"] != str(folder)
    await tool.aclose()
    assert not folder.exists() and not Path(other.details["workdir"]).exists()


async def test_configured_working_folder_is_kept(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    tool = PythonTool(settings(workdir=workdir))
    result = await tool.run(call("open('out.txt', 'w').write('hi')"))
    assert not result.is_error and result.details["workdir"] == str(workdir)
    await tool.aclose()
    assert (workdir / "out.txt").read_text() == "hi"


async def test_stateful_keeps_variables_and_stateless_does_not(
        tool: PythonTool, stateful: PythonTool) -> None:
    assert (await stateful.run(call("counter = 41"))).text == NO_OUTPUT
    kept = await stateful.run(call("counter += 1\ncounter"))
    assert kept.text == "42" and not kept.is_error
    other_chat = await stateful.run(call("counter", chat_id="chat-2"))
    assert other_chat.is_error and "NameError" in other_chat.text

    await tool.run(call("counter = 41"))
    forgotten = await tool.run(call("counter"))
    assert forgotten.is_error and "NameError: name 'counter' is not defined" in forgotten.text


async def test_stateful_timeout_resets_state() -> None:
    tool = PythonTool(settings(stateful=True, timeout_s=0.5))
    first = await tool.run(call("value = 'set'"))
    result = await tool.run(call("while True:\n    pass"))
    assert result.is_error and result.details["timed_out"]
    assert result.text.startswith("python: timed out after 0.5 s; the interpreter state was lost")
    assert process_gone(first.details["pid"])
    after = await tool.run(call("value"))
    assert after.is_error and "NameError" in after.text
    assert after.details["pid"] != first.details["pid"]
    await tool.aclose()


async def test_aclose_kills_children(stateful: PythonTool) -> None:
    pids = [(await stateful.run(call("1", chat_id=chat))).details["pid"] for chat in "ab"]
    assert not any(process_gone(pid) for pid in pids)
    await stateful.aclose()
    assert all(process_gone(pid) for pid in pids)


async def test_cancelled_call_kills_its_interpreter(tmp_path: Path) -> None:
    tool = PythonTool(settings(workdir=tmp_path))
    marker = f"harmony-test-cancelled-{os.getpid()}-{time.monotonic_ns()}"
    task = asyncio.create_task(tool.run(call(
        "import os, sys\n"
        f"os.execv(sys.executable, [sys.executable, '-c', 'while True: pass', {marker!r}])")))
    try:
        await wait_for(lambda: bool(marked_processes(marker)), message="the cell to run")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(lambda: not marked_processes(marker), message="the interpreter to die")
    finally:
        kill_marked(marker)
        await tool.aclose()


def test_works_across_event_loops() -> None:
    tool = PythonTool(settings(stateful=True))
    asyncio.run(tool.run(call("shared = 'across loops'")))
    assert asyncio.run(tool.run(call("shared"))).text == "'across loops'"
    asyncio.run(tool.aclose())


async def test_bad_input_gets_clear_errors(tool: PythonTool) -> None:
    assert (await tool.run(call('{"code": "print(1 + 1)"}'))).text == "2"
    wrong_type = await tool.run(call('{"code": 5}'))
    assert wrong_type.is_error and "'code' field must be a string" in wrong_type.text
    empty = await tool.run(call("  \n"))
    assert empty.is_error and empty.text.startswith("python: no code to run")
    recipient = await tool.run(call("1", recipient="python.exec"))
    assert recipient.is_error and "unknown recipient 'python.exec'" in recipient.text
    missing = PythonTool(settings(python="/nonexistent/python3"))
    result = await missing.run(call("1"))
    assert result.is_error and "cannot start the interpreter '/nonexistent/python3'" in result.text
    await missing.aclose()


def test_approval_shows_the_code() -> None:
    request = PythonTool().approval(call('{"code": "print(1)"}'))
    assert request is not None
    assert (request.kind, request.body, request.language) == ("code", "print(1)", "python")
    assert PythonTool().approval(call("")) is None
    assert PythonTool(PythonToolSettings(auto_approve=True)).approval(call("print(1)")) is None


def test_extract_code_and_model_description() -> None:
    assert extract_code("print(1)\n") == "print(1)\n"
    assert extract_code('{"code": "x = 1"}') == "x = 1"
    assert extract_code("\n    a = 1\n    a\n") == "\na = 1\na\n"  # models indent sometimes
    assert extract_code("{1, 2}") == "{1, 2}"
    assert "fresh Python process" in PythonTool().model_description()
    stateful = PythonTool(PythonToolSettings(stateful=True, timeout_s=12))
    assert "persist" in stateful.model_description() and "12 seconds" in (
        stateful.model_description())


async def test_forget_chat_kills_the_interpreter_and_removes_its_folder(tmp_path):
    from harmony_tui.tools.base import ToolInvocation
    from harmony_tui.tools.python_tool import PythonTool

    tool = PythonTool(settings(stateful=True, timeout_s=20))
    try:
        result = await tool.run(ToolInvocation("python", "import os; print(os.getcwd())",
                                               "c1", "chat-a"))
        folder = result.text.strip()
        pid = result.details["pid"]
        assert os.path.isdir(folder)
        tool.forget_chat("chat-a")
        assert not os.path.exists(folder)
        wait_until(lambda: not _alive(pid), timeout=10, message="the interpreter to exit")
    finally:
        await tool.aclose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie that was killed counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True
