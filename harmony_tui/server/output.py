"""Engine events -> OpenAI output: chat deltas and messages, completion text, logprobs, usage.

The analysis channel is reasoning (``reasoning`` and ``reasoning_content``); text on the final
channel, and commentary addressed to nobody (a preamble), is content; a message addressed to a
tool is a tool call whose arguments stream as ``tool_calls`` deltas. No Harmony markup ever
reaches the client: the engine's decoder has already taken it apart.

A turn that ends normally (``stop`` / ``length``) with neither content nor tool calls, typically
after reasoning only, says so in the message's extra ``no_answer`` field (a one-line note; a
``no_answer`` delta just before the finish chunk when streamed); ``finish_reason`` stays valid.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from harmony_tui.engine.events import (
    Event,
    Stats,
    TextDelta,
    TokenLogprob,
    ToolCall,
    TurnEnd,
    TurnStart,
)
from harmony_tui.engine.reply import missing_answer
from harmony_tui.server.mapping import remember_call, tool_name

FINISH = {"return": "stop", "stop": "stop", "length": "length", "call": "tool_calls"}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def logprob_entry(item: TokenLogprob, top: int) -> dict[str, Any]:
    """One ``logprobs.content`` entry of a chat completion."""
    return {
        "token": item.text, "logprob": item.logprob, "bytes": list(item.text.encode()),
        "top_logprobs": [{"token": text, "logprob": lp, "bytes": list(text.encode())}
                         for _, text, lp in item.top[:top]],
    }


def usage(stats: Stats | None, prompt_tokens: int = 0, cached: int = 0) -> dict[str, Any]:
    prompt = stats.prompt_tokens if stats else prompt_tokens
    completion = stats.generation_tokens if stats else 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": stats.cached_tokens if stats else cached}}
    if stats is not None and stats.verify_steps:  # speculative decoding: OpenAI's names for
        out["completion_tokens_details"] = {  # the drafts of its "predicted outputs"
            "accepted_prediction_tokens": stats.accepted_tokens,
            "rejected_prediction_tokens": stats.draft_tokens - stats.accepted_tokens}
    return out


@dataclass
class CallState:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


@dataclass
class ChatOutput:
    """Accumulates a chat turn; ``feed`` returns the stream deltas each event produces."""

    logprobs: int | None = None  # None: off; else top alternatives per token
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[CallState] = field(default_factory=list)
    logprob_items: list[dict[str, Any]] = field(default_factory=list)
    stats: Stats | None = None
    start: TurnStart | None = None
    end: TurnEnd | None = None
    _open_call: CallState | None = None
    _pending_logprob: TokenLogprob | None = None

    def feed(self, event: Event) -> list[dict[str, Any]]:
        """Stream deltas (``{"delta": ..., "logprobs": ...}``) for ``event``."""
        if isinstance(event, TextDelta):
            return self._text(event)
        if isinstance(event, TokenLogprob):
            self._pending_logprob = event
        elif isinstance(event, ToolCall):
            return self._call_done(event)
        elif isinstance(event, Stats):
            self.stats = event
        elif isinstance(event, TurnStart):
            self.start = event
        elif isinstance(event, TurnEnd):
            self.end = event
            note = self.no_answer
            if note:
                return [{"delta": {"no_answer": note}}]
        return []

    @property
    def no_answer(self) -> str | None:
        """Why the turn has no answer (no content, no tool call), or None."""
        if self.end is None:
            return None
        answered = bool("".join(self.content).strip()) or bool(self.calls)
        return missing_answer(self.end.reason, answered, bool("".join(self.reasoning).strip()))

    def _text(self, event: TextDelta) -> list[dict[str, Any]]:
        if event.recipient is not None:
            call = self._open_call
            if call is None:
                call = self._open_call = CallState(new_call_id(), tool_name(event.recipient))
                self.calls.append(call)
                call.arguments.append(event.text)
                return [{"delta": {"tool_calls": [{
                    "index": len(self.calls) - 1, "id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": event.text}}]}}]
            call.arguments.append(event.text)
            return [{"delta": {"tool_calls": [{"index": len(self.calls) - 1,
                                               "function": {"arguments": event.text}}]}}]
        if event.channel == "analysis":
            self.reasoning.append(event.text)
            return [{"delta": {"reasoning": event.text, "reasoning_content": event.text}}]
        self.content.append(event.text)
        out: dict[str, Any] = {"delta": {"content": event.text}}
        if self.logprobs is not None and self._pending_logprob is not None:
            entry = logprob_entry(self._pending_logprob, self.logprobs)
            self._pending_logprob = None
            self.logprob_items.append(entry)
            out["logprobs"] = {"content": [entry]}
        return [out]

    def _call_done(self, event: ToolCall) -> list[dict[str, Any]]:
        call, self._open_call = self._open_call, None
        if call is not None:
            remember_call(call.id, event.recipient, event.channel, event.content_type)
            return []
        call = CallState(new_call_id(), tool_name(event.recipient), [event.arguments])
        self.calls.append(call)
        remember_call(call.id, event.recipient, event.channel, event.content_type)
        return [{"delta": {"tool_calls": [{
            "index": len(self.calls) - 1, "id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": event.arguments}}]}}]

    @property
    def finish_reason(self) -> str | None:
        if self.end is None:
            return None
        if self.end.reason == "call" and not self.calls:
            return "stop"
        return FINISH.get(self.end.reason)

    def message(self) -> dict[str, Any]:
        """The ``choices[0].message`` of a non-streamed completion."""
        reasoning = "".join(self.reasoning) or None
        msg: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None,
                               "reasoning": reasoning, "reasoning_content": reasoning,
                               "refusal": None}
        if self.calls:
            msg["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.name, "arguments": "".join(c.arguments)}} for c in self.calls]
        elif msg["content"] is None:
            msg["content"] = ""
        note = self.no_answer
        if note:
            msg["no_answer"] = note
        return msg


@dataclass
class TextOutput:
    """Accumulates a raw completion; ``feed`` returns text pieces with their logprobs."""

    logprobs: int | None = None
    text: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)
    stats: Stats | None = None
    end: TurnEnd | None = None
    _length: int = 0

    def feed(self, event: Event) -> list[tuple[str, dict[str, Any] | None]]:
        if isinstance(event, TokenLogprob) and self.logprobs is not None:
            piece = {"tokens": [event.text], "token_logprobs": [event.logprob],
                     "top_logprobs": [{t: lp for _, t, lp in event.top[:self.logprobs]}],
                     "text_offset": [self._length]}
            self.tokens.append(event.text)
            self.token_logprobs.append(event.logprob)
            self.top_logprobs.append(piece["top_logprobs"][0])
            self.text_offset.append(self._length)
            return [("", piece)]
        if isinstance(event, TextDelta) and event.recipient is None:
            self.text.append(event.text)
            self._length += len(event.text)
            return [(event.text, None)]
        if isinstance(event, Stats):
            self.stats = event
        elif isinstance(event, TurnEnd):
            self.end = event
        return []

    @property
    def finish_reason(self) -> str | None:
        if self.end is None:
            return None
        return "length" if self.end.reason == "length" else "stop"

    def logprobs_body(self) -> dict[str, Any] | None:
        if self.logprobs is None:
            return None
        return {"tokens": self.tokens, "token_logprobs": self.token_logprobs,
                "top_logprobs": self.top_logprobs, "text_offset": self.text_offset}
