"""One conversation loop under every front end.

``Conversation.run_turn`` drives a whole user turn: engine sub-turns, the tool calls between them
(approval through an injected async approver), the call limit, and recording every message. It
yields one typed event stream: the engine's events (``engine/events.py``) and the loop's own
(``conversation/events.py``), ending with one ``TurnFinished``. The app, ``generate``, the API
server and voice render that stream and nothing else. Nothing here imports Textual or FastAPI.
"""

from harmony_tui.conversation.conversation import ActiveTurn, Conversation
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
from harmony_tui.conversation.routing import ApiCalls, CallPolicy, LocalCalls
from harmony_tui.conversation.transcript import MemoryTranscript, Transcript

__all__ = [
    "ActiveTurn",
    "ApiCalls",
    "CallPolicy",
    "Conversation",
    "LocalCalls",
    "MemoryTranscript",
    "SubTurnStarted",
    "ToolFinished",
    "ToolLimitReached",
    "ToolOff",
    "ToolRunning",
    "ToolStopped",
    "ToolWaiting",
    "Transcript",
    "TurnFinished",
]
