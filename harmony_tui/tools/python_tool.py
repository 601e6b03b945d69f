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
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harmony_tui.tools.base import ApprovalRequest, ToolError, ToolInvocation, ToolResult
from harmony_tui.tools.python_interpreter import (  # noqa: F401  (re-exported for tests)
    NO_OUTPUT,
    TEMP_PREFIX,
    CellOutcome,
    Interpreter,
    OutputCollector,
    child_environment,
    exit_description,
    format_timeout,
)
from harmony_tui.tools.sandbox import (
    Isolation,
    SandboxMode,
    SandboxUnavailable,
    detect,
)


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
            f"{format_timeout(self.settings.timeout_s)} seconds. Internet access may be "
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
            message = f"python: timed out after {format_timeout(self.settings.timeout_s)} s{lost}"
            if output:
                message += f"\n\nOutput before the timeout:\n{output}"
            return message, True
        if outcome.exit_code is not None:
            message = f"python: the interpreter {exit_description(outcome.exit_code)}{lost}"
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
