"""The ``python`` tool: runs model-written code like a Jupyter cell in a separate interpreter.

Every interpreter (``python -I``) runs in its own OS sandbox (``sandbox.py``: bubblewrap on
Linux, Seatbelt on macOS) with only its working folder writable, no network unless allowed, an
allow-listed environment, memory limits it cannot raise, and a timeout that kills the whole
sandbox. Where no sandbox is available the tool refuses to run code (a one-line error saying what
to install) unless the settings say ``sandbox: none``. Stateless by default (a fresh interpreter
per call); with ``stateful`` one interpreter per chat, each in its own sandbox, keeps variables
between calls. The child side is ``python_runner.py``.

Blocking process I/O runs under ``asyncio.to_thread`` so the tool works from any event loop
(Textual's or ``asyncio.run``) and never blocks it.

Limits: the memory cap is ``RLIMIT_AS``, which Linux enforces; macOS accepts but ignores it, so
there the cap is best effort (``RLIMIT_DATA`` is tried too). Without a PID namespace (macOS,
``sandbox: none``) code that moves itself to a new session (``os.setsid``) escapes the timeout's
process-group kill.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harmony_tui.tools.base import ApprovalRequest, ToolError, ToolInvocation, ToolResult
from harmony_tui.tools.sandbox import (
    Isolation,
    SandboxMode,
    SandboxUnavailable,
    detect,
    start_process,
    wrap_command,
)

RUNNER = Path(__file__).with_name("python_runner.py")
NO_OUTPUT = "(no output)"
# Environment variables a child may inherit; everything else (API keys, tokens, cloud
# credentials, proxies, PYTHON*) is dropped. ``LC_*`` variables are kept as well.
SAFE_ENV_NAMES = ("PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM")
_READ_SIZE = 65536
_DRAIN_GRACE_S = 0.2  # how long to wait for output still in flight after the child exited
TEMP_PREFIX = "harmony-python-"  # temporary folders are named harmony-python-<pid>-<random>


class PythonToolSettings(BaseModel):
    """Settings of the ``python`` tool."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(30.0, gt=0, description="seconds a call may run before it is killed")
    memory_mb: int = Field(1024, ge=64, description="address-space limit of the interpreter in MB "
                           "(enforced on Linux; best effort on macOS)")
    max_output_chars: int = Field(10000, ge=100, description="longest output returned to the "
                                  "model; the middle of longer output is omitted")
    stateful: bool = Field(False, description="keep one interpreter per chat so variables and "
                           "imports survive between calls")
    python: str = Field(sys.executable, description="the Python interpreter that runs the code")
    workdir: Path | None = Field(None, description="folder the code runs in; empty: a fresh "
                                 "temporary folder per chat, removed when the tool closes")
    auto_approve: bool = Field(False, description="run code without asking first")
    sandbox: SandboxMode = Field("auto", description="how code is isolated: auto (bubblewrap on "
                                 "Linux, sandbox-exec on macOS), bwrap, sandbox-exec, or none "
                                 "(no isolation: the code can read your files and secrets; "
                                 "without a sandbox the tool refuses to run unless this is none)")
    network: bool = Field(False, description="let the code use the network (and services on "
                          "this machine) from inside the sandbox")


def extract_code(arguments: str) -> str:
    """The code of a call: the raw text (dedented), or the ``code`` of a JSON object with one."""
    text = textwrap.dedent(arguments)
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # not JSON: a Python dict/set literal or a block of code
        if isinstance(data, dict) and "code" in data:
            if not isinstance(data["code"], str):
                raise ToolError("python: the 'code' field must be a string of Python source, "
                                f"got {type(data['code']).__name__}")
            text = data["code"]
    if not text.strip():
        raise ToolError("python: no code to run; send the Python source as the message content")
    return text


def child_environment(workdir: Path) -> dict[str, str]:
    """The allow-listed environment of a child: no secrets, HOME is the working folder."""
    env = {name: value for name, value in os.environ.items()
           if name in SAFE_ENV_NAMES or name.startswith("LC_")}
    env.setdefault("PATH", os.defpath)
    env["HOME"] = str(workdir)
    env["MPLBACKEND"] = "Agg"  # plots go to files, never to a window
    return env


class OutputCollector:
    """Keeps the head and the tail of a stream of text, counting what falls in between."""

    def __init__(self, max_chars: int) -> None:
        self.head_limit = max_chars // 2
        self.tail_limit = max_chars - self.head_limit
        self.total = 0
        self._head: list[str] = []
        self._head_len = 0
        self._tail: list[str] = []
        self._tail_len = 0

    def add(self, text: str) -> None:
        self.total += len(text)
        room = self.head_limit - self._head_len
        if room > 0:
            self._head.append(text[:room])
            self._head_len += min(room, len(text))
            text = text[room:]
        if text:
            self._tail.append(text)
            self._tail_len += len(text)
            if self._tail_len > 2 * self.tail_limit:  # compact now and then, memory stays bounded
                joined = "".join(self._tail)[-self.tail_limit:]
                self._tail, self._tail_len = [joined], len(joined)

    @property
    def omitted(self) -> int:
        return max(0, self.total - self.head_limit - self.tail_limit)

    def text(self) -> str:
        head, tail = "".join(self._head), "".join(self._tail)
        if not self.omitted:
            return head + tail
        tail = tail[-self.tail_limit:]
        return f"{head}\n[... {self.omitted} characters omitted ...]\n{tail}"


@dataclass(frozen=True, slots=True)
class CellOutcome:
    """How a cell ended: ``ok`` (no exception), ``timed_out``, or the child's ``exit_code``
    when it died (negative: killed by that signal)."""

    output: str
    ok: bool
    timed_out: bool = False
    exit_code: int | None = None
    output_chars: int = 0
    omitted_chars: int = 0


class _SentinelScanner:
    """Feeds output bytes to a collector until the cell's end marker shows up."""

    def __init__(self, sentinel: bytes, collector: OutputCollector) -> None:
        self.sentinel = sentinel
        self.collector = collector
        self.found = False
        self.after = b""  # output that arrived after the marker (background writers)
        self._pending = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> None:
        if self.found:
            self.after += data
            return
        self._pending += data
        index = self._pending.find(self.sentinel)
        if index >= 0:
            self.found = True
            self._emit(self._pending[:index], final=True)
            self.after = self._pending[index + len(self.sentinel):]
            self._pending = b""
            return
        keep = len(self.sentinel) - 1
        cut = max(0, len(self._pending) - keep)
        self._emit(self._pending[:cut])
        self._pending = self._pending[cut:]

    def finish(self) -> None:
        if not self.found:
            self._emit(self._pending, final=True)
            self._pending = b""

    def _emit(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final)
        if text:
            self.collector.add(text)


class Interpreter:
    """One child interpreter running ``python_runner.py`` in its own sandbox; blocking, used
    from a worker thread.

    ``kill`` may be called from any thread while a cell runs: the cell then ends as if the
    child had died (with a PID namespace, everything the cell started dies with it)."""

    def __init__(self, settings: PythonToolSettings, workdir: Path,
                 isolation: Isolation | None = None) -> None:
        self.settings = settings
        self.workdir = workdir
        self.isolation = isolation or Isolation("none")
        self.lock = threading.Lock()  # one cell at a time
        self._state_lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed = False
        self._busy = False
        self._carry = b""  # output written after the previous cell ended

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return not self._killed and (self._proc is None or self._proc.poll() is None)

    def _start(self) -> subprocess.Popen[bytes]:
        with self._state_lock:
            if self._killed:
                raise ToolError("python: the interpreter was stopped before the code could run")
            if self._proc is None:
                python = self.settings.python
                program = shutil.which(python) if os.sep not in python else python
                if program is None or not os.access(program, os.X_OK) or os.path.isdir(program):
                    raise ToolError(f"python: cannot start the interpreter {python!r}: no such "
                                    "program")
                command = [os.path.abspath(program), "-I", str(RUNNER),
                           str(self.settings.memory_mb)]
                sandboxed = wrap_command(
                    command, self.workdir, network=self.settings.network,
                    mode=self.isolation.kind, env=child_environment(self.workdir),
                    readable=[RUNNER], tmpfs_mb=self.settings.memory_mb)
                try:
                    self._proc = start_process(
                        sandboxed.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, cwd=self.workdir, env=sandboxed.env,
                        start_new_session=True,
                    )
                except OSError as err:
                    raise ToolError(f"python: cannot start the interpreter "
                                    f"{self.settings.python!r}: {err.strerror or err}") from err
                assert self._proc.stdin is not None
                os.set_blocking(self._proc.stdin.fileno(), False)
            return self._proc

    def run_cell(self, code: str, timeout_s: float) -> CellOutcome:
        """Run ``code``; the child is killed when it takes longer than ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        proc = self._start()
        collector = OutputCollector(self.settings.max_output_chars)
        sentinel = secrets.token_hex(16)
        scanner = _SentinelScanner(sentinel.encode("ascii"), collector)
        scanner.feed(self._carry)
        request = (json.dumps({"code": code, "sentinel": sentinel}) + "\n").encode("utf-8")
        with self._state_lock:
            self._busy = True
        try:
            response, timed_out = self._exchange(proc, request, scanner, deadline)
        finally:
            with self._state_lock:
                self._busy = False
                if self._killed:
                    self._close_pipes()
        scanner.finish()
        self._carry = scanner.after
        exit_code = None
        if timed_out:
            self.kill()
        elif response is None:  # the child died: reap it and whatever it started
            self.kill()
            exit_code = proc.returncode
        return CellOutcome(collector.text(), bool(response and response.get("ok")), timed_out,
                           exit_code, collector.total, collector.omitted)

    def _exchange(self, proc: subprocess.Popen[bytes], request: bytes,
                  scanner: _SentinelScanner, deadline: float) -> tuple[dict | None, bool]:
        """Send the request, collect output until the marker and the response line.
        Returns (response or None when the child died, timed out)."""
        assert proc.stdin and proc.stdout and proc.stderr
        protocol = b""
        response: dict | None = None
        output_done = protocol_done = False
        exited_at: float | None = None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdin, selectors.EVENT_WRITE, "in")
            selector.register(proc.stdout, selectors.EVENT_READ, "protocol")
            selector.register(proc.stderr, selectors.EVENT_READ, "output")
            while not (output_done and protocol_done):
                now = time.monotonic()
                if now >= deadline:
                    return None, True
                if exited_at is not None and now - exited_at > _DRAIN_GRACE_S:
                    break  # something the child started still holds the output pipe open
                wait = deadline - now
                if exited_at is not None:
                    wait = min(wait, _DRAIN_GRACE_S)
                for key, _mask in selector.select(wait):
                    if key.data == "in":
                        try:
                            written = os.write(key.fd, request)
                        except BlockingIOError:
                            continue
                        except (BrokenPipeError, OSError):
                            written = len(request)  # the child is gone; its EOF follows
                        request = request[written:]
                        if not request:
                            selector.unregister(key.fileobj)
                        continue
                    data = os.read(key.fd, _READ_SIZE)
                    if key.data == "output":
                        scanner.feed(data)
                        if not data or scanner.found:
                            output_done = True
                            selector.unregister(key.fileobj)
                    elif data:
                        protocol += data
                        if b"\n" in protocol:
                            response = _parse_response(protocol.split(b"\n", 1)[0])
                            protocol_done = True
                            selector.unregister(key.fileobj)
                    else:  # the protocol pipe closed: the child has exited
                        protocol_done = True
                        selector.unregister(key.fileobj)
                        exited_at = time.monotonic()
        return response, False

    def kill(self) -> None:
        """Kill the child's whole process group and reap the child (in a bubblewrap sandbox,
        the ``bwrap`` process: its PID namespace and everything in it die with it)."""
        with self._state_lock:
            self._killed = True
            proc = self._proc
            if proc is None:
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if not self._busy:
                self._close_pipes()
        proc.wait()

    def _close_pipes(self) -> None:
        if self._proc is None:
            return
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _parse_response(line: bytes) -> dict:
    """The runner's response; a garbled line (the cell wrote to the channel) counts as failed."""
    try:
        response = json.loads(line)
    except ValueError:
        return {"ok": False}
    return response if isinstance(response, dict) else {"ok": False}


def _format_timeout(seconds: float) -> str:
    return f"{seconds:g}"


def _exit_description(exit_code: int) -> str:
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"was killed by {name}"
    return f"exited with code {exit_code}"


class PythonTool:
    """GPT-OSS's built-in ``python`` tool."""

    namespace = "python"

    def __init__(self, settings: PythonToolSettings | None = None) -> None:
        self.settings = settings or PythonToolSettings()
        self._sessions: dict[str, Interpreter] = {}  # stateful: chat id -> interpreter
        self._running: set[Interpreter] = set()  # stateless calls in progress
        self._temp_dirs: dict[str, Path] = {}  # chat id -> temporary working folder
        self._isolation: Isolation | None = None
        self._unavailable: str | None = None
        clean_stale_workdirs()

    def isolation(self) -> Isolation:
        """The sandbox the code runs in; SandboxUnavailable (one line, ``python: ...``) when
        none is available and the settings do not say ``sandbox: none``."""
        if self._isolation is None and self._unavailable is None:
            try:
                self._isolation = detect(self.settings.sandbox)
            except SandboxUnavailable as err:
                self._unavailable = f"python: {err}"
        if self._isolation is None:
            raise SandboxUnavailable(self._unavailable or "python: no sandbox")
        return self._isolation

    def isolation_summary(self) -> str:
        """One line for the status bar and ``--serve``: the isolation in force, or why the
        tool will not run code."""
        try:
            isolation = self.isolation()
        except SandboxUnavailable as err:
            return f"{err}"
        return f"python sandbox: {isolation.describe(self.settings.network)}"

    def isolation_label(self) -> str:
        """A few words for the status bar."""
        try:
            kind = self.isolation().kind
        except SandboxUnavailable:
            return "python: off, no sandbox"
        return {"bwrap": "python: bubblewrap", "sandbox-exec": "python: sandbox-exec",
                "none": "python: NOT sandboxed"}[kind]

    def model_description(self) -> str:
        """What the model is told about this tool (for the system message's tool section)."""
        mode = ("a stateful Jupyter-like environment: variables and imports persist between "
                "calls" if self.settings.stateful else "a fresh Python process each time: "
                "variables do not persist between calls, but files in the working folder do")
        return (
            "Use this tool to execute Python code in your chain of thought. The code will not be "
            "shown to the user. This tool should be used for internal reasoning, but not for "
            "code that is intended to be visible to the user.\n\n"
            f"When you send a message containing Python code to python, it will be executed in "
            f"{mode}. python will respond with the output of the execution (stdout, stderr and "
            f"the value of a final expression) or time out after "
            f"{_format_timeout(self.settings.timeout_s)} seconds. Internet access may be "
            "unavailable."
        )

    def approval(self, call: ToolInvocation) -> ApprovalRequest | None:
        if self.settings.auto_approve or call.recipient != self.namespace:
            return None
        try:
            code = extract_code(call.arguments)
        except ToolError:
            return None  # nothing will run; ``run`` explains the problem to the model
        return ApprovalRequest(kind="code", title="Run Python code", body=code,
                               language="python")

    async def run(self, call: ToolInvocation) -> ToolResult:
        started = time.perf_counter()
        try:
            if call.recipient != self.namespace:
                raise ToolError(f"python: unknown recipient {call.recipient!r}; call the tool "
                                "as 'python' with the code as the message content")
            code = extract_code(call.arguments)
            key = call.chat_id or ""
            isolation = self.isolation()
            workdir = self._workdir(key)
            interpreter = self._interpreter(key, workdir, isolation)
            outcome = await self._run_in_thread(key, interpreter, code)
        except ToolError as err:
            return ToolResult(str(err), is_error=True, duration_s=time.perf_counter() - started)
        text, is_error = self._result_text(outcome)
        details = {"stateful": self.settings.stateful, "workdir": str(workdir),
                   "isolation": interpreter.isolation.kind,
                   "pid": interpreter.pid, "timed_out": outcome.timed_out,
                   "exit_code": outcome.exit_code, "output_chars": outcome.output_chars,
                   "omitted_chars": outcome.omitted_chars}
        return ToolResult(text, is_error, time.perf_counter() - started, details)

    async def aclose(self) -> None:
        """Kill every child interpreter and remove the temporary working folders."""
        interpreters = [*self._sessions.values(), *self._running]
        temp_dirs = list(self._temp_dirs.values())
        self._sessions.clear()
        self._temp_dirs.clear()

        def close_all() -> None:
            for interpreter in interpreters:
                interpreter.kill()
            for folder in temp_dirs:
                shutil.rmtree(folder, ignore_errors=True)

        await asyncio.to_thread(close_all)

    def forget_chat(self, chat_id: str | None) -> None:
        """Kill the chat's interpreter and remove its temporary folder (the chat is over)."""
        key = chat_id or ""
        interpreter = self._sessions.pop(key, None)
        folder = self._temp_dirs.pop(key, None)
        if interpreter is not None:
            interpreter.kill()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _workdir(self, key: str) -> Path:
        if self.settings.workdir is not None:
            folder = self.settings.workdir.expanduser()
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ToolError(f"python: cannot use the working folder {str(folder)!r}: "
                                f"{err.strerror or err}") from err
            return folder
        if key not in self._temp_dirs:
            self._temp_dirs[key] = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        return self._temp_dirs[key]

    def _interpreter(self, key: str, workdir: Path, isolation: Isolation) -> Interpreter:
        if not self.settings.stateful:
            return Interpreter(self.settings, workdir, isolation)
        interpreter = self._sessions.get(key)
        if interpreter is None or not interpreter.alive:
            interpreter = self._sessions[key] = Interpreter(self.settings, workdir, isolation)
        return interpreter

    async def _run_in_thread(self, key: str, interpreter: Interpreter, code: str) -> CellOutcome:
        """Run the cell off the event loop; a cancelled call kills its interpreter."""
        stateful = self.settings.stateful
        if not stateful:
            self._running.add(interpreter)

        def work() -> CellOutcome:
            with interpreter.lock:
                try:
                    return interpreter.run_cell(code, self.settings.timeout_s)
                finally:
                    if not stateful:
                        interpreter.kill()

        try:
            outcome = await asyncio.to_thread(work)
        except asyncio.CancelledError:
            interpreter.kill()
            raise
        finally:
            self._running.discard(interpreter)
        if stateful and not interpreter.alive and self._sessions.get(key) is interpreter:
            del self._sessions[key]
        return outcome

    def _result_text(self, outcome: CellOutcome) -> tuple[str, bool]:
        output = outcome.output.rstrip("\n")
        lost = ("; the interpreter state was lost (variables and imports of earlier calls are "
                "gone; the next call starts a fresh interpreter)" if self.settings.stateful else "")
        if outcome.timed_out:
            message = f"python: timed out after {_format_timeout(self.settings.timeout_s)} s{lost}"
            if output:
                message += f"\n\nOutput before the timeout:\n{output}"
            return message, True
        if outcome.exit_code is not None:
            message = f"python: the interpreter {_exit_description(outcome.exit_code)}{lost}"
            if output:
                message = f"{output}\n\n{message}"
            return message, True
        return (output or NO_OUTPUT), not outcome.ok


def clean_stale_workdirs(tempdir: str | Path | None = None) -> list[Path]:
    """Remove the temporary working folders (``harmony-python-<pid>-*``) whose process is gone
    (an app killed by SIGKILL cannot clean up). Folders of running processes, of other users
    and of unknown owners are kept. Returns the removed folders."""
    base = Path(tempdir if tempdir is not None else tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        pid = _owner_pid(entry.name)
        if pid is None or not entry.is_dir(follow_symlinks=False) or _process_exists(pid):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _owner_pid(name: str) -> int | None:
    """The pid in ``harmony-python-<pid>-<random>``; None for any other name."""
    if not name.startswith(TEMP_PREFIX):
        return None
    digits, dash, rest = name[len(TEMP_PREFIX):].partition("-")
    if not (dash and rest and digits.isdigit()):
        return None
    return int(digits)


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return True  # not a real owner: keep the folder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process (PermissionError) still counts as running
    return True
