"""F1: every key binding (with its id, for the keymap) and every prompt command."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Markdown

from harmony_tui.commands import COMMANDS


def bindings_table(bindings: list[tuple[str, str, str]]) -> str:
    rows = "\n".join(f"| `{keys}` | {description} | `{binding_id}` |"
                     for binding_id, keys, description in bindings)
    return "| Keys | Action | Binding id |\n|---|---|---|\n" + rows


def help_markdown(bindings: list[tuple[str, str, str]], widget_help: list[tuple[str, str]]) -> str:
    commands = "\n".join(f"| `\\{name}` | {text} |" for name, text in COMMANDS.items())
    parts = [
        "# harmony-tui help",
        "Press **Esc** or **F1** to close. Remap any key in `config.yaml` under `keymap:` "
        "with the binding id, e.g. `keymap: {stop: ctrl+c}`.",
        "## Keys",
        bindings_table(bindings),
        "## Commands typed in the prompt",
        "Start with `\\` or `/`; `q` alone also quits.",
        "| Command | Does |\n|---|---|\n" + commands,
    ]
    for title, text in widget_help:
        parts += [f"## {title}", text]
    return "\n\n".join(parts)


class HelpScreen(ModalScreen[None]):
    """A scrollable page of help."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close", id="help.close")]

    def __init__(self, markdown: str) -> None:
        super().__init__()
        self.markdown = markdown

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(self.markdown)
        yield Footer()  # this screen's own keys, not the main screen's
