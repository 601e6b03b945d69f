"""The streaming turn's updates are paced by the UI thread's real CPU use (no clock faked)."""

from __future__ import annotations

import time

from harmony_tui.pacing import Pacer


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_costly_updates_wait_longer_and_cheap_ones_come_quickly():
    pacer = Pacer(share=0.1, shortest=0.01, longest=1.0)
    burn(0.03)  # an update that took 30 ms of UI CPU
    pause = pacer.delay()
    assert 0.15 < pause <= 1.0  # 30 ms at a 10 % share: a cycle of ~0.3 s
    for _ in range(30):  # updates that cost nothing: back to the shortest pause
        pause = pacer.delay()
    assert pause == 0.01


def test_the_pause_never_exceeds_the_longest():
    pacer = Pacer(share=0.01, shortest=0.01, longest=0.2)
    burn(0.05)
    assert pacer.delay() == 0.2
