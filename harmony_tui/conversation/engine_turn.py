"""One engine turn read from asyncio.

The generation thread calls ``EngineTurn._notify`` after each event; it wakes the event loop only
while the reader waits for events (at most one wake-up at a time), and the reader drains every
event queued so far. A reader that is busy (drawing, pacing its updates) costs the generation
thread nothing per token. Leaving a turn early cancels it, which the engine honours before its
next token step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from harmony_tui.engine.events import Event, TurnEnd, TurnStart

Submit = Callable[..., Any]  # Engine.submit / Engine.submit_batched: (request, notify) -> stream


class EngineTurn:
    """A submitted turn read from the event loop (``submit``: the engine's submit method)."""

    def __init__(self, submit: Submit, request: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready = asyncio.Event()
        self._signalled = False
        self._waiting = False  # the reader waits for events: wake it on the next one
        self.ended = False
        self.request = request
        self.stream = submit(request, self._notify)

    def _notify(self, event: Event) -> None:  # generation thread: cheap, never blocks
        if not self._waiting:
            if self._loop.is_closed():  # nobody is reading any more
                self.stream.cancel()
            return
        if not self._signalled:
            self._signalled = True
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop is closed: nobody is reading any more
                self.stream.cancel()

    def _wake(self) -> None:
        self._signalled = False
        self._ready.set()

    async def batches(self, poll: float | None = None) -> AsyncIterator[list[Event]]:
        """Lists of events until ``TurnEnd``; with ``poll``, also an empty list at least every
        ``poll`` seconds, busy or idle, so a reader can check on its client (a non-streamed
        request whose client left is cancelled within ``poll`` seconds, even while tokens
        keep coming)."""
        loop = asyncio.get_running_loop()
        next_poll = None if poll is None else loop.time() + poll
        while not self.ended:
            if next_poll is not None and loop.time() >= next_poll:
                next_poll = loop.time() + poll  # type: ignore[operator]
                yield []
            self._ready.clear()
            events = self.stream.drain()
            if not events:
                self._waiting = True
                events = self.stream.drain()  # an event queued before it saw the flag
            if not events:
                try:
                    if next_poll is None:
                        await self._ready.wait()
                    else:
                        await asyncio.wait_for(self._ready.wait(),
                                               max(next_poll - loop.time(), 0))
                except TimeoutError:
                    pass
                finally:
                    self._waiting = False
                continue
            self._waiting = False
            if any(isinstance(e, TurnEnd) for e in events):
                self.ended = True
            yield events

    async def started(self) -> list[Event]:
        """Events up to and including ``TurnStart`` (or the ``TurnEnd`` that replaced it)."""
        seen: list[Event] = []
        async for events in self.batches():
            seen.extend(events)
            if any(isinstance(e, TurnStart | TurnEnd) for e in events):
                break
        return seen

    def drain(self) -> list[Event]:
        """Whatever arrived and was not read yet (for saving a turn the engine did not end)."""
        return self.stream.drain()

    def cancel(self) -> None:
        if not self.ended:
            self.stream.cancel()
