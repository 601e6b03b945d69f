"""How often the app shows a streaming turn: often when showing is cheap, less often when it is
not, so that drawing never takes more than a set share of the CPU from generation.

The UI thread's CPU time (``time.thread_time``: event handling, layout and rendering all run
on it) is measured between two updates; the pause before the next one is stretched until that
work is at most ``share`` of the wall time. Key presses are handled as they come: only the
turn's updates wait.
"""

from __future__ import annotations

import time

BATCH_SECONDS = 0.05  # the shortest pause between two updates of a streaming turn
MAX_BATCH_SECONDS = 0.5  # the longest (text still moves twice a second)
UI_SHARE = 0.05  # the most of one core that showing the turn may take (it is taken from generation)


class Pacer:
    """``delay()`` after each update: the pause before the next one."""

    def __init__(self, share: float = UI_SHARE, shortest: float = BATCH_SECONDS,
                 longest: float = MAX_BATCH_SECONDS) -> None:
        self.share, self.shortest, self.longest = share, shortest, longest
        self._cpu = time.thread_time()
        self._wall = time.monotonic()
        self._cost = 0.0  # smoothed UI CPU seconds per update
        self._pause = 0.0  # the last pause returned

    def delay(self) -> float:
        cpu, wall = time.thread_time(), time.monotonic()
        used, elapsed = cpu - self._cpu, wall - self._wall
        self._cpu, self._wall = cpu, wall
        self._cost = used if not self._cost else 0.7 * self._cost + 0.3 * used
        busy = max(0.0, elapsed - self._pause)  # the part of the cycle that was not a pause
        self._pause = min(self.longest, max(self.shortest, self._cost / self.share - busy))
        return self._pause
