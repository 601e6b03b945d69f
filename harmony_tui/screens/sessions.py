"""Ctrl+S: the saved chats — search, open, rename, delete (confirmed) and export to Markdown.

A chat another harmony-tui process has open is marked with a lock; it cannot be opened,
renamed or deleted here until that process lets it go.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from harmony_tui import paths
from harmony_tui.errors import HarmonyTuiError
from harmony_tui.sessions.chat import ChatSession
from harmony_tui.sessions.export import to_markdown
from harmony_tui.sessions.lock import save_error, sweep_stale_files
from harmony_tui.sessions.store import (
    ChatSummary,
    delete_chat,
    free_path,
    list_chats,
    read_chat,
    rename_chat,
)

HELP = ("Type to search titles and text; ↓ moves to the list. Enter opens the chat; F2 renames; "
        "Del (in the list) deletes, asking first; Ctrl+E exports to Markdown beside the chat; "
        "Esc closes. 🔒 marks a chat open in another harmony-tui process.")


def matches(row: ChatSummary, query: str) -> bool:
    query = query.strip().lower()
    return not query or query in row.title.lower() or query in row.text.lower() \
        or query in row.name.lower()


def short_time(iso: str) -> str:
    return iso.replace("T", " ")[:16]


class ConfirmScreen(ModalScreen[bool]):
    """Yes / no."""

    BINDINGS = [Binding("escape,n", "dismiss(False)", "No", id="confirm.no"),
                Binding("y", "dismiss(True)", "Yes", id="confirm.yes")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Label(Content(self.question), id="confirm-question")  # names: plain text
            with Horizontal(classes="dialog-buttons"):
                yield Button("Delete", variant="error", id="yes")
                yield Button("Cancel", id="no")
        yield Footer()  # this screen's own keys, not the main screen's

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class RenameScreen(ModalScreen[str | None]):
    """Ask for a new chat name."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="rename.cancel")]

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="rename-box", classes="dialog"):
            yield Label(Content(f"Rename {self.current!r} to:"))
            yield Input(self.current, id="rename-input")
        yield Footer()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        self.dismiss(value if value and value != self.current else None)


class SessionsScreen(ModalScreen[Path | None]):
    """Every chat in ``chats_dir``; dismisses with the path to open (or None)."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="sessions.close"),
        Binding("f2", "rename", "Rename", id="sessions.rename"),
        Binding("delete", "delete", "Delete", id="sessions.delete"),
        # Priority: the search box would otherwise take Ctrl+E as "cursor to end".
        Binding("ctrl+e", "export", "Export", id="sessions.export", priority=True),
    ]

    def __init__(self, chats_dir: Path, current: Path | None = None) -> None:
        super().__init__()
        self.chats_dir = chats_dir
        self.current = current
        self.rows: list[ChatSummary] = []
        self.shown: list[ChatSummary] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="sessions-box", classes="dialog"):
            yield Label(Content(f"Chats in {self.chats_dir}"), id="sessions-title")
            yield Input(placeholder="search titles and text…", id="sessions-search")
            yield DataTable(id="sessions-table", cursor_type="row", zebra_stripes=True)
            yield Static(HELP, id="sessions-help")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Title", "Updated", "Msgs", "Model", "File")
        self.reload()
        self.query_one("#sessions-search", Input).focus()

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    def reload(self) -> None:
        sweep_stale_files(self.chats_dir)  # temp and lock files of killed processes
        self.rows = list_chats(self.chats_dir)
        self.refilter()

    def refilter(self) -> None:
        query = self.query_one("#sessions-search", Input).value
        self.shown = [row for row in self.rows if matches(row, query)]
        table = self.table
        table.clear()
        for row in self.shown:
            title = ("⚠ " + row.title) if row.error else row.title
            if row.holder is not None:
                title = "🔒 " + title
            if self.current is not None and row.path == self.current:
                title = "● " + title
            table.add_row(title, short_time(row.updated_at), str(row.messages),
                          row.model or "", row.path.name, key=str(row.path))
        if not self.shown:
            self.query_one("#sessions-help", Static).update(
                "No chats match." if self.rows else "No saved chats yet.")
        else:
            self.query_one("#sessions-help", Static).update(HELP)

    def selected(self) -> ChatSummary | None:
        if not self.shown:
            return None
        index = self.table.cursor_row
        return self.shown[index] if 0 <= index < len(self.shown) else None

    @on(Input.Changed, "#sessions-search")
    def _search(self) -> None:
        self.refilter()

    @on(Input.Submitted, "#sessions-search")
    def _search_enter(self) -> None:
        self.open_selected()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.open_selected()

    def on_key(self, event) -> None:
        if event.key in ("up", "down", "pageup", "pagedown") and \
                self.focused is self.query_one("#sessions-search", Input):
            self.table.focus()
            self.table.action_cursor_up() if event.key == "up" else None
            if event.key == "down":
                self.table.action_cursor_down()
            event.stop()

    def _held(self, row: ChatSummary, what: str) -> bool:
        """Say so and return True if another process has the chat open."""
        if row.holder is None:
            return False
        pid = f"pid {row.holder}" if row.holder else "pid unknown"
        self.notify(f"{row.path.name} is open in another harmony-tui process ({pid}); close it "
                    f"there to {what} it", severity="error", timeout=10)
        return True

    def open_selected(self) -> None:
        row = self.selected()
        if row is None or self._held(row, "open"):
            return
        if row.error:
            self.notify(f"{row.path.name}: {row.error}", severity="error", timeout=10)
            return
        self.dismiss(row.path)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_rename(self) -> None:
        row = self.selected()
        if row is None or row.error or self._held(row, "rename"):
            return

        def done(name: str | None) -> None:
            if not name:
                return
            # The open chat is renamed through its session: it keeps saving (and holding its
            # lock) under the new name. Any other chat is renamed under its lock.
            session = getattr(self.app, "session", None)
            is_open = isinstance(session, ChatSession) and session.path == row.path
            try:
                target = session.rename(name) if is_open else rename_chat(row.path, name)
            except (HarmonyTuiError, OSError) as err:  # taken, held elsewhere, read-only ...
                self.notify(str(err), severity="error", timeout=10)
                return
            if self.current is not None and row.path == self.current:
                self.current = target
                self.app.post_message(ChatRenamed(row.path, target))
            self.notify(f"Renamed to {target.name}")
            self.reload()

        self.app.push_screen(RenameScreen(row.name), done)

    def action_delete(self) -> None:
        row = self.selected()
        if row is None or self._held(row, "delete"):
            return
        if self.current is not None and row.path == self.current:
            self.notify("This is the open chat; start a new one (Ctrl+N) before deleting it",
                        severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                try:
                    delete_chat(row.path)  # refused if another process took it meanwhile
                except (HarmonyTuiError, OSError) as err:
                    self.notify(str(err), severity="error", timeout=10)
                    return
                self.notify(f"Deleted {row.path.name}")
                self.reload()

        self.app.push_screen(ConfirmScreen(f"Delete {row.title!r} ({row.path.name})? "
                                           "This cannot be undone."), done)

    def action_export(self) -> None:
        row = self.selected()
        if row is None or row.error:
            return
        try:
            log = read_chat(row.path)
            target = free_path(row.path.with_suffix(".md"))
            try:
                paths.atomic_write_text(target, to_markdown(log))
            except OSError as err:
                raise save_error(target, err) from err
        except HarmonyTuiError as err:
            self.notify(str(err), severity="error", timeout=10)
            return
        self.notify(f"Exported to {target}", timeout=8)


from textual.message import Message as _Message  # noqa: E402


class ChatRenamed(_Message):
    """The open chat's file was renamed."""

    def __init__(self, old: Path, new: Path) -> None:
        super().__init__()
        self.old = old
        self.new = new
