"""An API request's turn, run by the shared conversation loop and shown as the client sees it.

The loop itself (sub-turns, server tools run without approval, refusals, the call limit) is
``conversation/``; the routing of an API request's calls is ``ApiCalls``: the server's built-in
tools (``--server-tools``) run, the request's own function tools go back to the client, anything
else is answered "not available" to the model (``MAX_REFUSED`` times at most).

What this module adds is the client's view: hidden calls and their results never reach it, the
reasoning of every sub-turn does (``reasoning_separator`` before a later sub-turn's), and one
``Stats`` summing the sub-turns comes before the last ``TurnEnd``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from harmony_tui.conversation import (
    ApiCalls,
    Conversation,
    MemoryTranscript,
    SubTurnStarted,
    TurnFinished,
)
from harmony_tui.conversation.routing import MAX_REFUSED, is_builtin, refusal
from harmony_tui.conversation.stats import merge_stats
from harmony_tui.engine.events import Event, MessageDone, Stats, TextDelta, ToolCall, TurnStart
from harmony_tui.engine.messages import PromptSetup
from harmony_tui.server.errors import log

__all__ = ["MAX_REFUSED", "ToolLoopTurn", "client_recipients", "declare", "is_builtin",
           "merge_stats", "refusal"]


def declare(tools: Any, setup: PromptSetup, tool_choice: Any) -> PromptSetup:
    """``setup`` with the server's tools declared; the model is never told of a built-in tool
    the server does not run. ``tool_choice: "none"`` declares no tool at all."""
    if tool_choice == "none":
        return dataclasses.replace(setup, builtin_tools=(), function_tools=())
    served = tuple(name for name in setup.builtin_tools
                   if tools is not None and getattr(tools, name, None) is not None)
    setup = dataclasses.replace(setup, builtin_tools=served)
    return setup if tools is None else tools.declare(setup)


def client_recipients(setup: PromptSetup) -> frozenset[str]:
    """The recipients whose calls go back to the client: its declared function tools."""
    return frozenset(f"functions.{tool.name}" for tool in setup.function_tools)


class ToolLoopTurn:
    """An API request's turn as the client sees it.

    Read like ``EngineTurn``: ``batches(poll)`` yields lists of events ending with one
    ``TurnEnd`` (preceded by the summed ``Stats``; its ``tool_calls`` only those the client
    sees); ``cancel()`` leaves the turn (stops generation or a running tool) and forgets the
    request's tool state. ``first`` is the first sub-turn, submitted and started by the caller
    (``early``: its events read so far); ``submit`` submits later ones.
    """

    def __init__(self, first: Any, early: list[Event], request: Any, tools: Any,
                 submit: Callable[..., Any], *, reasoning_separator: str = "",
                 client_tools: frozenset[str] | None = None) -> None:
        self.ended = False
        self.chat_id = f"api-{uuid.uuid4().hex[:16]}"  # per-request state of stateful tools
        self._first, self._early = first, list(early)
        self._request = request
        self._tools = tools
        self._calls = ApiCalls(tools, client_recipients(request.setup) if client_tools is None
                               else client_tools)
        self._conversation = Conversation(submit, MemoryTranscript(request.messages), tools,
                                          policy=self._calls, chat_id=self.chat_id)
        self._separator = reasoning_separator
        self._subturn = 0
        self._reasoned = False  # an earlier sub-turn sent reasoning
        self._needs_separator = False
        self._closed = False

    async def batches(self, poll: float | None = None) -> AsyncIterator[list[Event]]:
        """Lists of events until the final ``TurnEnd``; an empty list every ``poll`` idle
        seconds (also while a tool runs)."""
        if self.ended or self._closed:
            return
        turns = self._conversation.run_turn(self._request, first=self._first,
                                            early=self._early, poll=poll)
        try:
            async for events in turns:
                out = self._sift(events)
                if out or (poll is not None and not events):
                    yield out
                if self.ended:
                    return
        finally:
            await turns.aclose()

    def _sift(self, events: list[Event]) -> list[Event]:
        """Drop what the client must not see (the server's tool calls and tool events, a later
        sub-turn's start, per-sub-turn stats); the end becomes summed stats and a TurnEnd."""
        out: list[Event] = []
        for event in events:
            if isinstance(event, TurnFinished):
                end = event.end
                shown = tuple(c for c in end.tool_calls if not self._calls.hidden(c.recipient))
                if len(shown) != len(end.tool_calls):
                    end = dataclasses.replace(end, tool_calls=shown)
                self.ended = True
                out.extend([*([event.stats] if event.stats is not None else []), end])
            elif isinstance(event, SubTurnStarted):
                self._subturn = event.index
                self._needs_separator = self._reasoned
            elif isinstance(event, Stats):
                continue
            elif isinstance(event, TurnStart):
                if self._subturn == 0:
                    out.append(event)
            elif isinstance(event, TextDelta | ToolCall):
                if self._calls.hidden(event.recipient):
                    continue
                if isinstance(event, TextDelta) and event.recipient is None \
                        and event.channel == "analysis":
                    if self._needs_separator and self._separator:
                        out.append(TextDelta("analysis", self._separator))
                    self._needs_separator = False
                    self._reasoned = True
                out.append(event)
            elif isinstance(event, MessageDone):
                if not self._calls.hidden(event.message.recipient):
                    out.append(event)
            elif type(event).__module__.startswith("harmony_tui.conversation"):
                continue  # tool progress: the client never sees the server's tools
            else:
                out.append(event)
        return out

    def cancel(self) -> None:
        """Stop generating and any running tool; forget this request's tool state."""
        if self._closed:
            return
        self._closed = True
        if not self._conversation.stop():
            self._first.cancel()
        if self._tools is None:
            return
        try:
            self._tools.forget_chat(self.chat_id)
        except Exception:  # cleanup must not break the response
            log.exception("forgetting the tool state of %s failed", self.chat_id)
