"""Where a conversation's messages live and are recorded.

The app and ``generate`` record into a ``ChatSession`` (``sessions/chat.py``: saved as each
message completes). An API request keeps its messages in a ``MemoryTranscript``. Both offer what
the loop needs: the messages so far, a recorder per engine sub-turn, tool results, and marking a
stopped turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from harmony_tui.engine.messages import Message


class Recorder(Protocol):
    added_messages: list[Message]

    def add(self, message: Message) -> Any: ...

    def finish(self, messages: list[Message], stats: dict[str, Any] | None = None,
               finish_reason: str | None = None) -> None: ...


class Transcript(Protocol):
    @property
    def messages(self) -> list[Message]: ...

    def begin_turn(self, model: str | None, params: dict[str, Any]) -> Recorder: ...

    def add_tool_result(self, result: Message, tool_call_id: str | None = None,
                        is_error: bool = False) -> Any: ...

    def mark_stopped(self) -> None: ...


class MemoryTranscript:
    """Messages kept in memory only (an API request's conversation)."""

    def __init__(self, messages: Sequence[Message] = ()) -> None:
        self._messages = list(messages)
        self.stopped = False

    @property
    def messages(self) -> list[Message]:
        return list(self._messages)

    def begin_turn(self, model: str | None, params: dict[str, Any]) -> MemoryRecorder:
        return MemoryRecorder(self._messages)

    def add_tool_result(self, result: Message, tool_call_id: str | None = None,
                        is_error: bool = False) -> None:
        self._messages.append(result)

    def mark_stopped(self) -> None:
        self.stopped = True


class MemoryRecorder:
    """Appends a sub-turn's messages to a list as they complete."""

    def __init__(self, messages: list[Message]) -> None:
        self._messages = messages
        self.added_messages: list[Message] = []

    def add(self, message: Message) -> None:
        self._messages.append(message)
        self.added_messages.append(message)

    def finish(self, messages: list[Message], stats: dict[str, Any] | None = None,
               finish_reason: str | None = None) -> None:
        done = len(self.added_messages)
        rest = messages[done:] if messages[:done] == self.added_messages else [
            m for m in messages if m not in self.added_messages]
        for message in rest:
            self.add(message)
