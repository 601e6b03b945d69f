"""Ask the person before a tool runs code, writes files or reaches the network."""

from __future__ import annotations

from rich.syntax import Syntax
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static

from harmony_tui.text_safety import visible_controls
from harmony_tui.tools.base import ApprovalRequest

KIND_TEXT = {"code": "wants to run code", "files": "wants to change files",
             "network": "wants to reach the network", "none": "wants to run"}


class ApprovalScreen(ModalScreen[str]):
    """Allow once / allow for this chat / deny. Dismisses with "once", "chat" or "deny"."""

    BINDINGS = [
        Binding("y", "decide('once')", "Allow once", id="approval.once"),
        Binding("a", "decide('chat')", "Allow for this chat", id="approval.chat"),
        Binding("n,escape", "decide('deny')", "Deny", id="approval.deny"),
    ]

    def __init__(self, recipient: str, request: ApprovalRequest) -> None:
        super().__init__()
        self.recipient = recipient
        self.request = request

    def compose(self) -> ComposeResult:
        request = self.request
        with Vertical(id="approval-box", classes="dialog"):
            # the model's words: plain text (never markup), and every control or bidirectional
            # character shown as <U+XXXX>, so what is approved is exactly what runs
            title = f"{self.recipient} {KIND_TEXT.get(request.kind, 'wants to run')}: " \
                f"{request.title}"
            yield Label(Content(visible_controls(title)), id="approval-title")
            with VerticalScroll(id="approval-body"):
                body = Syntax(visible_controls(request.body, keep="\t\n"),
                              request.language or "text", word_wrap=True, theme="ansi_dark",
                              line_numbers=request.language == "python")
                yield Static(body, id="approval-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button(Content("Allow once [y]"), variant="success", id="once")
                yield Button(Content("Allow for this chat [a]"), variant="primary", id="chat")
                yield Button(Content("Deny [n]"), variant="error", id="deny")
        yield Footer()  # this screen's own keys, not the main screen's

    def on_mount(self) -> None:
        self.query_one("#deny", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "deny")

    def action_decide(self, decision: str) -> None:
        self.dismiss(decision)
