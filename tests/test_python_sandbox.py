"""The python tool's sandbox against code written by an attacker.

The model's code is attacker-controlled (a web page it read can steer it). Each test here is an
attack that worked when the interpreter ran as a plain child process; they run with real
bubblewrap, real child processes, real files and real loopback sockets. Fake secrets only: the
real home is never touched. Without bwrap these tests skip on a developer's machine and fail in
CI (``CI=true``: ``.ci/run`` installs bubblewrap). The macOS sandbox (Seatbelt) cannot run here:
its profile is checked as text.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from test_python_tool import call, in_ci, kill_marked, marked_processes, sandbox_problem, wait_for

from harmony_tui.tools.base import ToolError
from harmony_tui.tools.python_tool import PythonTool, PythonToolSettings, clean_stale_workdirs
from harmony_tui.tools.sandbox import (
    SANDBOX_EXEC,
    Isolation,
    probe_bwrap,
    program_roots,
    seatbelt_args,
    seatbelt_profile,
    start_process,
    wrap_command,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "harmony-test-secret"  # the fake secrets below start with this


@pytest.fixture
def requires_sandbox() -> None:
    """Skip without bubblewrap on a developer's machine; fail without it in CI."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the attack tests drive bubblewrap (Linux); macOS: see the profile tests")
    problem = sandbox_problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"CI must run the sandbox tests: {problem}")
    pytest.skip(problem)


@pytest.fixture
async def tool(requires_sandbox):
    tool = PythonTool(PythonToolSettings(timeout_s=20))
    yield tool
    await tool.aclose()


def run_in_parent_with_secrets(code: str, env: dict[str, str]) -> str:
    """Run ``code`` through the python tool of a separate parent process (like the app or the
    server) started with ``env``: its environment is what /proc/<pid>/environ shows."""
    driver = textwrap.dedent("""
        import asyncio, sys
        from harmony_tui.tools.base import ToolInvocation
        from harmony_tui.tools.python_tool import PythonTool, PythonToolSettings

        async def main():
            tool = PythonTool(PythonToolSettings(timeout_s=20))
            result = await tool.run(ToolInvocation("python", sys.stdin.read(), "c1", "chat"))
            await tool.aclose()
            print(result.text)

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", driver], input=code, capture_output=True,
                          text=True, env=env, timeout=60, check=True)
    return done.stdout.strip()


async def test_code_cannot_read_the_environment_of_any_process(requires_sandbox,
                                                               tmp_path: Path) -> None:
    env = dict(os.environ, HARMONY_TUI_API_KEY=f"{SECRET}-server-key",
               OPENAI_API_KEY=f"{SECRET}-openai", HOME=str(tmp_path))
    code = textwrap.dedent(f"""
        import os
        leaks = [name for name, value in os.environ.items() if {SECRET!r} in value]
        for pid in os.listdir('/proc'):
            try:
                if pid.isdigit() and {SECRET!r}.encode() in open(f'/proc/{{pid}}/environ',
                                                                 'rb').read():
                    leaks.append(pid)
            except OSError:
                pass
        print('parent', os.getppid(), 'leaks', leaks)
    """)
    output = await asyncio.to_thread(run_in_parent_with_secrets, code, env)
    assert output.endswith("leaks []"), output
    assert SECRET not in output


async def test_code_cannot_read_user_files(tool: PythonTool, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    config = home / ".config" / "harmony-tui" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"server:\n  api_key: {SECRET}-in-config\n")
    monkeypatch.setenv("HOME", str(home))
    targets = [str(config), str(home), str(ROOT / "pyproject.toml"), str(Path(__file__))]
    code = textwrap.dedent(f"""
        for path in {targets!r}:
            try:
                data = open(path).read() if not path.endswith('home') else str(
                    __import__('os').listdir(path))
                print('READ', path, data[:60])
            except OSError as err:
                print('hidden', path, type(err).__name__)
    """)
    result = await tool.run(call(code))
    assert "READ" not in result.text and SECRET not in result.text, result.text
    assert result.text.count("hidden") == len(targets)


async def test_code_writes_only_its_working_folder(tool: PythonTool, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    planted = ROOT / f"planted-{os.getpid()}.txt"
    # Real writes only where a failing run does no harm; the system is probed with os.access.
    code = textwrap.dedent(f"""
        import os
        open('inside.txt', 'w').write('ok')
        for path in [{str(outside)!r}, {str(planted)!r}]:
            try:
                open(path, 'w').write('planted')
                print('WROTE', path)
            except OSError as err:
                print('refused', path, type(err).__name__)
        print('writable system:', [p for p in ['/', '/usr', '/etc'] if os.access(p, os.W_OK)])
    """)
    try:
        result = await tool.run(call(code))
        # Nothing reached the real files (a write below /tmp may land in the private /tmp).
        assert not outside.exists() and not planted.exists(), result.text
        assert result.text.endswith("writable system: []"), result.text
        assert (Path(result.details["workdir"]) / "inside.txt").read_text() == "ok"
    finally:
        planted.unlink(missing_ok=True)


async def test_code_cannot_reach_loopback_services(tool: PythonTool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        port = server.getsockname()[1]
        code = textwrap.dedent(f"""
            import socket
            try:
                socket.create_connection(('127.0.0.1', {port}), timeout=3).close()
                print('CONNECTED')
            except OSError as err:
                print('refused', type(err).__name__)
        """)
        result = await tool.run(call(code))
        assert result.text.startswith("refused"), result.text
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever arrived


async def test_code_cannot_signal_the_parent(tool: PythonTool) -> None:
    parent = os.getpid()
    # Signal 0 checks permission and existence without doing anything (a failing run of this
    # test must not kill pytest).
    code = textwrap.dedent(f"""
        import os
        try:
            os.kill({parent}, 0)
            print('REACHABLE')
        except OSError as err:
            print('unreachable', type(err).__name__)
        os.getppid()
    """)
    result = await tool.run(call(code))
    assert result.text.startswith("unreachable ProcessLookupError"), result.text
    assert result.text.splitlines()[-1] != str(parent)


async def test_code_cannot_raise_its_memory_limit(requires_sandbox) -> None:
    tool = PythonTool(PythonToolSettings(memory_mb=256))
    code = textwrap.dedent("""
        import resource
        try:
            resource.setrlimit(resource.RLIMIT_AS, (-1, -1))
            print('RAISED')
        except (ValueError, OSError) as err:
            print('kept', err)
        try:
            big = bytearray(2 * 1024 ** 3)
            print('ALLOCATED')
        except MemoryError:
            print('MemoryError')
    """)
    try:
        result = await tool.run(call(code))
    finally:
        await tool.aclose()
    assert result.text.splitlines() == ["kept not allowed to raise maximum limit", "MemoryError"]


async def test_nothing_outlives_the_timeout(requires_sandbox) -> None:
    tool = PythonTool(PythonToolSettings(timeout_s=1.5))
    marker = f"harmony-test-escape-{os.getpid()}-{time.monotonic_ns()}"
    code = textwrap.dedent(f"""
        import os, subprocess, sys
        sleeper = [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}]
        subprocess.Popen(sleeper, start_new_session=True)   # setsid
        subprocess.Popen(sleeper, process_group=0)          # setpgid(0, 0)
        if os.fork() == 0:                                  # a double-forked daemon
            if os.fork() == 0:
                os.setsid()
                os.execv(sys.executable, sleeper)
            os._exit(0)
        os.wait()
        print('started', flush=True)
        while True:
            pass
    """)
    try:
        result = await tool.run(call(code))
        assert result.details["timed_out"] and "started" in result.text, result.text
        await wait_for(lambda: not marked_processes(marker), timeout=5,
                       message="every process of the cell to die")
    finally:
        kill_marked(marker)
        await tool.aclose()


async def test_stateful_chats_cannot_reach_each_other(requires_sandbox) -> None:
    tool = PythonTool(PythonToolSettings(stateful=True, timeout_s=20))
    try:
        first = await tool.run(call("secret_of_a = 'A'", chat_id="chat-a"))
        assert not first.is_error, first.text
        # Chat B looks for other interpreters and writes a request into their protocol pipe.
        attack = textwrap.dedent("""
            import json, os
            me, hits, seen = os.getpid(), [], []
            for pid in os.listdir('/proc'):
                if not pid.isdigit() or int(pid) == me:
                    continue
                try:
                    argv = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')
                except OSError:
                    continue
                if argv[0].endswith(b'bwrap') or not any(
                        a.endswith(b'python_runner.py') for a in argv):
                    continue
                seen.append(pid)
                try:
                    with open(f'/proc/{pid}/fd/3', 'w') as pipe:
                        pipe.write(json.dumps({'code': 'pwned = True', 'sentinel': 'x'}) + '\\n')
                    hits.append(pid)
                except OSError:
                    pass
            print('seen', seen, 'injected', hits)
        """)
        result = await tool.run(call(attack, chat_id="chat-b"))
        assert result.text == "seen [] injected []", result.text
        check = await tool.run(call("'pwned' in globals(), secret_of_a", chat_id="chat-a"))
        assert check.text == "(False, 'A')", check.text
    finally:
        await tool.aclose()


async def test_network_is_off_unless_the_settings_allow_it(requires_sandbox) -> None:
    code = "import socket\nlen(socket.if_nameindex())"
    closed = PythonTool(PythonToolSettings())
    opened = PythonTool(PythonToolSettings(network=True))
    try:
        assert (await closed.run(call(code))).text == "1"  # loopback of its own namespace only
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]
            result = await opened.run(call(
                f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 3).close()"))
            assert not result.is_error, result.text
            server.settimeout(5)
            server.accept()[0].close()
    finally:
        await closed.aclose()
        await opened.aclose()


# -- no sandbox available ----------------------------------------------------------------------


async def test_without_a_sandbox_the_tool_refuses_and_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("bubblewrap detection is Linux-only")
    monkeypatch.setenv("PATH", str(tmp_path))  # a system without bwrap
    tool = PythonTool(PythonToolSettings(workdir=tmp_path / "work"))
    result = await tool.run(call("open('ran', 'w').write('yes')"))
    assert result.is_error and "\n" not in result.text
    assert result.text.startswith("python: no sandbox: bubblewrap (bwrap) is not installed")
    assert "apt install bubblewrap" in result.text and "sandbox: none" in result.text
    assert not (tmp_path / "work" / "ran").exists()
    assert tool.isolation_summary() == result.text
    await tool.aclose()

    # bwrap present but unable to build a sandbox (e.g. user namespaces disabled).
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    probe_bwrap.cache_clear()
    try:
        broken = PythonTool(PythonToolSettings())
        result = await broken.run(call("1"))
        assert result.is_error and "\n" not in result.text
        assert "bubblewrap cannot create one here (bwrap: setting up uid map: Permission " \
               "denied)" in result.text and "sandbox: none" in result.text
        await broken.aclose()
    finally:
        probe_bwrap.cache_clear()


async def test_sandbox_none_runs_unisolated_when_asked(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    tool = PythonTool(PythonToolSettings(sandbox="none"))
    result = await tool.run(call("6 * 7"))
    await tool.aclose()
    assert (result.text, result.details["isolation"]) == ("42", "none")
    assert tool.isolation_summary().startswith("python sandbox: none (sandbox: none)")


# -- temporary folders left by a killed app ------------------------------------------------------


async def test_stale_temp_folders_of_dead_processes_are_removed_at_start(tmp_path: Path) -> None:
    driver = textwrap.dedent("""
        import asyncio, sys
        from harmony_tui.tools.base import ToolInvocation
        from harmony_tui.tools.python_tool import PythonTool, PythonToolSettings

        tool = PythonTool(PythonToolSettings(sandbox="none"))
        result = asyncio.run(tool.run(ToolInvocation("python", "1", "c1", "chat")))
        print(result.details["workdir"], flush=True)
        sys.stdin.read()  # wait to be killed
    """)
    app = subprocess.Popen([sys.executable, "-c", driver], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    live_folder = Path(tempfile.mkdtemp(prefix=f"harmony-python-{alive.pid}-"))
    other_name = Path(tempfile.mkdtemp(prefix="harmony-python-notapid"))
    try:
        assert app.stdout is not None
        leaked = Path(app.stdout.readline().strip())
        assert leaked.is_dir() and leaked.name.startswith(f"harmony-python-{app.pid}-")
        app.send_signal(signal.SIGKILL)  # no chance to clean up
        app.wait()
        assert leaked.is_dir()
        PythonTool(PythonToolSettings(sandbox="none"))  # a new app starts
        assert not leaked.exists()
        assert live_folder.is_dir() and other_name.is_dir()  # running owner, unknown owner
        assert clean_stale_workdirs() == []
    finally:
        for process in (app, alive):
            process.kill()
            process.wait()
        for folder in (live_folder, other_name):
            folder.rmdir()


# -- building blocks ---------------------------------------------------------------------------


def test_wrap_command_runs_a_function_command_in_the_sandbox(requires_sandbox,
                                                             tmp_path: Path) -> None:
    """What function tools use: a command in the work folder, only the environment given."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.json").write_text('{"x": 1}')
    (tmp_path / "private.txt").write_text(SECRET)
    script = work / "tool.sh"
    script.write_text(f"#!/bin/sh\ncat in.json; cat {tmp_path}/private.txt; echo; echo $HOME\n"
                      "env | sort | tr '\\n' ' '; echo; echo hi > out.txt\n")
    script.chmod(0o755)
    command = wrap_command(["./tool.sh"], work, env={"PATH": "/usr/bin:/bin", "ARG": "given"})
    assert command.isolation.kind == "bwrap" and command.env["HOME"] == "/home/sandbox"
    process = start_process(command.argv, env=command.env, cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    stdout, stderr = process.communicate(timeout=30)
    lines = stdout.splitlines()
    assert lines[0] == '{"x": 1}' and SECRET not in stdout
    assert "No such file" in stderr
    assert lines[1] == "/home/sandbox"
    assert "ARG=given" in lines[2] and "HARMONY_TUI" not in lines[2]
    assert (work / "out.txt").read_text() == "hi\n"
    with pytest.raises(ToolError, match="cannot run 'no-such-tool': no such program"):
        wrap_command(["no-such-tool"], work)


def test_program_roots_never_expose_the_home(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    base = tmp_path / "opt" / "python3.11"
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "python3").write_text("")
    venv = home / "project" / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").symlink_to(base / "bin" / "python3")
    (venv / "pyvenv.cfg").write_text(f"home = {base / 'bin'}\n")
    (home / "bin").mkdir()
    (home / "bin" / "tool").write_text("")
    monkeypatch.setenv("HOME", str(home))
    assert program_roots(venv / "bin" / "python3") == [venv, base]
    assert program_roots(home / "bin" / "tool") == [home / "bin" / "tool"]  # not the home
    assert program_roots("/bin/sh")[0] != Path("/")


def test_seatbelt_profile_denies_by_default_and_writes_only_the_work_folder(
        tmp_path: Path) -> None:
    """The macOS profile (sandbox-exec cannot run on Linux: its text is checked here)."""
    profile = seatbelt_profile(readable=["/usr", '/odd "dir"\\x'], writable=["/private/w"])
    lines = profile.splitlines()
    assert lines[:2] == ["(version 1)", "(deny default)"]
    assert '(subpath "/odd \\"dir\\"\\\\x")' in profile  # quotes and backslashes escaped
    write_rule = profile[profile.index("(allow file-write*"):]
    assert '(subpath "/private/w")' in write_rule and '"/usr"' not in write_rule
    assert "network" not in profile
    assert "(allow network*)" in seatbelt_profile(readable=[], writable=["/w"], network=True)

    work = tmp_path / "work"
    work.mkdir()
    argv = seatbelt_args(["/usr/bin/python3", "-I", "x.py"], work)
    assert argv[:2] == [SANDBOX_EXEC, "-p"] and argv[3:] == ["--", "/usr/bin/python3", "-I",
                                                             "x.py"]
    assert f'(subpath "{os.path.realpath(work)}")' in argv[2]
    assert str(Path.home()) not in argv[2].replace(str(tmp_path), "")


def test_isolation_descriptions() -> None:
    assert Isolation("bwrap").describe() == "bubblewrap, no network"
    assert Isolation("sandbox-exec").describe(network=True) == "sandbox-exec, network allowed"
    assert Isolation("none").describe().startswith("none (sandbox: none)")
    assert json.dumps(Isolation("bwrap").kind) == '"bwrap"'


# -- where the isolation in force is shown ------------------------------------------------------


async def test_app_status_bar_shows_the_python_sandbox(requires_sandbox, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from harmony_tui.app import HarmonyApp
    from harmony_tui.tools.config import ToolsConfig

    async def status_after_start(app: HarmonyApp, warned: bool) -> tuple[str, list[str]]:
        def notes() -> list[str]:
            return [str(note.message) for note in app._notifications if "python" in
                    str(note.message)]

        async with app.run_test(size=(160, 40)) as pilot:
            deadline = time.monotonic() + 30
            while (not app.status.isolation or (warned and not notes())) and \
                    time.monotonic() < deadline:
                await pilot.pause(0.02)
            return str(app.status.render()), notes()

    no_model = str(tmp_path / "no-model")  # the status line does not wait for a model
    sandboxed = HarmonyApp(no_model, remember_theme=False, chats_dir=tmp_path,
                           tools=ToolsConfig(python=True))
    text, notes = await status_after_start(sandboxed, warned=False)
    assert "python: bubblewrap" in text and not notes

    monkeypatch.setenv("PATH", str(tmp_path))  # bwrap gone
    bare = HarmonyApp(no_model, remember_theme=False, chats_dir=tmp_path,
                      tools=ToolsConfig(python=True))
    text, notes = await status_after_start(bare, warned=True)
    assert "python: off, no sandbox" in text
    assert any("install bubblewrap" in note for note in notes), notes


def test_serve_prints_the_python_sandbox(requires_sandbox, tmp_path: Path) -> None:
    """``--serve --server-tools python`` says which sandbox runs the code, or (here: a PATH
    without bwrap) what to install."""
    from test_server_cli import CMD, Served

    served = Served("--model", "demo", "--port", "0", "--server-tools", "python",
                    env={"PATH": str(tmp_path)}, cmd=CMD)
    try:
        served.url()
    finally:
        code = served.stop()
    assert code == 0, served.text()
    expected = ("harmony-tui: python: no sandbox: bubblewrap (bwrap) is not installed; "
                "install bubblewrap (Debian/Ubuntu: apt install bubblewrap;")
    assert any(line.startswith(expected) for line in served.lines), served.text()
    assert PythonTool(PythonToolSettings()).isolation_summary() == (
        "python sandbox: bubblewrap, no network")


async def test_a_sandboxed_function_tool_sees_only_its_folder_and_given_env(
        requires_sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config function tool with ``sandbox: auto``, run as the app runs it (reaper + bwrap)."""
    from harmony_tui.tools.base import ToolInvocation
    from harmony_tui.tools.function_tools import FunctionTools, FunctionToolSpec

    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "private.txt").write_text(SECRET)
    monkeypatch.setenv("HARMONY_TEST_SECRET_ENV", f"{SECRET}-env")
    monkeypatch.setenv("HARMONY_TEST_GIVEN", "given-value")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    script = (f"cat; echo; cat {tmp_path}/private.txt 2>&1; echo; env | sort | tr '\\n' ' '; "
              "echo; echo written > out.txt; "
              f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)'"
              " 2>&1 | tail -1")
    spec = FunctionToolSpec(name="probe", command=["/bin/sh", "-c", script], cwd=work,
                            sandbox="auto", pass_env=["HARMONY_TEST_GIVEN"], auto_approve=True)
    tools = FunctionTools([spec])
    try:
        result = await tools.run(ToolInvocation("functions.probe", '{"q": 1}', "c1", "chat"))
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing from the sandbox reached the listener
            listener.accept()
    finally:
        await tools.aclose()
        listener.close()
    assert not result.is_error, result.text
    assert result.text.startswith('{"q": 1}')  # the arguments arrive on stdin
    assert SECRET not in result.text  # neither the private file nor the parent's environment
    assert "HARMONY_TEST_GIVEN=given-value" in result.text
    assert (work / "out.txt").read_text() == "written\n"
    assert "Connection refused" in result.text or "Network is unreachable" in result.text
    unsandboxed = FunctionToolSpec(name="plain", command=["/bin/sh", "-c", "env"],
                                   auto_approve=True)
    plain = FunctionTools([unsandboxed])
    try:
        seen = await plain.run(ToolInvocation("functions.plain", "{}", "c2", "chat"))
    finally:
        await plain.aclose()
    assert f"{SECRET}-env" in seen.text  # without sandbox: as before (opt-in)


def test_sandbox_settings_of_function_tools_are_validated() -> None:
    from pydantic import ValidationError

    from harmony_tui.tools.function_tools import FunctionToolSpec

    with pytest.raises(ValidationError, match="'sandbox' only applies to a 'command'"):
        FunctionToolSpec(name="f", callable="os:getcwd", sandbox="auto")
    with pytest.raises(ValidationError):
        FunctionToolSpec(name="f", command="true", sandbox="docker")
