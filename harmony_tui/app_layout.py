"""The app's layout: side panes by terminal width (again at every resize), the side column's
width, the conversation's title (part of ``HarmonyApp``)."""

from __future__ import annotations

from textual.widgets import Footer

from harmony_tui.app_server import WIDE
from harmony_tui.widgets.requests import WIDTH as REQUESTS_WIDTH
from harmony_tui.widgets.requests import RequestsPane

COMPACT_FOOTER = 120  # narrower: the footer's keys sit closer (whole words at 80 columns)


def side_width(width: int, requests: bool) -> int:
    """The side column: 42 columns, more on wide terminals (the conversation keeps a reading
    width), and room for every column of the requests pane when it shows."""
    wide = min(90, width - 110) if width >= 152 else 42
    return max(wide, REQUESTS_WIDTH) if requests and width >= 120 else wide


class LayoutMixin:
    """Responsive layout (part of ``HarmonyApp``)."""

    def on_resize(self, event) -> None:
        """Lay the panes out for the new width; a conversation that followed the stream
        keeps following it."""
        view = self.conversation
        following = view.scroll_y >= view.max_scroll_y - 1 or not view._anchor_released
        self._layout_panes(event.size.width)
        self.query_one(Footer).compact = event.size.width < COMPACT_FOOTER
        if following:
            self.call_after_refresh(view.anchor)

    def _layout_panes(self, width: int) -> None:
        wide = width >= WIDE
        for name in ("thinking", "settings"):
            if name not in self._panes_user_set:
                self.query_one(f"#{name}").display = wide
        if "tools" not in self._panes_user_set:
            self.tools.display = wide and bool(self.tools.entries)
        if "requests" not in self._panes_user_set:
            self.query_one(RequestsPane).display = wide and self.server is not None
        self._update_side()

    def _update_side(self) -> None:
        side = self.query_one("#side")
        side.display = any(self.query_one(f"#{n}").display for n in ("thinking", "tools",
                                                                         "requests", "settings"))
        side.styles.width = side_width(self.size.width, self.query_one(RequestsPane).display)

    def title_conversation(self) -> None:
        """The conversation's frame says the model and the chat."""
        session = self.session
        saved = session.path is not None and session.path.exists()
        # a chat not written yet is "new chat" (its file name is only a start time)
        chat = session.log.title or (session.path.stem if saved else "new chat")
        self.conversation.border_title = f"{self.model_name or self.model_spec} · {chat}"

    def show_tools_pane(self) -> None:
        """A tool was called: show the tool-call pane (unless the person hid it)."""
        if "tools" not in self._panes_user_set and self.size.width >= WIDE:
            self.tools.display = True
            self._update_side()
