"""Typed events a turn produces, in order.

A turn emits ``TurnStart``, then any of ``PromptProgress`` / ``ContextTrimmed`` /
``TokenProgress`` / ``TokenLogprob`` / ``TextDelta`` / ``ToolCall`` / ``MessageDone`` /
``ParseIssue``, then ``Stats`` and finally exactly one ``TurnEnd``. ``TokenLogprob`` only comes
when the request asked for log-probabilities; it precedes the events its token produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from harmony_tui.engine.messages import Message

EndReason = Literal["return", "call", "length", "stop", "cancelled", "error"]


@dataclass(frozen=True, slots=True)
class TurnStart:
    """The request was accepted and its prompt rendered."""

    request_id: str
    prompt_tokens: int
    cached_tokens: int
    params: Any  # GenerationParams in force for this turn


@dataclass(frozen=True, slots=True)
class PromptProgress:
    """Prefill progress: ``processed`` of ``total`` prompt tokens are in the cache."""

    processed: int
    total: int


@dataclass(frozen=True, slots=True)
class ContextTrimmed:
    """Old turns were dropped so the prompt fits ``max_context_tokens``.

    The request's messages ``first_dropped`` up to (not including) ``first_dropped +
    dropped_messages`` were left out (the system/developer messages before them are kept).
    Trims drop several turns at once and then stay put for a while, so consecutive turns of a
    chat often repeat the same trim: ``new`` is False when this engine already reported the same
    trim of the same conversation; a front end shows the notice when ``new`` is True.
    """

    dropped_messages: int
    dropped_tokens: int
    limit: int
    first_dropped: int = 0
    new: bool = True


@dataclass(frozen=True, slots=True)
class TokenProgress:
    """Generation progress, sent with the first token and then every few tokens."""

    generated: int
    ttft_s: float
    generation_tps: float


@dataclass(frozen=True, slots=True)
class TextDelta:
    """New text on a channel. With a ``recipient`` it is tool-call argument text."""

    channel: str
    text: str
    recipient: str | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A sampled token's log-probability and, when asked for, the most likely alternatives.

    ``top`` holds ``(token, text, logprob)`` triples, most likely first. ``text`` is the token
    decoded alone (a partial UTF-8 character decodes to U+FFFD).
    """

    token: int
    text: str
    logprob: float
    top: tuple[tuple[int, str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model called a tool: ``recipient`` is ``functions.NAME``, ``python``, ``browser.x``.

    ``arguments`` is the raw text; ``parsed`` the decoded JSON when the content is JSON, and
    ``error`` says why it could not be decoded.
    """

    call_id: str
    recipient: str
    channel: str
    content_type: str | None
    arguments: str
    parsed: Any = None
    error: str | None = None

    @property
    def name(self) -> str:
        """The function name for ``functions.NAME``, else the recipient."""
        return self.recipient.split(".", 1)[1] if self.recipient.startswith("functions.") else (
            self.recipient
        )


@dataclass(frozen=True, slots=True)
class MessageDone:
    """A complete assistant message (analysis, commentary, final or a tool call)."""

    message: Message


@dataclass(frozen=True, slots=True)
class ParseIssue:
    """Model output that did not follow the format; ``detail`` says what was repaired."""

    detail: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class Stats:
    """Timing and size figures for the turn."""

    prompt_tokens: int
    cached_tokens: int
    generation_tokens: int
    ttft_s: float
    prompt_tps: float
    generation_tps: float
    peak_memory_gb: float
    kv_cache_bytes: int = 0  # the turn's KV cache at its end
    kv_saved_bytes: int = 0  # what KV quantization saves in it against full precision
    # Speculative decoding (0 / None without it): tokens drafted, drafts the model accepted,
    # the model's forward passes while decoding, and generation_tps over the speed of this
    # engine's last plain turn on the same model (None: no plain turn yet).
    draft_tokens: int = 0
    accepted_tokens: int = 0
    verify_steps: int = 0
    speedup: float | None = None

    @property
    def acceptance(self) -> float | None:
        """Accepted drafts / drafted tokens (None: nothing was drafted)."""
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "generation_tokens": self.generation_tokens,
            "ttft_s": round(self.ttft_s, 4),
            "prompt_tps": round(self.prompt_tps, 2),
            "generation_tps": round(self.generation_tps, 2),
            "peak_memory_gb": round(self.peak_memory_gb, 4),
            "kv_cache_bytes": self.kv_cache_bytes,
            "kv_saved_bytes": self.kv_saved_bytes,
            **({"draft_tokens": self.draft_tokens, "accepted_tokens": self.accepted_tokens,
                "verify_steps": self.verify_steps,
                "speedup": None if self.speedup is None else round(self.speedup, 3)}
               if self.verify_steps else {}),
        }


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """The turn is over. ``messages`` are the assistant messages it produced (partial ones too).

    ``error_code`` classifies an error for API clients (``context_length_exceeded``, or None).
    ``reason == "stop"`` means a stop string of the request ended the answer.
    """

    reason: EndReason
    messages: tuple[Message, ...] = ()
    error: str | None = None
    tool_calls: tuple[ToolCall, ...] = field(default_factory=tuple)
    error_code: str | None = None


Event = (
    TurnStart | PromptProgress | ContextTrimmed | TokenProgress | TokenLogprob | TextDelta
    | ToolCall | MessageDone | ParseIssue | Stats | TurnEnd
)
