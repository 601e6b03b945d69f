"""Operating-system sandboxes for commands that run model-written code.

Linux: bubblewrap (``bwrap``). Each command gets new user, PID, IPC, UTS, cgroup and network
namespaces (the network only when ``network=True``), a root that holds nothing but the system
folders (``/usr``, ``/bin``, ``/lib*``, ``/etc``) and the programs' own install folders
read-only, a private ``/proc``, a minimal ``/dev``, an empty private ``/tmp`` and home (tmpfs,
size-capped), and only the work folder (plus ``writable``) writable. The user's home, other
processes, the parent's environment and loopback services are out of reach. The environment is
cleared and replaced by ``env``; no capabilities; ``--die-with-parent``. Killing the ``bwrap``
process kills the whole sandbox: its PID namespace's init dies with it, and the kernel kills
every process left in a PID namespace whose init is gone (``setsid``, double forks included).

macOS: ``sandbox-exec`` with a deny-by-default Seatbelt profile: reads of the system folders,
the programs' install folders and the work folder; writes to the work folder only; no network
unless allowed. There is no PID namespace on macOS: processes that leave the process group
(``setsid``) can outlive a timeout there.

``detect`` says which isolation is available (``SandboxUnavailable`` with a one-line message
saying what to install when none is); ``wrap_command`` turns an argv into a sandboxed one;
``start_process`` starts it (from a thread that lives as long as the process: see there).
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harmony_tui.tools.base import ToolError

SandboxMode = Literal["auto", "bwrap", "sandbox-exec", "none"]
Kind = Literal["bwrap", "sandbox-exec", "none"]

SANDBOX_EXEC = "/usr/bin/sandbox-exec"  # a fixed path: never one found on a writable PATH
SANDBOX_HOME = "/home/sandbox"  # the private home inside a bubblewrap sandbox
# System folders a sandbox may read (those that exist); everything else is hidden.
LINUX_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
                      "/nix/store", "/gnu/store")
LINUX_NETWORK_PATHS = ("/run/systemd/resolve",)  # /etc/resolv.conf often points here
MACOS_SYSTEM_PATHS = ("/System", "/usr", "/bin", "/sbin", "/Library", "/private/etc",
                      "/private/var/db/timezone", "/private/var/select", "/opt/homebrew",
                      "/usr/local", "/dev")
INSTALL_HINT = {
    "linux": "install bubblewrap (Debian/Ubuntu: apt install bubblewrap; Fedora: dnf install "
             "bubblewrap)",
    "darwin": "sandbox-exec ships with macOS; it is missing from this system",
}
NONE_HINT = "or set `sandbox: none` in the tool's settings to run code without isolation"
_PROBE_TIMEOUT_S = 10.0


class SandboxUnavailable(ToolError):
    """No sandbox can run here; the message says what to install (one line)."""


@dataclass(frozen=True, slots=True)
class Isolation:
    """The sandbox in force: ``bwrap``, ``sandbox-exec`` or ``none`` (explicitly chosen)."""

    kind: Kind
    executable: str | None = None

    def describe(self, network: bool = False) -> str:
        """A short human description, e.g. ``bubblewrap, no network``."""
        if self.kind == "none":
            return "none (sandbox: none): code runs as you, with your files and network"
        name = "bubblewrap" if self.kind == "bwrap" else "sandbox-exec"
        return f"{name}, {'network allowed' if network else 'no network'}"


@dataclass(frozen=True, slots=True)
class Sandboxed:
    """A command ready for ``start_process(argv, env=env, cwd=workdir, ...)``.

    Pass ``env`` too: inside the sandbox the ``bwrap`` process's own environment is readable
    (``/proc/1/environ``), so it must not be the parent's."""

    argv: list[str]
    env: dict[str, str]
    isolation: Isolation
    workdir: Path


def _hint() -> str:
    return INSTALL_HINT.get(sys.platform, "no sandbox is known for this system")


@functools.cache
def bwrap_options(executable: str) -> frozenset[str]:
    """The options this ``bwrap`` knows (from ``--help``): older releases lack ``--size``
    (0.7), ``--disable-userns`` (0.8), ``--clearenv`` (0.5)."""
    try:
        done = subprocess.run([executable, "--help"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False,
                              env={"PATH": os.defpath})
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    words = (done.stdout + done.stderr).decode("utf-8", "replace").split()
    return frozenset(word for word in words if word.startswith("--"))


@functools.cache
def probe_bwrap(executable: str) -> str | None:
    """None when ``executable`` can build our sandbox here (tried with the very options the
    tool uses), else why not (one line)."""
    program = shutil.which("true", path=os.defpath) or "/bin/true"
    with tempfile.TemporaryDirectory(prefix="harmony-sandbox-probe-") as work:
        env = {"PATH": os.defpath}
        command = bwrap_args(executable, [program], Path(work), env=env)
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=_PROBE_TIMEOUT_S, env=env, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"{executable} did not run ({err})"
    if done.returncode == 0:
        return None
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else f"{executable} exited with status {done.returncode}"


def detect(mode: SandboxMode = "auto") -> Isolation:
    """The isolation ``mode`` gives here; SandboxUnavailable (one line) when it cannot run."""
    if mode == "none":
        return Isolation("none")
    want_bwrap = mode == "bwrap" or (mode == "auto" and sys.platform.startswith("linux"))
    if want_bwrap:
        executable = shutil.which("bwrap")
        if executable is None:
            raise SandboxUnavailable(f"no sandbox: bubblewrap (bwrap) is not installed; "
                                     f"{INSTALL_HINT['linux']}, {NONE_HINT}")
        problem = probe_bwrap(executable)
        if problem is not None:
            raise SandboxUnavailable(f"no sandbox: bubblewrap cannot create one here ({problem});"
                                     f" allow unprivileged user namespaces, {NONE_HINT}")
        return Isolation("bwrap", executable)
    if mode == "sandbox-exec" or (mode == "auto" and sys.platform == "darwin"):
        if not os.access(SANDBOX_EXEC, os.X_OK):
            raise SandboxUnavailable(f"no sandbox: {SANDBOX_EXEC} is missing; {NONE_HINT}")
        return Isolation("sandbox-exec", SANDBOX_EXEC)
    raise SandboxUnavailable(f"no sandbox for {sys.platform}: {_hint()}, {NONE_HINT}")


# -- what a program needs to read ------------------------------------------------------------


def _covers(parent: Path, child: Path) -> bool:
    return child == parent or parent in child.parents


def program_roots(program: str | Path) -> list[Path]:
    """Folders (or the file) a program needs read access to: for ``PREFIX/bin/NAME`` the
    prefix (an interpreter's stdlib and site-packages live there), for a virtual environment
    also its base install (``pyvenv.cfg``'s ``home``). Never ``/`` or a folder holding the
    user's home: such a root shrinks to the program file itself."""
    path = Path(program)
    home = Path.home()
    roots: list[Path] = []
    for candidate in (path.absolute(), Path(os.path.realpath(path))):
        root = candidate.parent.parent if candidate.parent.name == "bin" else candidate
        found = [root, *_venv_bases(root)]
        for item in found:
            if item == Path("/") or _covers(item, home):
                item = candidate
            if item not in roots:
                roots.append(item)
    return roots


def _venv_bases(root: Path) -> list[Path]:
    """The base install of a virtual environment at ``root`` (none for other folders)."""
    config = root / "pyvenv.cfg"
    if not config.is_file():
        return []
    bases = []
    for line in config.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            base = Path(value.strip())
            bases.append(base.parent if base.name == "bin" else base)
    return bases


def _existing(paths: Iterable[str | Path]) -> list[Path]:
    seen: list[Path] = []
    for path in paths:
        absolute = Path(os.path.abspath(path))
        if absolute not in seen and os.path.lexists(absolute):
            seen.append(absolute)
    return seen


# -- bubblewrap --------------------------------------------------------------------------------


def bwrap_args(executable: str, argv: Sequence[str], workdir: Path, *, env: Mapping[str, str],
               network: bool = False, readable: Sequence[Path] = (),
               writable: Sequence[Path] = (), tmpfs_mb: int = 256) -> list[str]:
    """The ``bwrap`` command line that runs ``argv`` in ``workdir`` (see the module doc).
    Options this bwrap lacks are left out (the tmpfs size cap, the ban on nested user
    namespaces); the environment is then still the one Popen is given."""
    known = bwrap_options(executable)
    # A user namespace even for root (--unshare-all only tries one), and none nested inside.
    args = [executable, "--unshare-all", "--unshare-user"]
    if "--disable-userns" in known:
        args.append("--disable-userns")
    if network:
        args.append("--share-net")
    args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox"]
    if "--clearenv" in known:
        args.append("--clearenv")
        for name, value in env.items():
            args += ["--setenv", name, value]
    size = ["--size", str(tmpfs_mb * 1024 * 1024)] if "--size" in known else []
    args += ["--proc", "/proc", "--dev", "/dev",
             *size, "--tmpfs", "/tmp", *size, "--tmpfs", SANDBOX_HOME]
    system = [*LINUX_SYSTEM_PATHS, *(LINUX_NETWORK_PATHS if network else ())]
    for path in system:
        args += ["--ro-bind-try", path, path]
    for path in _existing(readable):
        args += ["--ro-bind", str(path), str(path)]
    for path in _existing([workdir, *writable]):
        args += ["--bind", str(path), str(path)]
    args += ["--chdir", str(workdir), "--remount-ro", "/", "--", *argv]
    return args


# -- Seatbelt (macOS) --------------------------------------------------------------------------


def _sbpl_string(text: str) -> str:
    """A Seatbelt string literal (backslashes and quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def seatbelt_profile(*, readable: Sequence[str], writable: Sequence[str],
                     network: bool = False) -> str:
    """A deny-by-default Seatbelt profile: read ``readable``, read and write ``writable``,
    run programs, no network unless ``network``. Paths must be canonical (``/private/var``,
    not ``/var``): Seatbelt matches resolved paths."""
    def subpaths(paths: Sequence[str]) -> str:
        return "\n".join(f"  (subpath {_sbpl_string(path)})" for path in paths)

    lines = [
        "(version 1)",
        "(deny default)",
        "(allow process-exec)",
        "(allow process-fork)",
        "(allow signal (target same-sandbox))",
        "(allow process-info* (target same-sandbox))",
        "(allow sysctl-read)",
        "(allow ipc-posix-sem)",
        "(allow user-preference-read)",
        '(allow mach-lookup (global-name "com.apple.system.opendirectoryd.libinfo"))',
        "; stat() anywhere (path lookups need it); contents only below",
        "(allow file-read-metadata)",
        "(allow file-read*",
        '  (literal "/")',
        subpaths([*readable, *writable]) + ")",
        "(allow file-write*",
        subpaths(writable),
        '  (literal "/dev/null"))',
    ]
    if network:
        lines += ["(allow network*)", "(allow system-socket)",
                  '(allow mach-lookup (global-name "com.apple.dnssd.service")'
                  ' (global-name "com.apple.SystemConfiguration.configd"))']
    return "\n".join(lines) + "\n"


def seatbelt_args(argv: Sequence[str], workdir: Path, *, network: bool = False,
                  readable: Sequence[Path] = (), writable: Sequence[Path] = ()) -> list[str]:
    """The ``sandbox-exec`` command line that runs ``argv`` with ``seatbelt_profile``."""
    def canonical(paths: Iterable[str | Path]) -> list[str]:
        return [os.path.realpath(path) for path in _existing(paths)]

    readable_paths = canonical([*MACOS_SYSTEM_PATHS, *readable])
    writable_paths = canonical([workdir, *writable])
    profile = seatbelt_profile(readable=readable_paths, writable=writable_paths,
                               network=network)
    return [SANDBOX_EXEC, "-p", profile, "--", *argv]


# -- the entry point ---------------------------------------------------------------------------


def sandbox_env(env: Mapping[str, str], isolation: Isolation, workdir: Path) -> dict[str, str]:
    """``env`` with HOME and TMPDIR pointing where the sandbox lets the command write."""
    result = dict(env)
    if isolation.kind == "bwrap":
        result.update(HOME=SANDBOX_HOME, TMPDIR="/tmp")
    elif isolation.kind == "sandbox-exec":
        result.update(HOME=str(workdir), TMPDIR=str(workdir))
    return result


def wrap_command(argv: Sequence[str], workdir: Path, *, network: bool = False,
                 mode: SandboxMode = "auto", env: Mapping[str, str] | None = None,
                 readable: Sequence[str | Path] = (), writable: Sequence[str | Path] = (),
                 tmpfs_mb: int = 256) -> Sandboxed:
    """``argv`` made to run in the sandbox ``mode`` selects, in ``workdir`` (writable).

    ``argv[0]`` is resolved on PATH (a relative path: from ``workdir``); it and its install
    folder (``program_roots``) become readable, as do ``readable``; ``writable`` adds
    writable folders. ``env`` is the whole environment of the command (nothing else is
    inherited; HOME and TMPDIR are set to the sandbox's private folders). Raises
    SandboxUnavailable (no sandbox here and ``mode`` is not ``none``) or ToolError
    (``argv[0]`` not found). Start the result with ``start_process`` (or at least with
    ``env=result.env`` and ``start_new_session=True``); killing that process ends everything
    inside (Linux)."""
    if not argv:
        raise ToolError("no command to run")
    isolation = detect(mode)
    workdir = Path(os.path.abspath(workdir))
    if os.sep in argv[0]:  # a path: relative ones start from the work folder, as in Popen
        program: str | None = os.path.join(workdir, argv[0])
    else:
        program = shutil.which(argv[0])
    if program is None or not os.access(program, os.X_OK) or os.path.isdir(program):
        raise ToolError(f"cannot run {argv[0]!r}: no such program")
    program = os.path.abspath(program)
    command = [program, *argv[1:]]
    base_env = dict(env if env is not None else {"PATH": os.environ.get("PATH", os.defpath)})
    full_env = sandbox_env(base_env, isolation, workdir)
    if isolation.kind == "none":
        return Sandboxed(command, full_env, isolation, workdir)
    reads = [*program_roots(program), *(Path(p) for p in readable)]
    writes = [Path(p) for p in writable]
    if isolation.kind == "bwrap":
        assert isolation.executable is not None
        wrapped = bwrap_args(isolation.executable, command, workdir, env=full_env,
                             network=network, readable=reads, writable=writes,
                             tmpfs_mb=tmpfs_mb)
    else:
        wrapped = seatbelt_args(command, workdir, network=network, readable=reads,
                                writable=writes)
    return Sandboxed(wrapped, full_env, isolation, workdir)


# -- starting processes ------------------------------------------------------------------------


class _Spawner:
    """Starts processes from one daemon thread that lives as long as the process.

    ``bwrap --die-with-parent`` uses PR_SET_PDEATHSIG, which fires when the *thread* that
    started bwrap exits, not the process: a sandbox started from a short-lived worker thread
    (``asyncio.to_thread`` under one ``asyncio.run``) would be killed with that thread."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[Future, Sequence[str], dict[str, Any]]] = (
            queue.SimpleQueue())
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="sandbox-spawner",
                                                daemon=True)
                self._thread.start()
        future: Future = Future()
        self._requests.put((future, argv, kwargs))
        return future.result()

    def _serve(self) -> None:
        while True:
            future, argv, kwargs = self._requests.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(subprocess.Popen(argv, **kwargs))
            except BaseException as err:  # handed to the caller, who raises it
                future.set_exception(err)


_SPAWNER = _Spawner()


def start_process(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(argv, **kwargs)``, started from a thread that never exits, so a
    sandbox lives until it is killed or this process ends (see ``_Spawner``). Use it for every
    ``wrap_command`` result."""
    return _SPAWNER.popen(argv, **kwargs)
