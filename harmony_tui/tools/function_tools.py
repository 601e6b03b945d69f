"""Function tools declared in the config: each runs a shell command or a Python callable.

A spec names the function, describes its parameters with a JSON Schema object and has exactly one
executor. ``command`` gets the arguments JSON on stdin and its stdout is the result; ``callable``
(``package.module:function``) is called with the arguments as keyword arguments. The model calls
them as ``functions.NAME``; ``FunctionTools`` answers all of them.

A command runs in its own session; on Linux under ``reaper.py``, a subreaper that kills whatever
the command leaves running (also what escaped with ``setsid`` or a double fork) when it exits,
times out or the call is cancelled. Its output is read as it comes and capped (start and end
kept), so a flood neither fills memory nor blocks the pipe.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harmony_tui.engine.messages import FunctionTool
from harmony_tui.tools.base import (
    ApprovalRequest,
    HeadTail,
    ToolError,
    ToolInvocation,
    ToolResult,
    cap_text,
)
from harmony_tui.tools.json_schema_check import json_type, schema_problem
from harmony_tui.tools.sandbox import SandboxMode, wrap_command

NAMESPACE = "functions"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
CALLABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"
MAX_OUTPUT_CHARS = 100_000
STDERR_TAIL_CHARS = 2_000
READ_CHUNK = 64 * 1024
STOP_GRACE_S = 5.0  # how long the reaper gets to kill everything before the group is SIGKILLed
SPAWN_TIMEOUT_S = 60.0  # for the reaper to start the command (the timeout counts from then)
REAPER = Path(__file__).with_name("reaper.py")
USE_REAPER = sys.platform.startswith("linux")


class FunctionToolSpec(BaseModel):
    """One function tool from the config."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=IDENTIFIER_PATTERN, max_length=64)
    description: str = ""
    parameters: dict[str, Any] | None = None
    command: str | list[str] | None = None
    callable: str | None = Field(default=None, pattern=CALLABLE_PATTERN)
    timeout_s: float = Field(default=30.0, gt=0)
    max_output_chars: int = Field(
        default=MAX_OUTPUT_CHARS, ge=1_000,
        description="largest result passed on (a command's output: in bytes); the start and "
                    "the end are kept, with a note of how much was left out")
    cwd: Path | None = None
    sandbox: SandboxMode | None = Field(
        default=None, description="run the command in an OS sandbox (auto, bwrap, "
        "sandbox-exec): only cwd writable, the system read-only, no network unless 'network', "
        "a cleared environment (plus pass_env); none or unset: run it as you would")
    network: bool = Field(default=False, description="with sandbox: allow network access")
    pass_env: list[str] = Field(default_factory=list, description="with sandbox: environment "
                                "variables passed into it (e.g. an API key the command needs)")
    # None: ask before running a command, run a callable silently.
    auto_approve: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _check_parameters(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        kind = value.get("type", "object")
        if kind != "object":
            raise ValueError(f'the parameters schema must have type "object", got {kind!r}')
        if not isinstance(value.get("properties", {}), dict):
            raise ValueError("parameters.properties must be an object mapping names to schemas")
        required = value.get("required", [])
        if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
            raise ValueError("parameters.required must be a list of property names")
        return {"type": "object", **value}

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None and (not value or (isinstance(value, str) and not value.strip())):
            raise ValueError("the command must not be empty")
        return value

    @model_validator(mode="after")
    def _one_executor(self) -> FunctionToolSpec:
        if (self.command is None) == (self.callable is None):
            given = "both" if self.command is not None else "neither"
            raise ValueError(
                f"function {self.name!r} needs exactly one of 'command' or 'callable', got {given}"
            )
        if self.cwd is not None and self.command is None:
            raise ValueError(f"function {self.name!r}: 'cwd' only applies to a 'command'")
        if self.sandbox not in (None, "none") and self.command is None:
            raise ValueError(f"function {self.name!r}: 'sandbox' only applies to a 'command' "
                             "(a callable runs inside the app)")
        return self

    @property
    def asks_approval(self) -> bool:
        """Whether the person is asked before each call."""
        if self.auto_approve is not None:
            return not self.auto_approve
        return self.command is not None

    def command_text(self) -> str:
        """The command as a person would type it."""
        if isinstance(self.command, list):
            return shlex.join(self.command)
        return self.command or ""


def describe_validation_error(err: ValidationError, where: str) -> str:
    """A pydantic error as one line: ``where.field: message`` for each problem."""
    parts = []
    for problem in err.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}{loc}: {message}")
    return "; ".join(parts)


def parse_function_specs(items: Sequence[Mapping[str, Any]],
                         where: str = "functions") -> list[FunctionToolSpec]:
    """Validate raw config entries; ValueError with a one-line message naming the field."""
    specs = []
    for index, item in enumerate(items):
        try:
            specs.append(FunctionToolSpec.model_validate(item))
        except ValidationError as err:
            raise ValueError(describe_validation_error(err, f"{where}[{index}]")) from None
    return specs


def resolve_callable(path: str) -> Callable[..., Any]:
    """Import ``package.module:function`` (the attribute may be dotted); ValueError if it fails."""
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as err:  # an import may fail in any way
        raise ValueError(f"cannot import module {module_name!r} ({type(err).__name__}: {err})"
                         ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{path!r} is a {type(target).__name__}, not a function")
    return target


# --- argument validation (a small subset of JSON Schema) ------------------------------------


def _tail(text: str, limit: int = STDERR_TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _result_text(value: Any, recipient: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        raise ToolError(f"{recipient} returned a {type(value).__name__}, which is neither a str "
                        "nor JSON-serialisable") from None


CommandWrapper = Callable[[list[str], FunctionToolSpec], Any]
"""Turns a command's argv into what to run, e.g. inside a sandbox: a new argv (``bwrap ... --
argv``), or an object with ``argv`` and ``env`` (such as ``sandbox.wrap_command``'s
``Sandboxed``), whose ``env`` then replaces the inherited environment."""


def _wrapped(result: Any) -> tuple[list[str], dict[str, str] | None]:
    """A wrapper's result as (argv, env or None to inherit)."""
    if hasattr(result, "argv"):
        env = getattr(result, "env", None)
        return list(result.argv), dict(env) if env is not None else None
    return list(result), None


def sandboxed_command(argv: list[str], spec: FunctionToolSpec) -> Any:
    """``argv`` as is, or (``spec.sandbox`` set) wrapped in that sandbox with ``spec.cwd`` (else
    the current folder) writable and only PATH, LANG and ``pass_env`` in the environment.
    SandboxUnavailable (a ToolError, one line) when the sandbox cannot run here."""
    if spec.sandbox is None:
        return argv
    names = ("PATH", "LANG", "LC_ALL", *spec.pass_env)
    env = {name: os.environ[name] for name in names if name in os.environ}
    return wrap_command(argv, spec.cwd or Path.cwd(), network=spec.network, mode=spec.sandbox,
                        env=env)


def command_argv(spec: FunctionToolSpec) -> list[str]:
    """The argv of a spec's command: the list as given, or ``/bin/sh -c TEXT``."""
    if isinstance(spec.command, list):
        return list(spec.command)
    return ["/bin/sh", "-c", spec.command or ""]


def reaper_argv(argv: list[str], status_fd: int) -> list[str]:
    """``argv`` run by the reaper, which reports the start on ``status_fd``."""
    return [sys.executable, "-I", "-S", str(REAPER), str(os.getpid()), str(status_fd), *argv]


async def _read_to_end(fd: int) -> bytes:
    """Everything written to the pipe ``fd`` until its writer closes it (then ``fd`` is
    closed)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    try:
        return await reader.read()
    finally:
        transport.close()


def _signal_stop(process: asyncio.subprocess.Process) -> None:
    """Ask the command to stop with everything it started: SIGTERM to the reaper (it kills all
    descendants), or SIGKILL to the process group where there is no reaper."""
    if process.returncode is not None:
        return
    try:
        if USE_REAPER:
            os.kill(process.pid, signal.SIGTERM)
        else:
            _kill_group(process)
    except ProcessLookupError:
        pass


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the command's process group (it leads its own session)."""
    if process.returncode is not None:
        return
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            process.kill()
    except ProcessLookupError:
        pass


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Stop a command and wait (bounded) until it is gone: the reaper's clean-up first, then
    SIGKILL to the group if that takes longer than ``STOP_GRACE_S``."""
    _signal_stop(process)
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        return
    except TimeoutError:
        _kill_group(process)
    try:  # wait() also waits for the pipes to close: a stray holder must not hang us
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        pass


async def _feed(stdin: asyncio.StreamWriter | None, payload: bytes) -> None:
    """Write the arguments to the command's stdin and close it (a command may not read it)."""
    if stdin is None:
        return
    try:
        stdin.write(payload)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass


async def _drain(stream: asyncio.StreamReader | None, sink: HeadTail) -> None:
    """Read a pipe to its end, keeping only what ``sink`` keeps."""
    if stream is None:
        return
    while chunk := await stream.read(READ_CHUNK):
        sink.add(chunk)


class FunctionTools:
    """All config function tools, answering ``functions.NAME`` recipients."""

    namespace = NAMESPACE

    def __init__(self, specs: Iterable[FunctionToolSpec], *,
                 wrap_command: CommandWrapper | None = None) -> None:
        """``wrap_command`` (see ``CommandWrapper``) rewrites each command before it runs; by
        default a spec with ``sandbox`` runs in it (``sandboxed_command``). The reaper stays
        outside, so the timeout still stops everything."""
        self.wrap_command = wrap_command or sandboxed_command
        self._specs: dict[str, FunctionToolSpec] = {}
        self._callables: dict[str, Callable[..., Any]] = {}
        self._running: set[asyncio.subprocess.Process] = set()
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"function tool {spec.name!r} is defined twice")
            self._specs[spec.name] = spec
            if spec.callable is not None:
                try:
                    self._callables[spec.name] = resolve_callable(spec.callable)
                except ValueError as err:
                    raise ValueError(f"function tool {spec.name!r}: callable: {err}") from None

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def declarations(self) -> list[FunctionTool]:
        """What the model is told about each function."""
        return [FunctionTool(s.name, s.description, s.parameters) for s in self._specs.values()]

    def handles(self, recipient: str) -> bool:
        return self._spec_for(recipient) is not None

    def _spec_for(self, recipient: str) -> FunctionToolSpec | None:
        prefix, _, name = recipient.partition(".")
        return self._specs.get(name) if prefix == NAMESPACE else None

    def approval(self, call: ToolInvocation) -> ApprovalRequest | None:
        spec = self._spec_for(call.recipient)
        if spec is None or not spec.asks_approval:
            return None
        try:
            arguments = json.dumps(call.json_arguments(), indent=2, ensure_ascii=False)
        except ToolError:
            arguments = call.arguments
        if spec.command is not None:
            where = f"\n(in {spec.cwd})" if spec.cwd else ""
            body = f"$ {spec.command_text()}{where}\n\nstdin:\n{arguments}"
        else:
            body = f"{spec.callable}(**arguments)\n\narguments:\n{arguments}"
        return ApprovalRequest("code", f"Run function {spec.name}", body)

    async def run(self, call: ToolInvocation) -> ToolResult:
        started = time.perf_counter()
        try:
            spec = self._spec_for(call.recipient)
            if spec is None:
                known = ", ".join(f"{NAMESPACE}.{n}" for n in self._specs) or "none configured"
                raise ToolError(f"unknown function {call.recipient!r}; known functions: {known}")
            arguments = call.json_arguments()
            if not isinstance(arguments, dict):
                raise ToolError(f"{call.recipient}: arguments must be a JSON object, got "
                                f"{json_type(arguments)}")
            problem = schema_problem(arguments, spec.parameters)
            if problem:
                raise ToolError(f"{call.recipient}: {problem}")
            if spec.command is not None:
                result = await self._run_command(spec, arguments, call.recipient)
            else:
                result = await self._run_callable(spec, arguments, call.recipient)
        except ToolError as err:
            result = ToolResult(str(err), is_error=True)
        return ToolResult(result.text, result.is_error, time.perf_counter() - started,
                          result.details)

    async def _run_command(self, spec: FunctionToolSpec, arguments: dict[str, Any],
                           recipient: str) -> ToolResult:
        argv, env = command_argv(spec), None
        if self.wrap_command is not None:
            argv, env = _wrapped(self.wrap_command(argv, spec))
        where = f" in {spec.cwd}" if spec.cwd else ""
        status_fd = write_fd = -1
        if USE_REAPER:
            status_fd, write_fd = os.pipe()
            argv = reaper_argv(argv, write_fd)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=spec.cwd, env=env, start_new_session=True,
                pass_fds=(write_fd,) if USE_REAPER else ())
        except OSError as err:
            if USE_REAPER:
                os.close(status_fd)
            raise ToolError(f"{recipient}: cannot run {spec.command_text()!r}{where}: "
                            f"{err.strerror or err}") from None
        finally:
            if USE_REAPER:
                os.close(write_fd)
        self._running.add(process)
        out = HeadTail(spec.max_output_chars)
        err = HeadTail(STDERR_TAIL_CHARS + 1, head_share=0)
        payload = json.dumps(arguments, ensure_ascii=False).encode()
        io = [asyncio.ensure_future(_feed(process.stdin, payload)),
              asyncio.ensure_future(_drain(process.stdout, out)),
              asyncio.ensure_future(_drain(process.stderr, err))]
        if USE_REAPER:  # the timeout counts from the command's start, not the reaper's
            problem = await self._started(process, status_fd, io)
            if problem:
                raise ToolError(f"{recipient}: cannot run {spec.command_text()!r}{where}: "
                                f"{problem}")
        try:
            async with asyncio.timeout(spec.timeout_s):
                # asyncio.wait leaves the readers running when the timeout strikes: a paused
                # pipe would otherwise keep process.wait() from ever returning
                done, _ = await asyncio.wait(io)
                for task in done:
                    task.result()
                await process.wait()
        except TimeoutError:
            await _stop(process)
            raise ToolError(f"{recipient}: the command did not finish within {spec.timeout_s:g}s"
                            " and was stopped") from None
        except BaseException:  # cancelled: the command must not outlive the call
            _signal_stop(process)
            asyncio.get_running_loop().call_later(STOP_GRACE_S, _kill_group, process)
            raise
        finally:
            for task in io:
                task.cancel()
            self._running.discard(process)
        err_text = err.text()
        output = out.text()
        details = {"exit_code": process.returncode, "stderr": _tail(err_text),
                   "output_bytes": out.total}
        if process.returncode != 0:
            status = (f"was killed by signal {-process.returncode}" if process.returncode < 0
                      else f"exited with status {process.returncode}")
            tail = _tail(err_text) or _tail(output) or "(no output)"
            return ToolResult(f"{recipient}: the command {status}: {tail}", True, details=details)
        return ToolResult(output, details=details)

    async def _started(self, process: asyncio.subprocess.Process, status_fd: int,
                       io: list[asyncio.Future[None]]) -> str:
        """Wait for the reaper's word that the command runs: '' if it does, else why not (the
        reaper is then stopped)."""
        try:
            async with asyncio.timeout(SPAWN_TIMEOUT_S):
                status = (await _read_to_end(status_fd)).decode(errors="replace")
        except BaseException:
            status = "error: the command did not start"
            await _stop(process)
            raise
        finally:
            if status != "ok":
                for task in io:
                    task.cancel()
                self._running.discard(process)
        if status == "ok":
            return ""
        await _stop(process)
        return status.removeprefix("error: ") or "the command did not start"

    async def _run_callable(self, spec: FunctionToolSpec, arguments: dict[str, Any],
                            recipient: str) -> ToolResult:
        function = self._callables[spec.name]
        try:
            async with asyncio.timeout(spec.timeout_s):
                if inspect.iscoroutinefunction(function):
                    value = await function(**arguments)
                else:  # a thread keeps a slow function from freezing the caller's loop
                    value = await asyncio.to_thread(function, **arguments)
                if inspect.isawaitable(value):
                    value = await value
        except TimeoutError:
            raise ToolError(f"{recipient}: {spec.callable} did not return within "
                            f"{spec.timeout_s:g}s") from None
        except Exception as err:
            raise ToolError(f"{recipient}: {spec.callable} raised {type(err).__name__}: {err}"
                            ) from None
        return ToolResult(cap_text(_result_text(value, recipient), spec.max_output_chars))

    async def aclose(self) -> None:
        """Stop commands still running, and what they started."""
        running = list(self._running)
        self._running.clear()
        await asyncio.gather(*(_stop(process) for process in running))
