"""Side panes: the live thinking stream and the tool-call log."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Collapsible, Static, TextArea

from harmony_tui.text_safety import terminal_safe
from harmony_tui.widgets.tool_view import arguments_view

THINKING_HELP = """\
The model's thinking (Harmony's analysis channel and commentary) for the current turn, as it
is generated. Earlier turns' thinking is folded inside their messages. Toggle with **F2**.
"""

TOOLS_HELP = """\
One entry per tool call the model makes: the tool, its arguments, status, duration and
result. Open an entry with Enter or a click. Toggle with **F3**.
"""


EMPTY_THINKING = "The model's thinking shows here while it answers."
EMPTY_TOOLS = "No tool calls in this chat yet."
MESSAGE_RULE = "\n\n───\n"


class ThinkingPane(Vertical):
    """A cheap append-only log of the current turn's thinking."""

    HELP = THINKING_HELP
    DEFAULT_CLASSES = "pane"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Thinking"
        self.text = ""

    def compose(self) -> ComposeResult:
        yield TextArea(read_only=True, soft_wrap=True, show_cursor=False, compact=True,
                       placeholder=EMPTY_THINKING, id="thinking-log")

    def on_mount(self) -> None:
        self.add_class("empty")

    def start_turn(self, title: str) -> None:
        self.text = ""
        self.query_one(TextArea).load_text("")
        self.border_subtitle = title
        self.add_class("empty")

    def write(self, text: str, channel: str = "analysis", new_message: bool = False) -> None:
        """Append text; stays scrolled to the end unless the person scrolled up. A new thinking
        message (``new_message``) is set apart by a rule."""
        if new_message and self.text:
            text = MESSAGE_RULE + text.lstrip("\n")
        if not self.text:
            self.remove_class("empty")
        self.text += text
        area = self.query_one(TextArea)
        follow = area.scroll_y >= area.max_scroll_y - 1
        area.insert(terminal_safe(text), area.document.end, maintain_selection_offset=False)
        if follow:
            area.scroll_end(animate=False, immediate=True)


class ToolCallEntry(Collapsible):
    """One call: tool, arguments, status, duration, result.

    Everything shown comes from the model or a tool and is untrusted: it is shown as plain text
    (never markup) with escape sequences and control characters removed (``terminal_safe``).
    """

    def __init__(self, call_id: str, recipient: str, arguments: str,
                 content_type: str | None) -> None:
        self.call_id = call_id
        self.recipient = recipient
        self.arguments = arguments
        self.status = "requested"
        self.result: str | None = None
        self.started = time.monotonic()
        self.duration: float | None = None
        super().__init__(Static(arguments_view(recipient, arguments, content_type),
                                classes="tool-args"),
                         Static("", classes="tool-result"),
                         title=self.title_text(), collapsed=True)

    def title_text(self) -> Content:
        """The title as plain text (a recipient is the model's words, never markup)."""
        took = f" · {self.duration:.2f}s" if self.duration is not None else ""
        return Content(terminal_safe(f"{self.recipient} · {self.status}{took}"))

    def set_status(self, status: str, result: str | None = None) -> None:
        self.status = status
        if status == "running":
            self.started = time.monotonic()
        elif status not in ("requested", "waiting for approval"):
            self.duration = time.monotonic() - self.started
        if result is not None:
            self.result = result
            self.query_one(".tool-result", Static).update(Text(terminal_safe(result)))
        self.title = self.title_text()


class ToolCallsPane(VerticalScroll):
    """The log of tool calls in this chat."""

    HELP = TOOLS_HELP
    DEFAULT_CLASSES = "pane"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Tool calls"
        self.entries: dict[str, ToolCallEntry] = {}

    def compose(self) -> ComposeResult:
        yield Static(EMPTY_TOOLS, classes="empty-hint")

    async def add_call(self, call_id: str, recipient: str, arguments: str,
                       content_type: str | None) -> ToolCallEntry:
        self.query_one(".empty-hint").display = False
        entry = ToolCallEntry(call_id, recipient, arguments, content_type)
        self.entries[call_id] = entry
        await self.mount(entry)
        self.scroll_end(animate=False)
        return entry

    async def clear(self) -> None:
        self.entries.clear()
        await self.remove_children(ToolCallEntry)
        self.query_one(".empty-hint").display = True
