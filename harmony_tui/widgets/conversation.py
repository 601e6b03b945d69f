"""The conversation: a scrolling list of messages that sticks to the bottom while streaming.

Only the newest messages stay mounted (``max_mounted``); older ones are kept as data and come
back, a page at a time, with the "earlier messages" button at the top.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Button

from harmony_tui.widgets.messages import AssistantMessage, SystemNote, UserMessage
from harmony_tui.widgets.sizing import OneLayoutPass

HELP = """\
The conversation. It follows new text while the model writes, unless you scroll up; scroll
back down to follow again. Long chats keep only the newest messages on screen: use the
**earlier messages** button at the top to bring older ones back.
"""


@dataclass
class Entry:
    """What a message widget shows, so it can be rebuilt after pruning."""

    kind: str  # user | assistant | note
    text: str = ""
    thinking: str = ""
    notes: list[str] = field(default_factory=list)
    model: str = ""
    error: bool = False
    parts: list[tuple[str, object]] | None = None  # an assistant turn's parts, in order


class ConversationView(OneLayoutPass, VerticalScroll):
    """Message widgets in order, newest at the bottom."""

    HELP = HELP

    def __init__(self, markdown: bool = True, truncate_thinking: int | None = None,
                 truncate_response: int | None = None, max_mounted: int = 40,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.markdown = markdown
        self.truncate_thinking = truncate_thinking
        self.truncate_response = truncate_response
        self.max_mounted = max_mounted
        self.entries: list[Entry] = []
        self._widgets: list[Widget] = []  # widgets of entries[first_mounted:]
        self.first_mounted = 0
        self._earlier = Button("earlier messages", id="earlier", classes="earlier")
        self._earlier.display = False

    def on_mount(self) -> None:
        self.mount(self._earlier)
        self.anchor()

    # -- adding ---------------------------------------------------------------------------------

    async def add_user(self, text: str) -> UserMessage:
        widget = UserMessage(text)
        await self._append(Entry("user", text), widget)
        return widget

    async def add_assistant(self, model: str) -> AssistantMessage:
        widget = self._assistant_widget(model)
        await self._append(Entry("assistant", model=model), widget)
        return widget

    async def add_note(self, text: str, error: bool = False) -> SystemNote:
        widget = SystemNote(text, error=error)
        await self._append(Entry("note", text, error=error), widget)
        return widget

    async def load_entries(self, entries: list[Entry]) -> None:
        """Show finished entries (a resumed chat), mounting only the newest ``max_mounted``."""
        start = len(self.entries)
        self.entries.extend(entries)
        first = max(start, len(self.entries) - self.max_mounted)
        if first > start:  # older entries stay unmounted behind the "earlier" button
            for widget in self._widgets:
                await widget.remove()
            self._widgets.clear()
            self.first_mounted = first
        widgets = [self._rebuild(entry) for entry in self.entries[first:]]
        if widgets:
            await self.mount_all(widgets)
        self._widgets.extend(widgets)
        await self._prune()

    def _assistant_widget(self, model: str) -> AssistantMessage:
        return AssistantMessage(model, markdown=self.markdown,
                                truncate_thinking=self.truncate_thinking,
                                truncate_response=self.truncate_response)

    async def _append(self, entry: Entry, widget: Widget) -> None:
        self.entries.append(entry)
        self._widgets.append(widget)
        await self.mount(widget)
        await self._prune()

    # -- pruning ----------------------------------------------------------------------------------

    def _sync(self, index: int) -> None:
        """Copy a mounted assistant widget's content into its entry."""
        widget = self._widgets[index - self.first_mounted]
        entry = self.entries[index]
        if isinstance(widget, AssistantMessage):
            entry.text, entry.thinking, entry.notes = widget.answer, widget.thinking, \
                list(widget.notes)
            entry.parts = list(widget.parts)

    async def _prune(self) -> None:
        while len(self._widgets) > self.max_mounted:
            self._sync(self.first_mounted)
            oldest = self._widgets.pop(0)
            self.first_mounted += 1
            await oldest.remove()
        self._update_earlier()

    def _update_earlier(self) -> None:
        self._earlier.display = self.first_mounted > 0
        self._earlier.label = f"▲ {self.first_mounted} earlier messages"

    async def show_earlier(self, count: int = 20) -> None:
        """Mount up to ``count`` older messages above the mounted ones."""
        start = max(0, self.first_mounted - count)
        widgets = [self._rebuild(self.entries[i]) for i in range(start, self.first_mounted)]
        if widgets:
            await self.mount_all(widgets, after=self._earlier)
        self._widgets[:0] = widgets
        self.first_mounted = start
        self._update_earlier()

    def _rebuild(self, entry: Entry) -> Widget:
        if entry.kind == "user":
            return UserMessage(entry.text)
        if entry.kind == "note":
            return SystemNote(entry.text, error=entry.error)
        return AssistantMessage(entry.model, markdown=self.markdown,
                                truncate_thinking=self.truncate_thinking,
                                truncate_response=self.truncate_response, answer=entry.text,
                                thinking=entry.thinking, notes=tuple(entry.notes),
                                parts=None if entry.parts is None else tuple(entry.parts))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button is self._earlier:
            event.stop()
            self.release_anchor()
            self.run_worker(self.show_earlier(), exclusive=True, group="earlier")

    # -- removing -------------------------------------------------------------------------------

    async def truncate(self, count: int) -> None:
        """Keep only the first ``count`` entries."""
        while len(self.entries) > count:
            self.entries.pop()
            if self._widgets and len(self.entries) >= self.first_mounted:
                await self._widgets.pop().remove()
        self.first_mounted = min(self.first_mounted, len(self.entries))
        self._update_earlier()

    async def clear(self) -> None:
        await self.truncate(0)

    def last_assistant(self) -> AssistantMessage | None:
        for widget in reversed(self._widgets):
            if isinstance(widget, AssistantMessage):
                return widget
        return None

    def assistant_entries(self) -> list[Entry]:
        for index in range(self.first_mounted, len(self.entries)):
            self._sync(index)
        return [e for e in self.entries if e.kind == "assistant"]
