"""Chat-completion stream chunks -> our typed events.

Reasoning comes from ``reasoning_content`` or ``reasoning`` (analysis channel); ``content`` is
the answer, unless it starts with Harmony markup, in which case it is raw gpt-oss output and
goes through our Harmony decoder (``harmony_text.py``); ``tool_calls`` deltas stream as the
call's argument text and end as ``ToolCall`` events. ``finish`` closes the open messages and
returns the turn's end reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harmony_tui.engine.events import EndReason, Event, MessageDone, TextDelta, ToolCall
from harmony_tui.engine.formats.harmony_decoder import parse_arguments
from harmony_tui.engine.messages import Message
from harmony_tui.engine.tool_names import default_content_type, recipient_for
from harmony_tui.remote.harmony_text import HarmonyText, looks_like_harmony

FINISH: dict[str, EndReason] = {"stop": "return", "length": "length", "tool_calls": "call",
                                "function_call": "call", "content_filter": "return"}


@dataclass
class _Call:
    call_id: str
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChunkReader:
    """One turn's chunks in, events out (``feed`` per chunk, ``finish`` at the end)."""

    def __init__(self, declared: frozenset[str] = frozenset(),
                 known: frozenset[str] = frozenset()) -> None:
        self.declared = declared  # the function names the request declared
        self.known = known  # recipients the prompt declared (for the Harmony decoder)
        self.messages: list[Message] = []
        self.tool_calls: list[ToolCall] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.pieces = 0  # deltas with text: about one token each
        self._channel: str | None = None  # the open message's channel (reasoning / content)
        self._text: list[str] = []
        self._pending = ""  # the answer's start, until it tells whether it is Harmony
        self._harmony: HarmonyText | None = None
        self._plain = False
        self._calls: dict[int, _Call] = {}

    # -- in -------------------------------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in (chunk.get("choices") or [])[:1]:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                self.pieces += 1
                self._text_on("analysis", reasoning, out)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self.pieces += 1
                self._content(content, out)
            for call in delta.get("tool_calls") or ():
                self.pieces += 1
                self._call_delta(call, out)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            break
        return out

    def _content(self, text: str, out: list[Event]) -> None:
        if self._harmony is not None:
            out += self._harmony.feed(text)
            return
        if self._plain:
            self._text_on("final", text, out)
            return
        self._pending += text
        verdict = looks_like_harmony(self._pending)
        if verdict is None:
            return
        text, self._pending = self._pending, ""
        if verdict:
            self._close(out)
            self._harmony = HarmonyText(self.known)
            out += self._harmony.feed(text)
        else:
            self._plain = True
            self._text_on("final", text, out)

    def _text_on(self, channel: str, text: str, out: list[Event]) -> None:
        if self._channel != channel:
            self._close(out)
            self._channel = channel
        self._text.append(text)
        out.append(TextDelta(channel, text))

    def _close(self, out: list[Event]) -> None:
        if self._channel is not None and self._text:
            message = Message("assistant", "".join(self._text), channel=self._channel)
            self.messages.append(message)
            out.append(MessageDone(message))
        self._channel, self._text = None, []

    def _call_delta(self, delta: dict[str, Any], out: list[Event]) -> None:
        index = delta.get("index", len(self._calls))
        call = self._calls.get(index)
        if call is None:
            self._close(out)
            call = self._calls[index] = _Call(str(delta.get("id") or f"call_{index}"))
        function = delta.get("function") or {}
        if function.get("name"):
            call.name += function["name"] if not call.arguments else ""
        piece = function.get("arguments")
        if isinstance(piece, dict):  # some servers send the parsed object
            piece = json.dumps(piece)
        if isinstance(piece, str) and piece:
            call.arguments.append(piece)
            recipient, _ = recipient_for(call.name or "tool", self.declared)
            out.append(TextDelta(_channel_of(recipient), piece, recipient))

    # -- out ------------------------------------------------------------------------------

    def finish(self, reason: EndReason | None = None) -> tuple[list[Event], EndReason]:
        """Close the turn; ``reason`` overrides the server's (cancelled, error)."""
        out: list[Event] = []
        if self._pending:  # a short answer that never told: plain text
            pending, self._pending = self._pending, ""
            self._plain = True
            self._text_on("final", pending, out)
        self._close(out)
        natural = reason is None and self.finish_reason != "length"
        verdict: EndReason | None = None
        if self._harmony is not None:
            events, verdict = self._harmony.finish(natural)
            out += events
            decoder = self._harmony.decoder
            self.messages += decoder.messages
            self.tool_calls += decoder.tool_calls
        for call in self._calls.values():
            recipient, channel = recipient_for(call.name or "tool", self.declared)
            arguments = "".join(call.arguments)
            content_type = default_content_type(recipient, channel)
            message = Message("assistant", arguments, channel=channel, recipient=recipient,
                              content_type=content_type)
            parsed, error = parse_arguments(arguments, content_type, recipient)
            tool_call = ToolCall(call.call_id, recipient, channel, content_type, arguments,
                                 parsed, error)
            self.messages.append(message)
            self.tool_calls.append(tool_call)
            out += [MessageDone(message), tool_call]
        if reason is not None:
            return out, reason
        if self.tool_calls and (self._calls or verdict == "call"):
            return out, "call"
        if verdict is not None:
            return out, verdict
        return out, FINISH.get(self.finish_reason or "stop", "return")


def _channel_of(recipient: str) -> str:
    return "commentary" if recipient.startswith("functions.") else "analysis"
