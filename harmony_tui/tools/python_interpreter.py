"""The python tool's interpreter: one sandboxed ``python -I`` child running cells, and the
collection of its output (capped, decoded, with a sentinel marking each cell's end).

``python_tool.py`` decides when interpreters start and stop; this module talks to one.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harmony_tui.tools.base import ToolError
from harmony_tui.tools.sandbox import (
    Isolation,
    start_process,
    wrap_command,
)

if TYPE_CHECKING:
    from harmony_tui.tools.python_tool import PythonToolSettings

RUNNER = Path(__file__).with_name("python_runner.py")
NO_OUTPUT = "(no output)"
# Environment variables a child may inherit; everything else (API keys, tokens, cloud
# credentials, proxies, PYTHON*) is dropped. ``LC_*`` variables are kept as well.
SAFE_ENV_NAMES = ("PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM")
_READ_SIZE = 65536
_DRAIN_GRACE_S = 0.2  # how long to wait for output still in flight after the child exited
TEMP_PREFIX = "harmony-python-"  # temporary folders are named harmony-python-<pid>-<random>


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


def format_timeout(seconds: float) -> str:
    return f"{seconds:g}"


def exit_description(exit_code: int) -> str:
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"was killed by {name}"
    return f"exited with code {exit_code}"


