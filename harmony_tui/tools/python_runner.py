"""The program that runs inside the python tool's child interpreter (standard library only).

Started as ``python -I python_runner.py MEMORY_MB``. It sets its own memory limit, then serves
cells over JSON lines: a request ``{"code": ..., "sentinel": ...}`` arrives on the original
stdin, the cell runs like a Jupyter cell (stdout + stderr, then the repr of a final bare
expression), the sentinel is written to the output stream to mark the cell's end, and a response
``{"ok": bool}`` goes out on the original stdout. During a cell, file descriptors 1 and 2 both go
to the output pipe (the parent's view of stderr) and fd 0 reads /dev/null, so neither the cell
nor its subprocesses can touch the protocol channel.

This file runs under whatever interpreter the person configured: keep it importable by
Python 3.8 and free of harmony_tui imports (``-I`` keeps the package off ``sys.path``).
"""

from __future__ import annotations

import ast
import builtins
import json
import linecache
import os
import sys
import traceback
import types

_THIS_FILE = os.path.abspath(__file__)


def limit_memory(memory_mb: int) -> None:
    """Cap the address space (Linux enforces RLIMIT_AS; macOS accepts but ignores it, so
    RLIMIT_DATA is tried there as well). Also disable core dumps. Soft and hard limits are both
    set before any cell runs, so a cell cannot raise them again (only a process with
    CAP_SYS_RESOURCE outside a sandbox could)."""
    import resource

    limit = memory_mb * 1024 * 1024
    names = ["RLIMIT_AS"] + (["RLIMIT_DATA"] if sys.platform == "darwin" else [])
    for name in names:
        which = getattr(resource, name, None)
        if which is None:
            continue
        try:
            _soft, hard = resource.getrlimit(which)
            capped = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
            resource.setrlimit(which, (capped, capped))
        except (ValueError, OSError):
            pass  # not supported on this platform
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass


def take_protocol_channel() -> tuple[object, object]:
    """Move the protocol pipes off fds 0/1; point fd 0 at /dev/null and fd 1 at the output."""
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    responses = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(encoding="utf-8", errors="backslashreplace", line_buffering=True)
    return requests, responses


def fresh_main_module() -> dict:
    """A new ``__main__`` module whose namespace the cells share (so pickling works)."""
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    return module.__dict__


def _user_traceback(err: BaseException) -> types.TracebackType | None:
    """The traceback without this file's frames."""
    tb = err.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == _THIS_FILE:
        tb = tb.tb_next
    return tb


def _print_exception(err: BaseException) -> None:
    sys.stdout.flush()
    traceback.print_exception(type(err), err, _user_traceback(err))
    sys.stderr.flush()


def _run_code(code: object, namespace: dict) -> object:
    """Run a compiled cell part; top-level ``await`` gets its own event loop."""
    result = eval(code, namespace)
    if getattr(code, "co_flags", 0) & 0x80:  # CO_COROUTINE: the cell used top-level await
        import asyncio

        result = asyncio.run(result)
    return result


def run_cell(source: str, filename: str, namespace: dict) -> bool:
    """Run one cell; print the final expression's repr when not None. False on an error."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
    try:
        tree = ast.parse(source, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        _run_code(compile(tree, filename, "exec", flags=flags), namespace)
        if last is not None:
            value = _run_code(compile(last, filename, "eval", flags=flags), namespace)
            if value is not None:
                namespace["_"] = value
                print(repr(value))
    except SystemExit as err:
        if err.code in (None, 0):
            return True
        _print_exception(err)
        return False
    except BaseException as err:
        _print_exception(err)
        return False
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return True


def serve(requests, responses) -> None:
    """Answer cell requests until stdin closes."""
    namespace = fresh_main_module()
    for number, line in enumerate(requests, start=1):
        request = json.loads(line)
        ok = run_cell(request["code"], f"<cell {number}>", namespace)
        os.write(2, request["sentinel"].encode("ascii"))
        responses.write(json.dumps({"ok": ok}) + "\n")
        responses.flush()


def main() -> None:
    limit_memory(int(sys.argv[1]))
    requests, responses = take_protocol_channel()
    serve(requests, responses)


if __name__ == "__main__":
    main()
