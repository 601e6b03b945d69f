"""The state of one conversation: its messages and the edits a chat UI makes to them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from harmony_tui.engine.messages import Message


@dataclass
class ChatSession:
    """Messages in order; assistant turns are the messages after each user message."""

    messages: list[Message] = field(default_factory=list)

    def add_user(self, text: str) -> Message:
        message = Message("user", text)
        self.messages.append(message)
        return message

    def add_assistant(self, messages: Iterable[Message]) -> None:
        """Record what a turn produced (also a partial turn that was stopped)."""
        self.messages.extend(messages)

    def add_tool_result(self, result: Message) -> None:
        self.messages.append(result)

    def last_user_index(self) -> int | None:
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role == "user":
                return index
        return None

    def last_user_text(self) -> str | None:
        index = self.last_user_index()
        return None if index is None else self.messages[index].content

    def drop_last_reply(self) -> bool:
        """Forget the last assistant turn (to regenerate it); False if there is none."""
        index = self.last_user_index()
        if index is None:
            return False
        del self.messages[index + 1:]
        return True

    def drop_last_exchange(self) -> str | None:
        """Remove the last user message and its reply; returns the user text (to edit it)."""
        index = self.last_user_index()
        if index is None:
            return None
        text = self.messages[index].content
        del self.messages[index:]
        return text

    def clear(self) -> None:
        self.messages.clear()

    def final_answers(self) -> list[str]:
        return [m.content for m in self.messages if m.role == "assistant" and m.channel == "final"]
