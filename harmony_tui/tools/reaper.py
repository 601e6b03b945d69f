"""Runs one function-tool command so that nothing it starts outlives it (Linux).

Started as ``python -I -S reaper.py PARENT_PID STATUS_FD ARGV...`` in a new session, with the
command's stdin, stdout and stderr. It

- becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``): descendants that leave the process
  group (``setsid``, ``setpgid``, a double fork) are re-parented to it, not to init;
- asks for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so a crashed app leaves nothing;
- spawns the command (signal mask and SIGPIPE back to the defaults) and reports on STATUS_FD:
  ``ok`` once it runs (the caller's timeout starts then), or ``error: REASON`` (exit status 127)
  when it cannot be started;
- when the command exits, or on SIGTERM/SIGHUP/SIGINT (the tool's timeout, a cancelled call),
  SIGKILLs every descendant still running (found through ``/proc``) until none is left;
- exits as the command did: the same exit status, or killed by the same signal.

Standard library only, no imports from the package: it runs with ``-I -S`` for a fast start.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
WAITED = {signal.SIGCHLD, *STOP_SIGNALS}
KILL_POLL_S = 0.005


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def original_environment() -> dict[bytes, bytes]:
    """The environment this process was started with, as given (``os.environ`` may have
    gained ``LC_CTYPE`` from Python's C-locale coercion)."""
    with open("/proc/self/environ", "rb") as file:
        entries = file.read().split(b"\0")
    return dict(entry.split(b"=", 1) for entry in entries if b"=" in entry)


def live_descendants(root: int) -> list[int]:
    """Every process below ``root`` that is not a zombie, from ``/proc/*/stat``."""
    children: dict[int, list[tuple[int, bool]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                fields = file.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append((int(name), fields[0] != b"Z"))
    found: list[int] = []
    stack = [root]
    while stack:
        for pid, alive in children.get(stack.pop(), ()):
            if alive:
                found.append(pid)
            stack.append(pid)
    return found


class Reaper:
    """The command, its exit status, and the kill-everything-then-reap loop."""

    def __init__(self) -> None:
        self.command_pid = 0
        self.status: int | None = None
        self.killing = False

    def spawn(self, argv: list[str]) -> None:
        self.command_pid = os.posix_spawnp(
            argv[0], argv, original_environment(), setsigmask=(),
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *STOP_SIGNALS, signal.SIGCHLD))

    def reap(self) -> bool:
        """Collect every exited child; False when no child is left at all."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.command_pid:
                self.status = status
                self.killing = True  # the command is done: what it left behind goes too

    def kill_descendants(self) -> None:
        for pid in live_descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def run(self) -> None:
        while True:
            if not self.reap():
                return
            if self.killing:
                self.kill_descendants()
                info = signal.sigtimedwait(WAITED, KILL_POLL_S)
            else:
                info = signal.sigwaitinfo(WAITED)
            if info is not None and info.si_signo != signal.SIGCHLD:
                self.killing = True

    def exit(self) -> None:
        status = self.status
        if status is not None and os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # die as it did, without a core
            with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP refuse this
                signal.signal(number, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {number})
            os.kill(os.getpid(), number)
            os._exit(128 + number)
        os._exit(os.waitstatus_to_exitcode(status) if status is not None else 128 + 15)


def main(argv: list[str]) -> None:
    parent, status_fd, command = int(argv[0]), int(argv[1]), argv[2:]
    os.set_inheritable(status_fd, False)  # the command must not hold it open
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(128 + signal.SIGTERM)
    reaper = Reaper()
    try:
        reaper.spawn(command)
    except OSError as err:
        os.write(status_fd, f"error: {err.strerror or err}".encode())
        os._exit(127)
    os.write(status_fd, b"ok")
    os.close(status_fd)
    os.close(0)  # the command alone reads stdin: its EOF must not wait for us
    reaper.run()
    reaper.exit()


if __name__ == "__main__":
    main(sys.argv[1:])
