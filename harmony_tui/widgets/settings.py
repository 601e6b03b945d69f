"""The parameter sidebar: every generation setting, adjustable from the keyboard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, Static

from harmony_tui.commands import CommandError, validate_setting
from harmony_tui.engine.params import GenerationParams

HELP = """\
Generation settings for the next request. **Up/Down** choose a setting, **Left/Right** or
**-/+** change it by its step, **Enter** types a value (`none` clears seed or context limit),
**Delete** restores its starting value. Changed settings are marked with ●; with a remote
engine (`--backend openai`) settings no request can carry are struck through and marked ✗.
Invalid values are refused with a message below the list.
"""

FIELDS = ("temperature", "top_p", "top_k", "min_p", "min_tokens_to_keep", "xtc_probability",
          "xtc_threshold", "repetition_penalty", "repetition_context_size", "presence_penalty",
          "frequency_penalty", "reasoning_effort", "max_tokens", "max_context_tokens", "seed")
EFFORTS = ("low", "medium", "high")
LABELS = {"min_tokens_to_keep": "min keep", "xtc_probability": "xtc probability",
          "repetition_penalty": "rep. penalty", "repetition_context_size": "rep. context",
          "presence_penalty": "presence pen.", "frequency_penalty": "frequency pen.",
          "reasoning_effort": "reasoning", "max_context_tokens": "context limit"}


def format_value(name: str, value: Any, context_limit: int | None = None) -> str:
    if value is None:
        if name == "max_context_tokens":
            return f"model ({context_limit})" if context_limit else "model"
        return "none"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.1f}"
    return str(value)


def step_of(name: str) -> float | int | None:
    extra = GenerationParams.model_fields[name].json_schema_extra or {}
    return extra.get("step")  # type: ignore[union-attr,return-value]


def stepped(name: str, value: Any, direction: int, context_limit: int | None) -> Any:
    """The value one step up (+1) or down (-1); validation happens afterwards."""
    if name == "reasoning_effort":
        return EFFORTS[(EFFORTS.index(value) + direction) % len(EFFORTS)]
    step = step_of(name) or 1
    if value is None:
        if name == "max_context_tokens":
            value = context_limit or 4096
        else:
            return 0 if direction > 0 else None
    new = value + direction * step
    if isinstance(step, float) or isinstance(value, float):
        decimals = len(str(step).split(".")[1]) if "." in str(step) else 0
        new = round(float(new), max(decimals, 2))
    else:
        new = int(new)
    return within_bounds(name, new, value)


def within_bounds(name: str, new: Any, old: Any) -> Any:
    """``new`` stopped at the field's bounds (``old`` when only an open bound is beyond)."""
    for rule in GenerationParams.model_fields[name].metadata:
        if getattr(rule, "le", None) is not None and new > rule.le:
            new = type(new)(rule.le)
        if getattr(rule, "ge", None) is not None and new < rule.ge:
            new = type(new)(rule.ge)
        if getattr(rule, "gt", None) is not None and new <= rule.gt:
            new = old
        if getattr(rule, "lt", None) is not None and new >= rule.lt:
            new = old
    return new


def parse_typed(name: str, text: str) -> Any:
    """What the person typed, as a value for ``name`` (validation comes after)."""
    text = text.strip()
    if text.lower() in ("none", "null", "default", ""):
        return None
    if name == "reasoning_effort":
        return text.lower()
    annotation = str(GenerationParams.model_fields[name].annotation)
    try:
        return int(text) if "int" in annotation else float(text)
    except ValueError:
        kind = "a whole number" if "int" in annotation else "a number"
        raise CommandError(f"{name}={text!r}: expected {kind}") from None


class SettingsList(Widget, can_focus=True):
    """The list of settings with a cursor."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="settings.up"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="settings.down"),
        Binding("right,plus,equals_sign", "step(1)", "Increase", id="settings.increase"),
        Binding("left,minus", "step(-1)", "Decrease", id="settings.decrease"),
        Binding("enter", "edit", "Type value", id="settings.edit"),
        Binding("delete,backspace", "reset", "Reset", show=False, id="settings.reset"),
    ]

    COMPONENT_CLASSES = {"settings-list--cursor", "settings-list--changed"}
    DEFAULT_CSS = """
    SettingsList > .settings-list--cursor { background: $primary; color: $text; }
    SettingsList > .settings-list--changed { color: $accent; text-style: bold; }
    """

    cursor: reactive[int] = reactive(0)

    def __init__(self, sidebar: SettingsSidebar, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sidebar = sidebar

    def render(self) -> Table:
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(ratio=3, no_wrap=True)
        table.add_column(ratio=2, justify="right", no_wrap=True)
        table.add_column(width=1)
        params, base = self.sidebar.params, self.sidebar.baseline
        for index, name in enumerate(FIELDS):
            value = getattr(params, name)
            changed = value != getattr(base, name)
            selected = index == self.cursor
            row = None  # the whole row of the cursor is highlighted, not only its name
            if selected and self.has_focus:
                style = row = self.get_component_rich_style("settings-list--cursor")
            else:
                style = Style(bold=selected)
            label = Text(LABELS.get(name, name.replace("_", " ")), style=style)
            shown = Text(format_value(name, value, self.sidebar.context_limit),
                         style=self.get_component_rich_style("settings-list--changed")
                         if changed else "")
            if name in self.sidebar.not_sent:  # a remote engine cannot send it
                label.stylize("dim strike")
                table.add_row(label, shown, Text("✗", style="bold"), style=row)
                continue
            table.add_row(label, shown, Text("●" if changed else " ", style="bold"), style=row)
        return table

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(FIELDS)

    def action_cursor(self, delta: int) -> None:
        self.cursor = (self.cursor + delta) % len(FIELDS)

    def action_step(self, direction: int) -> None:
        name = FIELDS[self.cursor]
        current = getattr(self.sidebar.params, name)
        new = stepped(name, current, direction, self.sidebar.context_limit)
        if new == current and current is not None:
            self.sidebar.show_message(f"{name} stays at {format_value(name, current)}: its "
                                      f"{'highest' if direction > 0 else 'lowest'} value")
            return
        self.sidebar.try_set(name, new)

    def action_edit(self) -> None:
        self.sidebar.start_edit(FIELDS[self.cursor])

    def action_reset(self) -> None:
        name = FIELDS[self.cursor]
        self.sidebar.try_set(name, getattr(self.sidebar.baseline, name))

    def watch_cursor(self) -> None:
        self.refresh()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


class SettingsSidebar(Vertical):
    """Settings list, an input for typed values and a message line."""

    HELP = HELP
    DEFAULT_CLASSES = "pane"
    BINDINGS = [Binding("escape", "cancel_edit", "Cancel", show=False, id="settings.cancel")]

    @dataclass
    class Changed(Message):
        """A setting changed; ``params`` apply from the next request."""

        params: GenerationParams
        name: str

    def __init__(self, params: GenerationParams, **kwargs) -> None:
        super().__init__(**kwargs)
        self.message_text = ""
        self.border_title = "Settings"
        self.params = params
        self.baseline = params
        self.context_limit: int | None = None
        self.not_sent: dict[str, str] = {}  # settings the engine cannot send: name -> why
        self._editing: str | None = None

    def compose(self) -> ComposeResult:
        yield SettingsList(self, id="settings-list")
        yield Input(id="settings-input", compact=True)
        yield Static("", id="settings-message", markup=False)

    def on_mount(self) -> None:
        self.query_one(Input).display = False

    @property
    def settings_list(self) -> SettingsList:
        return self.query_one(SettingsList)

    def show_message(self, text: str, error: bool = False) -> None:
        self.message_text = text
        message = self.query_one("#settings-message", Static)
        message.update(text)
        message.set_class(error, "error")

    def try_set(self, name: str, value: Any) -> bool:
        """Validate and apply; a refused value leaves the setting unchanged and says why."""
        try:
            value = validate_setting(name, value, self.params)
        except CommandError as err:
            self.show_message(str(err), error=True)
            self.app.bell()
            return False
        self.params = self.params.model_copy(update={name: value})
        self.show_message(f"{name} = {format_value(name, value, self.context_limit)} "
                          "(next request)")
        self.settings_list.refresh()
        self.post_message(self.Changed(self.params, name))
        return True

    def set_params(self, params: GenerationParams, baseline: bool = False) -> None:
        self.params = params
        if baseline:
            self.baseline = params
        self.settings_list.refresh()

    def start_edit(self, name: str) -> None:
        self._editing = name
        field = self.query_one(Input)
        field.value = format_value(name, getattr(self.params, name))
        field.placeholder = name
        field.display = True
        field.focus()
        self.show_message(f"type a value for {name}, Enter to apply, Esc to cancel")

    @on(Input.Submitted, "#settings-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        name = self._editing
        if name is None:
            return
        try:
            value = parse_typed(name, event.value)
        except CommandError as err:
            self.show_message(str(err), error=True)
            self.app.bell()
            return
        if self.try_set(name, value):
            self._close_edit()

    def _close_edit(self) -> None:
        self._editing = None
        self.query_one(Input).display = False
        self.settings_list.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_edit":
            return self._editing is not None
        return True

    def action_cancel_edit(self) -> None:
        self._close_edit()
        self.show_message("")
