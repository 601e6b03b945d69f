"""The multi-line prompt: Enter sends, Shift+Enter or Ctrl+J add a line, Up/Down recall."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

HELP = """\
Type a message and press **Enter** to send it. **Shift+Enter** or **Ctrl+J** starts a new line.
**Up** on the first line and **Down** on the last line recall earlier prompts.
Commands start with `\\` or `/`: `\\help`, `\\list`, `\\set name=value`, `\\clear`, `\\quit`.
"""


NEWLINE_KEYS = "shift+enter,ctrl+j"


class PromptInput(TextArea):
    """A TextArea that submits on Enter and keeps a history of sent prompts."""

    HELP = HELP
    BINDINGS = [
        Binding(NEWLINE_KEYS, "newline", "New line", show=False, id="prompt.newline"),
    ]

    @dataclass
    class Submitted(Message):
        """The person pressed Enter on a prompt."""

        input: PromptInput
        text: str

    def __init__(self, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         compact=True, placeholder="Message · Enter sends · Shift+Enter new "
                         "line · F1 help", **kwargs)
        self.prompt_history: list[str] = []
        self._history_index: int | None = None
        self._draft = ""

    def _newline_keys(self) -> set[str]:
        keys = getattr(self.app, "user_keymap", {}).get("prompt.newline", NEWLINE_KEYS)
        return {key.strip() for key in keys.split(",")}

    async def _on_key(self, event: events.Key) -> None:
        if event.key in self._newline_keys():
            # here, not through the binding: a binding's action runs later, so a character
            # typed right after it would land before the new line
            event.stop()
            event.prevent_default()
            self.action_newline()
            return
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self._submit()
            return
        if event.key == "up" and self.cursor_location[0] == 0 and self.prompt_history:
            event.stop()
            event.prevent_default()
            self._recall(-1)
            return
        if event.key == "down" and self._history_index is not None and \
                self.cursor_location[0] == self.document.line_count - 1:
            event.stop()
            event.prevent_default()
            self._recall(+1)
            return
        await super()._on_key(event)

    def action_newline(self) -> None:
        self.insert("\n")

    def _submit(self) -> None:
        text = self.text
        if not text.strip():
            return
        if not self.prompt_history or self.prompt_history[-1] != text:
            self.prompt_history.append(text)
        self._history_index = None
        self.post_message(self.Submitted(self, text))

    def _recall(self, step: int) -> None:
        if self._history_index is None:
            if step > 0:
                return
            self._draft = self.text
            index = len(self.prompt_history) - 1
        else:
            index = self._history_index + step
        if index >= len(self.prompt_history):
            self._history_index = None
            self.load_text(self._draft)
        else:
            self._history_index = max(0, index)
            self.load_text(self.prompt_history[self._history_index])
        self.move_cursor(self.document.end)

    def set_text(self, text: str) -> None:
        """Replace the content and put the cursor at the end."""
        self.load_text(text)
        self.move_cursor(self.document.end)
