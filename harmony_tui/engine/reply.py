"""A whole turn's reply, gathered from its events; and the per-token path that makes them.

``TurnOutput`` is shared by the serial and the batched generation paths: it feeds each sampled
token to the format's decoder, applies the request's stop strings to the final answer and adds
log-probabilities when asked. ``RawDecoder`` is the decoder of raw-prompt (completion) turns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harmony_tui.engine.events import (
    ContextTrimmed,
    EndReason,
    Event,
    MessageDone,
    ParseIssue,
    Stats,
    TextDelta,
    TokenLogprob,
    ToolCall,
    TurnEnd,
)
from harmony_tui.engine.messages import Message


@dataclass
class Reply:
    """The outcome of one turn: texts per channel, tool calls, stats and how it ended."""

    final: str = ""
    analysis: str = ""
    commentary: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    stats: Stats | None = None
    reason: EndReason = "error"
    error: str | None = None
    issues: list[ParseIssue] = field(default_factory=list)
    trimmed: ContextTrimmed | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)

    @property
    def no_answer(self) -> str | None:
        """Why the turn gave no answer (no final text, no tool call), or None."""
        return missing_answer(self.reason, bool(self.final.strip() or self.tool_calls),
                              bool(self.analysis.strip()))

    def to_json(self) -> dict[str, Any]:
        """The ``harmony-tui generate --json`` object."""
        return {
            "final": self.final,
            "analysis": self.analysis,
            "tool_calls": [
                {"recipient": c.recipient, "arguments": c.parsed if c.parsed is not None
                 else c.arguments}
                for c in self.tool_calls
            ],
            "stats": self.stats.to_dict() if self.stats else None,
            "finish_reason": self.reason,
            "no_answer": self.no_answer,
            "error": self.error,
        }


def missing_answer(reason: EndReason, answered: bool, reasoned: bool) -> str | None:
    """A one-line note for a turn that ended on its own (``return``) or at the token limit
    (``length``) without an answer; None when it answered or was stopped, cancelled or failed."""
    if answered:
        return None
    if reason == "length":
        return "the token limit was reached before the model wrote an answer"
    if reason in ("return", "call"):
        return ("the model stopped after its reasoning without writing an answer" if reasoned
                else "the model ended its turn without writing an answer")
    return None


def collect_reply(events: Iterable[Event]) -> Reply:
    """Consume ``events`` up to ``TurnEnd`` into a Reply."""
    reply = Reply()
    parts: dict[str, list[str]] = {"final": [], "analysis": [], "commentary": []}
    for event in events:
        if isinstance(event, TextDelta):
            if event.recipient is None and event.channel in parts:
                parts[event.channel].append(event.text)
        elif isinstance(event, ToolCall):
            reply.tool_calls.append(event)
        elif isinstance(event, Stats):
            reply.stats = event
        elif isinstance(event, ParseIssue):
            reply.issues.append(event)
        elif isinstance(event, ContextTrimmed):
            reply.trimmed = event
        elif isinstance(event, TokenLogprob):
            reply.logprobs.append(event)
        elif isinstance(event, TurnEnd):
            reply.reason = event.reason
            reply.error = event.error
            reply.messages = list(event.messages)
            break
    reply.final = "".join(parts["final"])
    reply.analysis = "".join(parts["analysis"])
    reply.commentary = "".join(parts["commentary"])
    return reply


# -- the per-token path ----------------------------------------------------------------------


def _is_answer(event: Event) -> bool:
    return isinstance(event, TextDelta) and event.channel == "final" and event.recipient is None


class StopFilter:
    """Ends the final answer at the first of ``stops``; the stop string itself is never shown.

    Text that could be the start of a stop string is held back until the next delta decides.
    Only the final channel (no recipient) is searched: thinking and tool calls never stop a turn.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.hit = False
        self._held = ""
        self._shown: list[str] = []

    def _holdback(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that begins some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best

    def _emit(self, text: str, like: TextDelta, out: list[Event]) -> None:
        if text:
            self._shown.append(text)
            out.append(TextDelta(like.channel, text, like.recipient))

    def _flush_held(self, out: list[Event]) -> None:
        if self._held:
            self._emit(self._held, TextDelta("final", ""), out)
            self._held = ""

    def filter(self, events: Iterable[Event]) -> list[Event]:
        """``events`` with the answer cut at a stop string; drops everything after a hit."""
        if not self.stops:
            return list(events)
        out: list[Event] = []
        for event in events:
            if self.hit:
                break
            if isinstance(event, TextDelta) and _is_answer(event):
                text = self._held + event.text
                found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
                if found:
                    self._held = ""
                    self._emit(text[: min(found)], event, out)
                    self.hit = True
                    break
                keep = self._holdback(text)
                self._held = text[len(text) - keep:]
                self._emit(text[: len(text) - keep], event, out)
                continue
            self._flush_held(out)
            if isinstance(event, MessageDone) and event.message.channel == "final" \
                    and not event.message.recipient:
                self._shown = []
            out.append(event)
        return out

    def close(self, events: Iterable[Event]) -> list[Event]:
        """The decoder's closing events: held text flushed, or the cut answer's message fixed."""
        if not self.stops:
            return list(events)
        if not self.hit:
            return self.filter(events)
        return [MessageDone(self.fix(e.message)) if isinstance(e, MessageDone) else e
                for e in events]

    def fix(self, message: Message) -> Message:
        """The answer message as shown (cut before the stop string) after a hit."""
        if self.hit and message.role == "assistant" and message.channel == "final" \
                and not message.recipient:
            return dataclasses.replace(message, content="".join(self._shown))
        return message


class RawDecoder:
    """Decoder for raw prompts: every generated token is plain text on the final channel.

    Special tokens are shown as their markup; stop tokens end the turn and are not shown. Text
    is emitted once its UTF-8 is complete.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], stop_tokens: Iterable[int]) -> None:
        self._decode = decode
        self._stop = frozenset(stop_tokens)
        self.finished: EndReason | None = None
        self.messages: list[Message] = []
        self.tool_calls: list[ToolCall] = []
        self._pending: list[int] = []
        self._text: list[str] = []

    def feed(self, token: int) -> list[Event]:
        if token in self._stop:
            return []
        self._pending.append(token)
        text = self._decode(self._pending)
        if text.endswith("\ufffd") and len(self._pending) < 4:
            return []
        self._pending = []
        self._text.append(text)
        return [TextDelta("final", text)]

    def finish(self) -> list[Event]:
        out: list[Event] = []
        if self._pending:
            text = self._decode(self._pending)
            self._pending = []
            self._text.append(text)
            out.append(TextDelta("final", text))
        msg = Message("assistant", "".join(self._text), channel="final")
        self.messages.append(msg)
        out.append(MessageDone(msg))
        return out


def token_logprob(decode: Callable[[Sequence[int]], str], token: int, logprobs: Any,
                  top: int) -> TokenLogprob:
    """The ``TokenLogprob`` of ``token`` from a vocabulary-sized MLX log-probability array."""
    import mlx.core as mx

    row = logprobs.reshape(-1)
    pairs: list[tuple[int, float]] = []
    if top > 0:
        top = min(top, row.shape[0])
        ids = mx.argpartition(-row, kth=top - 1)[:top]
        pairs = sorted(zip(ids.tolist(), row[ids].tolist(), strict=True), key=lambda p: -p[1])
    return TokenLogprob(token, decode([token]), float(row[token].item()),
                        tuple((t, decode([t]), v) for t, v in pairs))


class TurnOutput:
    """Feeds one turn's sampled tokens through its decoder, stop strings and logprobs.

    ``put`` receives every event. ``feed`` returns why the turn must end after this token
    (``return`` / ``call`` from the model, ``stop`` for a stop string), or None to go on.
    """

    def __init__(self, decoder: Any, fmt: Any, put: Callable[[Event], None],
                 stop: Sequence[str] = (), logprobs: int | None = None) -> None:
        self.decoder = decoder
        self._fmt = fmt
        self._put = put
        self._stops = StopFilter(stop)
        self._logprobs = logprobs

    def feed(self, token: int, logprobs: Any = None) -> EndReason | None:
        put = self._put
        if self._logprobs is not None and logprobs is not None:
            put(token_logprob(self._fmt.decode, token, logprobs, self._logprobs))
        for event in self._stops.filter(self.decoder.feed(token)):
            put(event)
        if self._stops.hit:
            return "stop"
        if self.decoder.finished:
            return self.decoder.finished
        if token in self._fmt.stop_tokens:
            return "return"
        return None

    def close(self) -> tuple[tuple[Message, ...], tuple[ToolCall, ...]]:
        """Flush the decoder; the turn's messages (answer cut at a stop) and tool calls."""
        for event in self._stops.close(self.decoder.finish()):
            self._put(event)
        messages = list(self.decoder.messages)
        if messages:
            messages[-1] = self._stops.fix(messages[-1])
        return tuple(messages), tuple(self.decoder.tool_calls)
