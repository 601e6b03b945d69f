"""SIGTERM and SIGHUP for the app: save the running turn and exit, even when the terminal is gone.

``ExitSignals`` routes the signals to a callback on the app's event loop (Unix only; elsewhere,
or off the main thread, nothing is installed) and puts the previous handlers back afterwards.

When the terminal closes (SIGHUP after a hang-up), every write to it fails with EIO. Textual's
output thread dies on the first such write, and once its queue is full every later write, the
terminal restore at exit included, blocks forever. ``Terminal.detach_if_lost`` points the
terminal's file descriptors at ``/dev/null`` and gives the driver a live output thread, so the app
can save and exit normally.

``RaiseOnExitSignals`` is the same for ``generate``: the signals raise ``Terminated`` in the
main thread, where the partial turn is saved as for Ctrl+C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

EXIT_SIGNALS = ("SIGTERM", "SIGHUP")


class ExitSignals:
    """Calls ``callback(signal_number)`` on the event loop for SIGTERM and SIGHUP."""

    def __init__(self, callback: Callable[[int], None]) -> None:
        self.callback = callback
        self._previous: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for name in EXIT_SIGNALS:
            number = getattr(signal, name, None)
            if number is None:
                continue
            try:
                previous = signal.getsignal(number)
                loop.add_signal_handler(number, self.callback, number)
            except (NotImplementedError, RuntimeError, ValueError):  # not Unix / main thread
                continue
            self._previous[number] = previous

    def remove(self) -> None:
        """Put back the handlers the signals had before ``install``."""
        loop, self._loop = self._loop, None
        for number, previous in self._previous.items():
            with contextlib.suppress(Exception):
                if loop is not None:
                    loop.remove_signal_handler(number)
                signal.signal(number, previous)
        self._previous.clear()


class Terminal:
    """The standard file descriptors that were a terminal at start, and whether it was lost."""

    def __init__(self) -> None:
        self.fds = [fd for fd in (0, 1, 2) if _isatty(fd)]
        self.lost = False

    def detach_if_lost(self, driver: Any) -> bool:
        """If the terminal is gone, send all further I/O to ``/dev/null``; True if it is gone.

        A hung-up terminal is no longer a tty (its ioctls fail with EIO).
        """
        gone = [fd for fd in self.fds if not _isatty(fd)]
        if gone:
            self.lost = True
            self.fds = [fd for fd in self.fds if fd not in gone]
            null = os.open(os.devnull, os.O_RDWR)
            try:
                for fd in gone:
                    with contextlib.suppress(OSError):
                        os.dup2(null, fd)
            finally:
                os.close(null)
            # No more keys can come: end Textual's input thread, which would otherwise spin on
            # an input that is always readable with nothing to read.
            exit_event = getattr(driver, "exit_event", None)
            if exit_event is not None:
                exit_event.set()
        if self.lost:
            _revive_writer(driver)  # it may have died on a write just before
        return self.lost


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _revive_writer(driver: Any) -> None:
    """Replace Textual's output thread if a failed write killed it (Textual internals)."""
    writer = getattr(driver, "_writer_thread", None)
    if writer is None or writer.is_alive():
        return
    with contextlib.suppress(Exception):
        from textual.drivers._writer_thread import WriterThread

        fresh = WriterThread(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the app
        fresh.start()
        driver._writer_thread = fresh


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: raised in the main thread, as Ctrl+C raises KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class RaiseOnExitSignals:
    """While installed, SIGTERM and SIGHUP raise ``Terminated`` in the main thread (once; later
    ones are ignored). Inside ``held()`` a signal waits until the block ends, so a save in
    progress is never cut short. Off the main thread nothing is installed.
    """

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._raised = False
        self._holding = False
        self._pending: int | None = None
        if threading.current_thread() is not threading.main_thread():
            return
        for name in EXIT_SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                self._previous[number] = signal.signal(number, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self._holding:
            self._pending = self._pending or signum
        elif not self._raised:
            self._raised = True
            raise Terminated(signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            if self._pending is not None and not self._raised:
                self._raised = True
                raise Terminated(self._pending)

    def restore(self) -> None:
        """Put back the handlers the signals had before."""
        for number, old in self._previous.items():
            signal.signal(number, old)
        self._previous.clear()


def quiet_lost_output() -> None:
    """Flush stdout and stderr; one whose terminal is gone is pointed at ``/dev/null``.

    Otherwise Python's own flush at exit fails again and changes the exit status.
    """
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            with contextlib.suppress(OSError, ValueError):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, stream.fileno())
                os.close(null)
                stream.flush()
