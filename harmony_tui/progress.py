"""Progress of long steps (loading a model) on standard error, for the console commands."""

from __future__ import annotations

import sys


class ProgressPrinter:
    """Progress lines on stderr: one updating line on a terminal, sparse lines otherwise."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._last = ""
        self._last_bucket = -1

    def __call__(self, message: str, fraction: float | None) -> None:
        if self._tty:
            sys.stderr.write("\r\033[K" + message)
            sys.stderr.flush()
            self._last = message
            return
        bucket = -1 if fraction is None else int(fraction * 20)
        head = message.split(":")[0]
        if head != self._last or bucket != self._last_bucket:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
            self._last, self._last_bucket = head, bucket

    def done(self) -> None:
        if self._tty and self._last:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._last = ""
