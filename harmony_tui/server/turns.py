"""Run engine turns from asyncio: admission against a bounded queue, and event delivery.

The generation thread calls ``AsyncTurn.notify`` after each event; it schedules at most one
wake-up of the event loop at a time, and the reader drains every event queued so far. Leaving a
turn early (a client that disconnected, a server stopping) cancels it, which the engine honours
before its next token step.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from harmony_tui.engine.events import Event, TurnEnd, TurnStart
from harmony_tui.server.errors import APIError


class Admission:
    """Counts generation requests in flight and refuses more than ``limit`` (429)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def acquire(self) -> None:
        with self._lock:
            if self._count >= self.limit:
                raise APIError(429, f"the server is busy: {self._count} requests are already "
                               f"running or queued (at most {self.limit}); retry shortly",
                               code="queue_full", headers={"Retry-After": "1"})
            self._count += 1

    def release(self) -> None:
        with self._lock:
            self._count = max(0, self._count - 1)


class AsyncTurn:
    """A submitted turn read from the event loop."""

    def __init__(self, engine: Any, request: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready = asyncio.Event()
        self._signalled = False
        self.ended = False
        self.stream = engine.submit_batched(request, self._notify)

    def _notify(self, event: Event) -> None:  # generation thread
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
                if next_poll is None:
                    await self._ready.wait()
                    continue
                try:
                    await asyncio.wait_for(self._ready.wait(), max(next_poll - loop.time(), 0))
                except TimeoutError:
                    pass
                continue
            if isinstance(events[-1], TurnEnd) or any(isinstance(e, TurnEnd) for e in events):
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

    def cancel(self) -> None:
        if not self.ended:
            self.stream.cancel()


def raise_for_start(events: list[Event]) -> None:
    """An API error when the turn ended before it started (bad prompt, context too long)."""
    end = next((e for e in events if isinstance(e, TurnEnd)), None)
    if end is None or any(isinstance(e, TurnStart) for e in events):
        return
    if end.error_code == "context_length_exceeded":
        raise APIError(400, end.error or "the prompt does not fit in the context window",
                       param="messages", code="context_length_exceeded")
    if end.reason == "cancelled":
        raise APIError(503, "the request was cancelled before it started (server stopping)",
                       code="cancelled")
    if end.error == "no model is loaded":
        raise APIError(503, "no model is loaded yet; retry when /health reports a model",
                       code="model_not_loaded")
    if end.error_code == "invalid_request":  # the engine refused this request's own input
        raise APIError(400, end.error or "the request cannot be generated", type=None)
    raise APIError(400 if end.error and "outside the vocabulary" in end.error else 500,
                   f"generation failed: {end.error}", type=None)
