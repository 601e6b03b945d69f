"""How the app shows one turn: conversation events mapped to its widgets.

The conversation loop (``conversation/``) runs the turn and records it; ``TurnView.apply`` gets
its event batches and updates the answer widget, the thinking pane, the tool-call pane and the
status bar. It holds no state the chat file needs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from harmony_tui.conversation import (
    SubTurnStarted,
    ToolFinished,
    ToolLimitReached,
    ToolOff,
    ToolRunning,
    ToolStopped,
    ToolWaiting,
    TurnFinished,
)
from harmony_tui.conversation.stats import speculation_summary
from harmony_tui.engine.events import (
    ContextTrimmed,
    Event,
    MessageDone,
    ParseIssue,
    PromptProgress,
    Stats,
    TextDelta,
    TokenProgress,
    ToolCall,
    TurnStart,
)
from harmony_tui.logs import logger
from harmony_tui.widgets.messages import AssistantMessage, CallInfo

END_NOTES = {"cancelled": "⏹ stopped", "length": "… stopped at the token limit"}
STATUS_WORDS = {"done": "answered", "error": "failed", "denied": "denied",
                "limit": "not run (call limit)", "refused": "not available"}
STEP_WORDS = {"waiting for approval": "waiting for approval", "running": "running",
              "stopped": "stopped", "not run": "not run (tool off)"}


class TurnView:
    """The widgets of the turn being generated (``app.turn`` while it runs)."""

    def __init__(self, app: Any, widget: AssistantMessage) -> None:
        self.app = app
        self.widget = widget
        self.generating = False
        self.stopped_in_tool = False
        self.thinking_ended = False  # a thinking message ended: set the next one apart
        self.spoken: Any = None  # a voice_control.SpokenTurn when the answer is spoken
        self.done = asyncio.Event()  # its reader has returned

    async def apply(self, events: list[Event]) -> bool:
        """Update the widgets for a batch of events; True when the turn has finished."""
        status = self.app.status
        for event in coalesce(events):
            if isinstance(event, TextDelta):
                if event.recipient is not None:
                    continue  # tool-call arguments: shown whole when the call completes
                self._generating(status)
                if event.channel == "final":
                    await self.widget.append_answer(event.text)
                else:
                    new, self.thinking_ended = self.thinking_ended, False
                    self.app.thinking.write(event.text, event.channel, new_message=new)
                    await self.widget.append_thinking(event.text, new_message=new)
            elif isinstance(event, MessageDone):
                self.thinking_ended = event.message.channel != "final"
            elif isinstance(event, TokenProgress):
                self._generating(status)
                status.generated = event.generated
                status.ttft = event.ttft_s
                if event.generated > 1:
                    status.tps = event.generation_tps
            elif isinstance(event, TurnStart):
                self.app.last_turn_start = event
                status.prompt_tokens = event.prompt_tokens
                status.cached_tokens = event.cached_tokens
            elif isinstance(event, PromptProgress):
                if event.total:
                    status.detail = f"{100 * event.processed // event.total}%"
            elif isinstance(event, ContextTrimmed):
                if getattr(event, "new", True):  # said once per trim, not at every turn
                    await self.widget.add_note(f"dropped {event.dropped_messages} earlier messages "
                                         f"({event.dropped_tokens} tokens) to fit the "
                                         f"{event.limit}-token context")
            elif isinstance(event, ToolCall):
                await self._show_call(event)
            elif isinstance(event, ParseIssue):
                self.app.log.warning(f"format repair: {event.detail}")
            elif isinstance(event, Stats):
                status.prompt_tokens, status.cached_tokens = event.prompt_tokens, \
                    event.cached_tokens
                status.generated = event.generation_tokens
                status.ttft, status.tps = event.ttft_s, event.generation_tps
                status.spec = speculation_summary(event, short=True) or ""
                status.peak_gb = event.peak_memory_gb
            elif isinstance(event, ToolWaiting | ToolRunning):
                waiting = isinstance(event, ToolWaiting)
                status.state, status.detail = "tool", event.call.recipient
                self._entry_status(event.call, "waiting for approval" if waiting else "running")
            elif isinstance(event, ToolFinished):
                await self._tool_finished(event)
            elif isinstance(event, ToolOff):
                self._entry_status(event.call, "not run", f"{event.hint}. "
                                   "Tools: the command palette (Ctrl+P) turns them on.")
                await self.widget.add_note(f"⚠ {event.call.recipient} not run: {event.hint}")
            elif isinstance(event, ToolStopped):
                self.stopped_in_tool = True
                self._entry_status(event.call, "stopped")
                await self.widget.add_note(f"⏹ stopped while {event.call.recipient} ran")
            elif isinstance(event, ToolLimitReached):
                await self.widget.add_note(f"stopped after {event.limit} tool calls "
                                     "(max_calls_per_turn)")
            elif isinstance(event, SubTurnStarted):
                self.generating = False
                status.state, status.detail = "prefill", ""
            elif isinstance(event, TurnFinished):
                await self._finish(event)
                return True
        return False

    def _generating(self, status: Any) -> None:
        if not self.generating:
            self.generating = True
            status.state, status.detail = "generating", ""

    async def _show_call(self, call: ToolCall) -> None:
        app = self.app
        entry = await app.tools.add_call(call.call_id, call.recipient, call.arguments,
                                         call.content_type)
        app.show_tools_pane()
        info = CallInfo(call.call_id, call.recipient, call.arguments, call.content_type)
        if call.error:
            entry.set_status("requested", f"(arguments are not valid JSON: {call.error})")
            info.result = f"(arguments are not valid JSON: {call.error})"
        await self.widget.add_call(info)

    def _entry_status(self, call: ToolCall, status: str, text: str | None = None) -> Any:
        """The call's status in the tool pane and in the conversation."""
        entry = self.app.tools.entries.get(call.call_id)
        if entry is not None:
            entry.set_status(status, text)
        self.widget.call_status(call.call_id, STEP_WORDS.get(status, status))
        return entry

    async def _tool_finished(self, event: ToolFinished) -> None:
        logger.info("tool %s %s (%s, %.2fs)", event.call.recipient, event.status,
                    event.decision, event.duration_s)
        entry = self._entry_status(event.call, event.status if event.status in (
            "denied", "error", "done") else "not run", event.text)
        if entry is not None and event.duration_s:
            entry.duration = event.duration_s
            entry.title = entry.title_text()
        word = STATUS_WORDS[event.status]
        took = f" · {event.duration_s:.2f}s" if event.duration_s else ""
        self.widget.call_status(event.call.call_id, word + took, event.text)
        await self.widget.add_note(f"← {event.call.recipient} {word}", log_only=True)

    async def _finish(self, finished: TurnFinished) -> None:
        app, end = self.app, finished.end
        widget = self.widget
        if finished.answer != widget.answer and widget.answer:
            await widget.set_answer(finished.answer)  # browser citations rendered
        note = None if self.stopped_in_tool else END_NOTES.get(end.reason)
        if end.reason == "error":
            note = f"✖ error: {end.error}"
        # never a silent empty answer (the note says why, the token limit included)
        await widget.finish(f"⚠ no answer: {finished.no_answer}" if finished.no_answer
                            else note)
        app.turn_finished(self, finished)


def coalesce(events: list[Event]) -> list[Event]:
    """Merge the text deltas of one channel that only progress figures separate, and keep the
    last of those figures: one widget update per channel and batch, not one per token."""
    out: list[Event] = []
    text: int | None = None  # index in ``out`` of the delta being extended
    progress: int | None = None  # index of the TokenProgress after it
    for event in events:
        if isinstance(event, TokenProgress):
            if progress is not None:
                out[progress] = event  # figures only: the newest replaces the older one
            else:
                progress = len(out)
                out.append(event)
            continue
        last = out[text] if text is not None else None
        if isinstance(event, TextDelta) and isinstance(last, TextDelta) and \
                last.channel == event.channel and last.recipient == event.recipient:
            out[text] = TextDelta(event.channel, last.text + event.text, event.recipient)
            continue
        progress = None
        out.append(event)
        text = len(out) - 1 if isinstance(event, TextDelta) else None
    return out
