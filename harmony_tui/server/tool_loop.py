"""Built-in tools the server runs itself (``--server-tools``): the tool loop of one API request.

When the server was given a ``ToolSet``, a chat or Responses request declares its built-in tools
(python, browser) and its turn becomes a chain of engine turns: a sub-turn that ends by calling
one of those tools has the call run (no approval: enabling a tool for the server is the
approval), the sub-turn's assistant messages and the tool's answer are appended to the
conversation, and a new sub-turn continues, up to ``max_calls_per_turn`` calls. The client sees
one answer: the calls and results of the server's tools never reach it, the reasoning of every
sub-turn does, and usage sums the sub-turns. Calls to anything else (the request's function
tools, a built-in tool the server does not run) end the request as tool calls, as without tools.
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


def is_builtin(recipient: str | None) -> bool:
    """True for the recipients of GPT-OSS's built-in tools: ``python``, ``browser.*``."""
    return bool(recipient) and str(recipient).split(".", 1)[0] in BUILTIN_NAMESPACES


def runs(tools: Any, recipient: str | None) -> bool:
    """True when the server runs calls to ``recipient`` itself (a built-in tool of ``tools``)."""
    return tools is not None and is_builtin(recipient) and tools.find(recipient) is not None


def declare(tools: Any, setup: PromptSetup, tool_choice: Any) -> PromptSetup:
    """``setup`` with the server's tools declared, unless there are none or tools are off
    for this request (``tool_choice: "none"``)."""
    if tools is None or tool_choice == "none":
        return setup
    return tools.declare(setup)


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
    """An API request's turn whose built-in tool calls the server runs between sub-turns.

    Read like ``AsyncTurn``: ``batches(poll)`` yields lists of events ending with one
    ``TurnEnd`` (the last sub-turn's, preceded by the summed ``Stats``); ``cancel()`` leaves
    the turn (stops generation or a running tool) and forgets the request's tool state.
    ``reasoning_separator`` is sent as analysis text before the reasoning of a later sub-turn
    (chat completions join all reasoning into one field).
    """

    def __init__(self, first: Any, early: list[Event], request: Any, tools: Any,
                 start_turn: Callable[[Any], Any], *, reasoning_separator: str = "") -> None:
        self.ended = False
        self.chat_id = f"api-{uuid.uuid4().hex[:16]}"  # per-request state of stateful tools
        self._turn = first
        self._early = list(early)
        self._request = request
        self._messages: list[Message] = list(request.messages)
        self._tools = tools
        self._start_turn = start_turn
        self._separator = reasoning_separator
        self._stats: list[Stats] = []
        self._subturn = 0
        self._calls = 0
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
                if runs(self._tools, event.recipient):
                    continue
                if isinstance(event, TextDelta) and event.recipient is None \
                        and event.channel == "analysis":
                    if self._needs_separator and self._separator:
                        out.append(TextDelta("analysis", self._separator))
                    self._needs_separator = False
                    self._reasoned = True
                out.append(event)
            elif isinstance(event, MessageDone):
                if not runs(self._tools, event.message.recipient):
                    out.append(event)
            else:
                out.append(event)
        return out, end

    def _continues(self, end: TurnEnd) -> bool:
        """Does the request go on with another sub-turn after running ``end``'s calls?"""
        if end.reason != "call" or not end.tool_calls or self._closed:
            return False
        if not all(runs(self._tools, call.recipient) for call in end.tool_calls):
            return False
        # Like the app: max_calls_per_turn calls run, one more is told the limit was reached,
        # and a call after that ends the request (finish_reason "stop").
        return self._calls <= self._tools.max_calls

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
        try:
            self._tools.forget_chat(self.chat_id)
        except Exception:  # cleanup must not break the response
            log.exception("forgetting the tool state of %s failed", self.chat_id)
