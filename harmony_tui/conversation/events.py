"""The conversation loop's own events, beside the engine's (``engine/events.py``).

A turn's stream is: the engine events of its first sub-turn (without their ``TurnEnd``), then for
each round of tool calls ``ToolWaiting``/``ToolRunning``/``ToolFinished`` (or ``ToolOff``,
``ToolStopped``, ``ToolLimitReached``), a ``SubTurnStarted`` and the next sub-turn's engine
events, and last one ``TurnFinished``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harmony_tui.engine.events import Stats, ToolCall, TurnEnd

ToolStatus = Literal["done", "error", "denied", "limit", "refused"]


@dataclass(frozen=True, slots=True)
class ToolWaiting:
    """The call waits for the person's approval."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolRunning:
    """The call runs (approved, or no approval needed)."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolFinished:
    """The call has its answer, which the model reads next.

    ``status``: ``done``, ``error`` (the tool failed), ``denied`` (the person said no),
    ``limit`` (``max_calls_per_turn`` reached: not run), ``refused`` (no tool here answers it).
    """

    call: ToolCall
    status: ToolStatus
    text: str
    duration_s: float = 0.0
    decision: str = "auto"


@dataclass(frozen=True, slots=True)
class ToolOff:
    """No enabled tool answers the call; ``tool`` is the tool that would (or the recipient),
    ``hint`` says how to turn it on."""

    call: ToolCall
    tool: str
    hint: str


@dataclass(frozen=True, slots=True)
class ToolStopped:
    """The turn was stopped while this call ran or waited for approval."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolLimitReached:
    """The model called again after being told the limit was reached: the turn ends."""

    limit: int


@dataclass(frozen=True, slots=True)
class SubTurnStarted:
    """The engine continues the turn after tool answers (``index`` 1, 2, ...)."""

    index: int


@dataclass(frozen=True, slots=True)
class TurnFinished:
    """The whole user turn is over and recorded.

    ``end`` is the last sub-turn's ``TurnEnd``, its ``reason`` ``cancelled`` when the turn was
    stopped, its ``tool_calls`` those left unanswered (for the caller: an API client's own
    functions, tools that are off). ``answer`` is the final text of the last sub-turn with
    browser citations rendered; ``stats`` sums every sub-turn; ``no_answer`` says why there is
    no answer (None when there is one, or the turn was stopped or failed).
    """

    end: TurnEnd
    answer: str = ""
    stats: Stats | None = None
    no_answer: str | None = None
    calls: int = 0
    subturns: int = 1
    outcomes: tuple = field(default_factory=tuple)  # ToolOutcome of every call that ran

    @property
    def reason(self) -> str:
        return self.end.reason
