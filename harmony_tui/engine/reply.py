"""A whole turn's reply, gathered from its events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harmony_tui.engine.events import (
    ContextTrimmed,
    EndReason,
    Event,
    ParseIssue,
    Stats,
    TextDelta,
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
            "error": self.error,
        }


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
        elif isinstance(event, TurnEnd):
            reply.reason = event.reason
            reply.error = event.error
            reply.messages = list(event.messages)
            break
    reply.final = "".join(parts["final"])
    reply.analysis = "".join(parts["analysis"])
    reply.commentary = "".join(parts["commentary"])
    return reply
