"""Run engine turns from asyncio: admission against a bounded queue, and start errors.

Event delivery is the conversation layer's ``EngineTurn`` (``conversation/engine_turn.py``);
leaving a turn early (a client that disconnected, a server stopping) cancels it, which the
engine honours before its next token step.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from harmony_tui.conversation.engine_turn import EngineTurn
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


class AsyncTurn(EngineTurn):
    """A turn submitted to the engine's shared batch, read from the event loop."""

    def __init__(self, engine: Any, request: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(engine.submit_batched, request, loop)


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
