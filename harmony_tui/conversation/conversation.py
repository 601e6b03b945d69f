"""``Conversation``: a transcript, a tool set and the loop that runs one user turn.

``run_turn`` is an async generator of event batches (lists). It submits an engine sub-turn,
records each message as it completes, and when the sub-turn ends with tool calls routes each
call (``routing.py``): runs it (asking the injected approver where the tool wants approval),
refuses it, or ends the turn. Answers are recorded and the next sub-turn starts, until the model
answers, ``max_calls_per_turn`` is passed, or the turn is stopped. The last batch ends with one
``TurnFinished``.

``stop()`` stops the running turn (generation or tool) and the loop records it as cancelled;
``stop_and_save(timeout)`` also waits for that, and saves what was streamed if the engine does
not hand the turn back in time (quitting must never lose an answer).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from harmony_tui.conversation.engine_turn import EngineTurn, Submit
from harmony_tui.conversation.events import (
    SubTurnStarted,
    ToolFinished,
    ToolLimitReached,
    ToolOff,
    ToolRunning,
    ToolStopped,
    ToolWaiting,
    TurnFinished,
)
from harmony_tui.conversation.routing import MAX_REFUSED, CallPolicy, known_tool, refusal
from harmony_tui.conversation.stats import merge_stats
from harmony_tui.conversation.transcript import Recorder, Transcript
from harmony_tui.engine.events import Event, MessageDone, Stats, TextDelta, ToolCall, TurnEnd
from harmony_tui.engine.messages import Message
from harmony_tui.engine.reply import missing_answer
from harmony_tui.logs import logger

SaveErrorHandler = Callable[[OSError], None]


@dataclass
class ActiveTurn:
    """The state of the user turn being run (one at a time per conversation)."""

    engine_turn: EngineTurn | None = None
    recorder: Recorder | None = None
    tool_task: asyncio.Future | None = None
    stopping: bool = False  # stop() was called: no tool runs and no continuation after this
    abandoned: bool = False  # saved without the engine: the loop records nothing more
    ended: bool = False  # the current sub-turn's TurnEnd is recorded (tools may still run)
    stats: Stats | None = None  # the current sub-turn's
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the loop has returned
    # Text received since the last complete message, per channel: saved if a quit cannot wait.
    pending: list[tuple[str, str]] = field(default_factory=list)

    def add_pending(self, channel: str, text: str) -> None:
        if self.pending and self.pending[-1][0] == channel:
            self.pending[-1] = (channel, self.pending[-1][1] + text)
        else:
            self.pending.append((channel, text))

    def pending_messages(self) -> list[Message]:
        return [Message("assistant", text, channel=channel) for channel, text in self.pending
                if text]


class Conversation:
    """The messages of one conversation and the loop that runs its turns.

    ``submit`` is the engine's ``submit`` or ``submit_batched`` (called per sub-turn, so a front
    end may switch); ``transcript``, ``tools`` and ``policy`` may be replaced between turns (a
    new chat, a tool turned on). ``on_save_error`` receives a failed save of the transcript
    (disk full ...); without it the error is raised.
    """

    def __init__(self, submit: Submit, transcript: Transcript, tools: Any = None, *,
                 policy: CallPolicy, approver: Any = None, chat_id: str | None = None,
                 on_save_error: SaveErrorHandler | None = None) -> None:
        self.submit = submit
        self.transcript = transcript
        self.tools = tools
        self.policy = policy
        self.approver = approver
        self._chat_id = chat_id
        self.on_save_error = on_save_error
        self.active: ActiveTurn | None = None
        self.last_request: Any = None
        self.subturns_started = 0
        self.seeded_once = False

    @property
    def chat_id(self) -> str | None:
        if self._chat_id is not None:
            return self._chat_id
        log = getattr(self.transcript, "log", None)
        return getattr(log, "chat_id", None)

    def params_for_turn(self, params: Any, reseed_each_turn: bool = True) -> Any:
        """``params`` for the next turn: with ``reseed_each_turn`` off, only the first turn of
        the conversation is seeded and later turns continue the random stream."""
        if params.seed is None or reseed_each_turn:
            return params
        if self.seeded_once:
            return params.model_copy(update={"seed": None})
        self.seeded_once = True
        return params

    # -- running a turn -------------------------------------------------------------------------

    async def run_turn(self, request: Any, *, model: str | None = None,
                       record_params: dict[str, Any] | None = None, poll: float | None = None,
                       first: EngineTurn | None = None,
                       early: list[Event] | None = None) -> AsyncIterator[list[Event]]:
        """Run one user turn (the user message is already in the transcript).

        ``request`` is the first sub-turn's ``TurnRequest``; later sub-turns take the same
        settings with the transcript's messages. ``first`` (with the ``early`` events already
        read from it) is a sub-turn the caller submitted itself. With ``poll`` an empty batch
        comes at least every ``poll`` seconds, also while a tool runs.
        """
        if self.active is not None:
            raise RuntimeError("a turn is already running in this conversation")
        active = self.active = ActiveTurn()
        record_params = record_params if record_params is not None else \
            request.params.model_dump(mode="json")
        stats: list[Stats] = []
        outcomes: list[Any] = []
        answer: list[str] = []
        reasoned = False
        calls = refused = subturn = 0
        finished = False
        held: list[Event] = []

        def out(batch: list[Event]) -> list[Event]:
            nonlocal held
            batch, held = [*held, *batch], []
            return batch

        try:
            while True:
                sub_request = request if subturn == 0 else dataclasses.replace(
                    request, messages=tuple(self.transcript.messages),
                    request_id=f"{request.request_id}-{subturn}")
                active.recorder = self._begin(model, record_params)
                active.ended, active.stats, active.pending = False, None, []
                self.last_request = sub_request
                self.subturns_started += 1
                if subturn == 0 and first is not None:
                    engine_turn = first
                else:
                    engine_turn = EngineTurn(self.submit, sub_request,
                                             asyncio.get_running_loop())
                active.engine_turn = engine_turn
                if active.stopping:  # stopped while the tools answered
                    engine_turn.cancel()
                end: TurnEnd | None = None
                pending_early = list(early or []) if subturn == 0 else []
                prefix: list[Event] = [SubTurnStarted(subturn)] if subturn else []
                async for events in _with_early(pending_early, engine_turn, poll):
                    if active.abandoned:
                        if any(isinstance(e, TurnEnd) for e in events):
                            return
                        continue
                    end = self._track(active, events)
                    for event in events:
                        if isinstance(event, TextDelta) and event.recipient is None:
                            if event.channel == "final":
                                answer.append(event.text)
                            else:
                                reasoned = reasoned or bool(event.text.strip())
                        elif isinstance(event, Stats):
                            stats.append(event)
                    shown = [e for e in events if not isinstance(e, TurnEnd)]
                    if prefix:
                        shown, prefix = [*prefix, *shown], []
                    if end is not None:
                        # the sub-turn's last events go out with what follows them (tool
                        # steps, or TurnFinished): a reader sees the answer end and the turn
                        # end together
                        held = shown
                        break
                    if shown or (poll is not None and not events):
                        yield shown
                if end is None:  # cancelled by the caller without a TurnEnd
                    return
                if active.stopping and end.reason == "call":  # stopped as the call came
                    end = dataclasses.replace(end, reason="cancelled")
                self._save(lambda r=active.recorder, e=end: r and r.finish(
                    list(e.messages), active.stats.to_dict() if active.stats else None,
                    e.reason))
                active.ended = True
                if end.reason != "call" or not end.tool_calls:
                    break
                routes = [(call, self.policy.route(call)) for call in end.tool_calls]
                unanswered = tuple(c for c, r in routes if r in ("client", "off"))
                off = [ToolOff(c, known_tool(c.recipient) or c.recipient,
                               self.policy.off_hint(c.recipient)) for c, r in routes
                       if r == "off"]
                if any(r == "client" for _, r in routes) or all(r == "off" for _, r in routes):
                    if off:
                        yield out(off)
                    end = dataclasses.replace(end, tool_calls=unanswered)
                    break
                if any(r in ("refuse", "off") for _, r in routes) and refused >= MAX_REFUSED:
                    break
                limit_hit = False
                for call, route in routes:
                    if route != "run":
                        refused += 1
                        batch: list[Event] = [o for o in off if o.call is call]
                        message = refusal(call)
                        batch.append(ToolFinished(call, "refused", message.content))
                        self._save(lambda m=message, c=call: self.transcript.add_tool_result(
                            m, c.call_id, True))
                        yield out(batch)
                        continue
                    calls += 1
                    if calls > self._max_calls + 1:
                        limit_hit = True
                        break
                    outcome = None
                    async for item in self._run_call(active, call, calls, poll):
                        if isinstance(item, list):
                            yield out(item)
                        else:
                            outcome = item
                    if outcome is None:  # stopped while it ran
                        self._save(self.transcript.mark_stopped)
                        yield out([ToolStopped(call)])
                        end = dataclasses.replace(end, reason="cancelled", tool_calls=())
                        break
                    outcomes.append(outcome)
                    result = outcome.result
                    status = "limit" if calls > self._max_calls else (
                        "denied" if outcome.decision == "deny" else
                        "error" if result.is_error else "done")
                    self._save(lambda o=outcome, c=call: self.transcript.add_tool_result(
                        o.message, c.call_id, o.result.is_error))
                    yield out([ToolFinished(call, status, result.text, result.duration_s,
                                            str(outcome.decision))])
                if end.reason == "cancelled":
                    break
                if limit_hit:
                    yield out([ToolLimitReached(self._max_calls)])
                    break
                if active.stopping:  # stopped (Esc, quit) as the tools answered
                    self._save(self.transcript.mark_stopped)
                    end = dataclasses.replace(end, reason="cancelled", tool_calls=())
                    break
                subturn += 1
            text = "".join(answer)
            rendered = self._render_citations(text)
            no_answer = missing_answer(end.reason, bool(text.strip() or end.tool_calls),
                                       reasoned)
            finished = True
            self._release(active)  # before the last yield: a reader may stop reading there
            yield out([TurnFinished(end, rendered, merge_stats(stats), no_answer, calls,
                                    subturn + 1, tuple(outcomes))])
        finally:
            if not finished and not active.abandoned:
                # the reader left (a client disconnected, the app closed, output failed):
                # stop everything and keep what arrived, marked stopped
                active.stopping = True
                if active.tool_task is not None and not active.tool_task.done():
                    active.tool_task.cancel()
                if active.engine_turn is not None:
                    active.engine_turn.cancel()
                if self.active is active:
                    self.save_streamed()
            self._release(active)

    def _release(self, active: ActiveTurn) -> None:
        if self.active is active:
            self.active = None
        active.done.set()

    @property
    def _max_calls(self) -> int:
        return self.tools.max_calls if self.tools is not None else 0

    async def _run_call(self, active: ActiveTurn, call: ToolCall, number: int,
                        poll: float | None) -> AsyncIterator[Any]:
        """Run one call: yields event batches, then its ``ToolOutcome`` (nothing if stopped)."""
        from harmony_tui.tools.base import ToolInvocation, ToolResult
        from harmony_tui.tools.toolset import ToolOutcome, result_message

        invocation = ToolInvocation(call.recipient, call.arguments, call.call_id, self.chat_id)
        if number > self._max_calls:
            yield self.tools.limit_outcome(invocation, call.channel)
            return
        if active.stopping:
            return
        asks = self.approver is not None and self.tools.approval(invocation) is not None
        approved = asyncio.Event()
        approver = self.approver

        async def ask(invocation: Any, request: Any) -> Any:
            decision = await approver(invocation, request)
            if decision != "deny":
                approved.set()
            return decision

        yield [ToolWaiting(call) if asks else ToolRunning(call)]
        task = asyncio.ensure_future(self.tools.handle(invocation, ask if asks else None,
                                                       call.channel))
        active.tool_task = task
        waiter = asyncio.ensure_future(approved.wait())
        try:
            while not task.done():
                watch = {task} if waiter.done() else {task, waiter}
                await asyncio.wait(watch, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
                if waiter.done() and asks and not task.done() and approved.is_set():
                    asks = False
                    yield [ToolRunning(call)]
                elif not task.done() and poll is not None:
                    yield []
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
            active.tool_task = None
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            yield task.result()
            return
        # a tool must never end the turn: the model reads why it failed
        result = ToolResult(f"{call.recipient} failed: {type(error).__name__}: {error}",
                            is_error=True)
        yield ToolOutcome(invocation, result, result_message(invocation, result, call.channel),
                          "auto")

    def _render_citations(self, text: str) -> str:
        render = getattr(self.tools, "render_citations", None)
        if render is None or getattr(self.tools, "browser", None) is None or not text:
            return text
        return render(text, self.chat_id)

    def _begin(self, model: str | None, record_params: dict[str, Any]) -> Recorder | None:
        try:
            return self.transcript.begin_turn(model, record_params)
        except OSError as err:
            self._report(err)
            return None

    def _track(self, active: ActiveTurn, events: list[Event]) -> TurnEnd | None:
        """Record complete messages and remember streamed text (saved if a quit cannot wait);
        returns the sub-turn's ``TurnEnd`` when it is among ``events``."""
        end = None
        for event in events:
            if isinstance(event, TextDelta) and event.recipient is None:
                active.add_pending(event.channel, event.text)
            elif isinstance(event, MessageDone):
                active.pending.clear()
                self._save(lambda r=active.recorder, m=event.message: r and r.add(m))
            elif isinstance(event, Stats):
                active.stats = event
            elif isinstance(event, TurnEnd):
                end = event
        return end

    def _save(self, save: Callable[[], Any]) -> None:
        """Save to the transcript; a failure (disk full ...) is reported, never lost silently."""
        try:
            save()
        except OSError as err:
            self._report(err)

    def _report(self, err: OSError) -> None:
        if self.on_save_error is None:
            raise err
        self.on_save_error(err)

    # -- stopping -------------------------------------------------------------------------------

    def stop(self) -> bool:
        """Stop the running turn (its generation or its tool); False when none runs."""
        active = self.active
        if active is None:
            return False
        active.stopping = True
        if active.tool_task is not None:
            active.tool_task.cancel()
        if active.engine_turn is not None:
            active.engine_turn.stream.cancel()
        return True

    async def stop_and_save(self, timeout: float) -> None:
        """Stop the running turn and wait until its messages are saved.

        If the engine does not hand the turn back within ``timeout`` seconds, what arrived of
        it is saved instead. Either way the turn is marked ``cancelled``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (active := self.active) is not None:
            self.stop()
            try:
                await asyncio.wait_for(active.done.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                self.save_streamed()
                return
            if self.active is active:  # its reader failed before ending it
                self.save_streamed()
                return

    async def finish_unread(self, turn: AsyncIterator[list[Event]], timeout: float) -> None:
        """The reader of ``turn`` failed (its output is gone ...): stop the turn and let the
        loop record its end unread, waiting up to ``timeout`` seconds for the engine; after
        that what arrived is saved."""
        if self.active is None:
            return
        self.stop()
        try:
            async with asyncio.timeout(timeout):
                async for _events in turn:
                    pass
        except TimeoutError:
            self.save_streamed()
        finally:
            await turn.aclose()  # type: ignore[attr-defined]

    def save_streamed(self) -> None:
        """Save a turn the engine has not handed back: what arrived of it, marked stopped."""
        active = self.active
        if active is None:
            return
        active.abandoned = True  # the loop, if it still runs, records nothing more
        self.active = None
        active.done.set()
        if active.ended:  # the engine's end is saved; a tool may still be running
            if active.tool_task is not None:
                self._save(self.transcript.mark_stopped)
            return
        if active.recorder is None or active.engine_turn is None:
            return
        events = active.engine_turn.drain()  # arrived but not read yet
        end = self._track(active, events)
        stats = active.stats
        recorder = active.recorder
        messages = list(end.messages) if end is not None else [
            *recorder.added_messages, *active.pending_messages()]
        logger.info("saving the stopped turn without the engine (%d messages)", len(messages))
        self._save(lambda: recorder.finish(messages, stats.to_dict() if stats else None,
                                           "cancelled"))


async def _with_early(early: list[Event], turn: EngineTurn,
                      poll: float | None) -> AsyncIterator[list[Event]]:
    if early:
        yield early
        if any(isinstance(e, TurnEnd) for e in early):
            return
    async for events in turn.batches(poll):
        yield events

