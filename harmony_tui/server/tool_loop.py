"""The tool loop of one chat or Responses request: server tools run, undeclared tools refused.

A request's turn is a chain of engine turns. A sub-turn that ends by calling a tool the server
runs (``--server-tools``: python, browser) has the call run (no approval: enabling a tool for
the server is the approval), the sub-turn's assistant messages and the tool's answer are appended
to the conversation, and a new sub-turn continues, up to ``max_calls_per_turn`` calls.

Only calls to the request's own function tools reach the client (as ``tool_calls`` /
``function_call`` items). A call to anything else (a built-in tool the server does not run, a
function the request did not declare, any tool with ``tool_choice: "none"``) is never returned:
the model is told in a tool message that the tool is not available and continues, at most
``MAX_REFUSED`` times; after that the answer ends with the text so far (finish "stop").

The client sees one answer: hidden calls and their results never reach it, the reasoning of
every sub-turn does, and usage sums the sub-turns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from harmony_tui.engine.events import (
    Event,
    MessageDone,
    Stats,
    TextDelta,
    ToolCall,
    TurnEnd,
    TurnStart,
)
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.server.errors import log

BUILTIN_NAMESPACES = ("python", "browser")
MAX_REFUSED = 2  # undeclared-tool calls answered "not available" per request before giving up


def is_builtin(recipient: str | None) -> bool:
    """True for the recipients of GPT-OSS's built-in tools: ``python``, ``browser.*``."""
    return bool(recipient) and str(recipient).split(".", 1)[0] in BUILTIN_NAMESPACES


def runs(tools: Any, recipient: str | None) -> bool:
    """True when the server runs calls to ``recipient`` itself (a built-in tool of ``tools``)."""
    return tools is not None and is_builtin(recipient) and tools.find(recipient) is not None


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


def refusal(call: ToolCall) -> Message:
    """The tool message telling the model that ``call``'s tool does not exist here."""
    text = (f"Error: the tool {call.recipient!r} is not available in this conversation. "
            "Do not call it again; answer the user directly without it.")
    return Message("tool", text, channel=call.channel, name=call.recipient)


def merge_stats(parts: Sequence[Stats]) -> Stats | None:
    """One ``Stats`` for several sub-turns: token counts summed, speeds over the summed times."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    prompt_time = sum((s.prompt_tokens - s.cached_tokens) / s.prompt_tps
                      for s in parts if s.prompt_tps > 0)
    generation_time = sum(s.generation_tokens / s.generation_tps
                          for s in parts if s.generation_tps > 0)
    processed = sum(s.prompt_tokens - s.cached_tokens for s in parts)
    generated = sum(s.generation_tokens for s in parts)
    return Stats(
        prompt_tokens=sum(s.prompt_tokens for s in parts),
        cached_tokens=sum(s.cached_tokens for s in parts),
        generation_tokens=generated,
        ttft_s=parts[0].ttft_s,
        prompt_tps=processed / prompt_time if prompt_time > 0 else 0.0,
        generation_tps=generated / generation_time if generation_time > 0 else 0.0,
        peak_memory_gb=max(s.peak_memory_gb for s in parts),
    )


class ToolLoopTurn:
    """An API request's turn: server tools run and undeclared tools refused between sub-turns.

    Read like ``AsyncTurn``: ``batches(poll)`` yields lists of events ending with one
    ``TurnEnd`` (the last sub-turn's, preceded by the summed ``Stats``, its ``tool_calls``
    only those the client sees); ``cancel()`` leaves the turn (stops generation or a running
    tool) and forgets the request's tool state. ``tools`` is the server's ``ToolSet`` (None: the
    server runs nothing); ``client_tools`` the recipients the client declared (see
    ``client_recipients``). ``reasoning_separator`` is sent as analysis text before the
    reasoning of a later sub-turn (chat completions join all reasoning into one field).
    """

    def __init__(self, first: Any, early: list[Event], request: Any, tools: Any,
                 start_turn: Callable[[Any], Any], *, reasoning_separator: str = "",
                 client_tools: frozenset[str] | None = None) -> None:
        self.ended = False
        self.chat_id = f"api-{uuid.uuid4().hex[:16]}"  # per-request state of stateful tools
        self._turn = first
        self._early = list(early)
        self._request = request
        self._messages: list[Message] = list(request.messages)
        self._tools = tools
        self._client_tools = (client_recipients(request.setup) if client_tools is None
                              else client_tools)
        self._start_turn = start_turn
        self._separator = reasoning_separator
        self._stats: list[Stats] = []
        self._subturn = 0
        self._calls = 0
        self._refused = 0
        self._reasoned = False  # an earlier sub-turn sent reasoning
        self._needs_separator = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- reading --------------------------------------------------------------------------------

    async def batches(self, poll: float | None = None) -> AsyncIterator[list[Event]]:
        """Lists of events until the final ``TurnEnd``; an empty list every ``poll`` idle
        seconds (also while a tool runs)."""
        while not self.ended and not self._closed:
            async for events in self._source(poll):
                out, end = self._sift(events)
                if end is None:
                    if out or (poll is not None and not events):
                        yield out
                    continue
                if self._continues(end):
                    if out:
                        yield out
                    async for idle in self._run_tools(end, poll):
                        yield idle
                    break
                stats = merge_stats(self._stats)
                self.ended = True
                shown = tuple(c for c in end.tool_calls if not self._hidden(c.recipient))
                if len(shown) != len(end.tool_calls):
                    end = dataclasses.replace(end, tool_calls=shown)
                yield [*out, *([stats] if stats is not None else []), end]
                return
            else:  # the sub-turn's events stopped without a TurnEnd: it was cancelled
                return

    async def _source(self, poll: float | None) -> AsyncIterator[list[Event]]:
        if self._early:
            early, self._early = self._early, []
            yield early
        async for events in self._turn.batches(poll):
            yield events

    def _sift(self, events: list[Event]) -> tuple[list[Event], TurnEnd | None]:
        """Drop what the client must not see (the server's tool calls, a later sub-turn's
        start, per-sub-turn stats); pick out the ``TurnEnd``."""
        out: list[Event] = []
        end: TurnEnd | None = None
        for event in events:
            if isinstance(event, TurnEnd):
                end = event
            elif isinstance(event, Stats):
                self._stats.append(event)
            elif isinstance(event, TurnStart):
                if self._subturn == 0:
                    out.append(event)
            elif isinstance(event, TextDelta | ToolCall):
                if self._hidden(event.recipient):
                    continue
                if isinstance(event, TextDelta) and event.recipient is None \
                        and event.channel == "analysis":
                    if self._needs_separator and self._separator:
                        out.append(TextDelta("analysis", self._separator))
                    self._needs_separator = False
                    self._reasoned = True
                out.append(event)
            elif isinstance(event, MessageDone):
                if not self._hidden(event.message.recipient):
                    out.append(event)
            else:
                out.append(event)
        return out, end

    def _hidden(self, recipient: str | None) -> bool:
        """A call the client must not see: the server runs it, or the client never declared
        the tool (so the model is told it is not available)."""
        return bool(recipient) and (runs(self._tools, recipient)
                                    or recipient not in self._client_tools)

    def _continues(self, end: TurnEnd) -> bool:
        """Does the request go on with another sub-turn after answering ``end``'s calls?"""
        if end.reason != "call" or not end.tool_calls or self._closed:
            return False
        if not all(self._hidden(call.recipient) for call in end.tool_calls):
            return False  # a call of the client's own tools: it answers
        served = any(runs(self._tools, call.recipient) for call in end.tool_calls)
        refused = not all(runs(self._tools, call.recipient) for call in end.tool_calls)
        # Like the app: max_calls_per_turn calls run, one more is told the limit was reached,
        # and a call after that ends the request (finish_reason "stop").
        if served and self._calls > self._tools.max_calls:
            return False
        return not refused or self._refused < MAX_REFUSED

    # -- running tools --------------------------------------------------------------------------

    async def _run_tools(self, end: TurnEnd, poll: float | None) -> AsyncIterator[list[Event]]:
        """Run ``end``'s calls and start the next sub-turn; yields [] every ``poll`` seconds
        while the tools run, so a non-streamed request still notices a client that left."""
        self._task = asyncio.ensure_future(self._answer_calls(end))
        try:
            while not self._task.done():
                await asyncio.wait({self._task}, timeout=poll)
                if not self._task.done():
                    yield []
            if not self._task.cancelled():
                self._task.result()
        finally:
            if not self._task.done():
                self._task.cancel()

    async def _answer_calls(self, end: TurnEnd) -> None:
        messages = [*self._messages, *end.messages]
        for call in end.tool_calls:
            if not runs(self._tools, call.recipient):
                self._refused += 1
                messages.append(refusal(call))
                continue
            self._calls += 1
            messages.append(await self._answer(call))
        if self._closed:
            return
        self._messages = messages
        self._subturn += 1
        self._needs_separator = self._reasoned
        request = dataclasses.replace(self._request, messages=tuple(messages),
                                      request_id=f"{self._request.request_id}-{self._subturn}")
        self._turn = self._start_turn(request)

    async def _answer(self, call: ToolCall) -> Message:
        """The tool message answering ``call`` (run without asking; errors become results)."""
        from harmony_tui.tools.base import ToolInvocation, ToolResult
        from harmony_tui.tools.toolset import result_message

        invocation = ToolInvocation(call.recipient, call.arguments, call.call_id, self.chat_id)
        if self._calls > self._tools.max_calls:
            return self._tools.limit_outcome(invocation, call.channel).message
        try:
            outcome = await self._tools.handle(invocation, None, call.channel)
        except Exception as err:  # a tool must not end the request; the model reads why
            log.exception("server tool %s failed", call.recipient)
            result = ToolResult(f"{call.recipient} failed: {type(err).__name__}: {err}",
                                is_error=True)
            return result_message(invocation, result, call.channel)
        return outcome.message

    # -- leaving --------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop generating and any running tool; forget this request's tool state."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._turn.cancel()
        if self._tools is None:
            return
        try:
            self._tools.forget_chat(self.chat_id)
        except Exception:  # cleanup must not break the response
            log.exception("forgetting the tool state of %s failed", self.chat_id)
