"""The terminal app: chat, thinking, tool calls and settings around one engine.

The engine runs on its own thread. A turn's events reach the UI in batches: the generation thread
only sets an asyncio event (``call_soon_threadsafe``) when the UI is not already due to look, and
the UI drains the stream at most every ``BATCH_SECONDS``. Handlers own all widget state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message as TextualMessage
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar

from harmony_tui.commands import Command, CommandError, is_command, parse_command
from harmony_tui.config.placeholders import Clock, expander
from harmony_tui.config.prompt_config import PromptConfig
from harmony_tui.config.user_config import load_state, save_state
from harmony_tui.engine.engine import Engine, TurnRequest, TurnStream
from harmony_tui.engine.events import (
    ContextTrimmed,
    Event,
    MessageDone,
    ParseIssue,
    PromptProgress,
    Stats,
    TextDelta,
    TokenProgress,
    ToolCall,
    TurnEnd,
    TurnStart,
)
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.engine.reply import missing_answer
from harmony_tui.errors import HarmonyTuiError
from harmony_tui.exit_signals import ExitSignals, Terminal
from harmony_tui.logs import configure_file_log, logger
from harmony_tui.sessions.chat import ChatSession, TurnRecorder
from harmony_tui.sessions.lock import (
    ChatLock,
    ChatLockedError,
    ChatSaveError,
    sweep_stale_files,
)
from harmony_tui.sessions.store import default_chats_dir, free_path, timestamp_name
from harmony_tui.themes import DEFAULT_THEME, THEMES
from harmony_tui.tools.base import ApprovalRequest, ToolInvocation
from harmony_tui.tools.config import ToolsConfig
from harmony_tui.tools.toolset import Decision, ToolSet
from harmony_tui.widgets.conversation import ConversationView
from harmony_tui.widgets.messages import AssistantMessage
from harmony_tui.widgets.panes import ThinkingPane, ToolCallsPane
from harmony_tui.widgets.prompt_input import PromptInput
from harmony_tui.widgets.requests import RequestsPane
from harmony_tui.widgets.settings import SettingsSidebar
from harmony_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from harmony_tui.config.settings import Settings

BATCH_SECONDS = 0.05
QUIT_WAIT_SECONDS = 5.0  # how long quitting waits for the engine to hand back a stopped turn
SAVE_RETRY_SECONDS = 10.0  # how often a chat that could not be saved is saved again
WIDE = 110  # columns from which the side panes show by default

# Keys are chosen not to clash with the prompt's TextArea (ctrl+e/k/y/u/w/z, f6/f7 are its own).
APP_BINDINGS = [
    Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
    Binding("ctrl+d", "quit", "Quit", show=False, id="quit_eof", priority=True),
    Binding("escape", "stop", "Stop", id="stop"),
    Binding("f1", "help", "Help", id="help"),
    Binding("ctrl+r", "regenerate", "Regenerate", id="regenerate"),
    Binding("ctrl+o", "edit_last", "Edit last", show=False, id="edit_last"),
    Binding("ctrl+n", "new_chat", "New chat", id="new_chat"),
    Binding("f8", "copy_answer", "Copy answer", show=False, id="copy_answer"),
    Binding("f9", "copy_code", "Copy code", show=False, id="copy_code"),
    Binding("f2", "toggle_pane('thinking')", "Thinking", show=False, id="toggle_thinking"),
    Binding("f3", "toggle_pane('tools')", "Tools", show=False, id="toggle_tools"),
    Binding("f4", "toggle_pane('settings')", "Settings", show=False, id="toggle_settings"),
    Binding("f5", "focus_settings", "Edit settings", show=False, id="focus_settings"),
    Binding("f6", "focus_prompt", "Prompt", show=False, id="focus_prompt"),
    Binding("ctrl+l", "pick_model", "Model", id="pick_model"),
    Binding("ctrl+t", "pick_theme", "Theme", show=False, id="pick_theme"),
    Binding("ctrl+s", "sessions", "Chats", id="sessions"),
    Binding("ctrl+g", "toggle_server", "API server", id="toggle_server"),
    Binding("f12", "toggle_pane('requests')", "Requests", show=False, id="toggle_requests"),
]

ACTION_HELP = {
    "regenerate": "Generate the last answer again",
    "edit_last": "Put the last prompt back in the input and remove its answer",
    "new_chat": "Start a new chat",
    "copy_answer": "Copy the last answer to the clipboard",
    "copy_code": "Copy the last code block of the last answer",
    "toggle_pane('thinking')": "Show or hide the thinking pane",
    "toggle_pane('tools')": "Show or hide the tool-call pane",
    "toggle_pane('settings')": "Show or hide the settings sidebar",
    "focus_settings": "Move to the settings sidebar to change values",
    "focus_prompt": "Move back to the prompt",
    "pick_model": "Load another model (demo, ./models, Hugging Face cache)",
    "pick_theme": "Choose a theme",
    "sessions": "Saved chats: open, search, rename, delete, export",
    "toggle_server": "Start or stop the OpenAI-compatible API server on the loaded model",
    "toggle_pane('requests')": "Show or hide the API requests pane",
    "stop": "Stop generating (keeps the partial answer)",
    "help": "Show keys and commands",
}


class ApiRequest(TextualMessage):
    """A request record from the embedded server (posted from its thread)."""

    def __init__(self, record) -> None:
        super().__init__()
        self.record = record


class LoadProgress(TextualMessage):
    """Model loading progress, posted from the generation thread."""

    def __init__(self, text: str, fraction: float | None) -> None:
        super().__init__()
        self.text = text
        self.fraction = fraction


@dataclass
class Turn:
    """The turn being generated."""

    stream: TurnStream
    widget: AssistantMessage
    wake: asyncio.Event
    due: threading.Event = field(default_factory=threading.Event)
    recorder: TurnRecorder | None = None
    stats: Stats | None = None
    calls: int = 0  # tool calls made so far in this turn (across its continuations)
    tool_task: asyncio.Task | None = None
    generating: bool = False
    abandoned: bool = False
    stopping: bool = False  # Esc or quit: no tool runs and no continuation after this
    ended: bool = False  # its TurnEnd is saved (tools may still run)
    done: asyncio.Event = field(default_factory=asyncio.Event)  # its consumer has returned
    # Text received since the last complete message, per channel: saved if a quit cannot wait.
    pending: list[tuple[str, str]] = field(default_factory=list)

    def add_pending(self, channel: str, text: str) -> None:
        if self.pending and self.pending[-1][0] == channel:
            self.pending[-1] = (channel, self.pending[-1][1] + text)
        else:
            self.pending.append((channel, text))

    def pending_messages(self) -> list[Message]:
        return [Message("assistant", text, channel=channel) for channel, text in self.pending
                if text]


class HarmonyApp(App[None]):
    """Chat with a local model; watch it think; tune it while it streams."""

    TITLE = "harmony-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = APP_BINDINGS

    def __init__(
        self,
        model: str = "demo",
        *,
        models_dir: Path | None = None,
        params: GenerationParams | None = None,
        setup: PromptSetup | None = None,
        markdown: bool = True,
        truncate_thinking: int | None = None,
        truncate_response: int | None = None,
        keymap: dict[str, str] | None = None,
        theme: str | None = None,
        remember_theme: bool = True,
        settings: Settings | None = None,
        startup_notice: str | None = None,
        chats_dir: Path | None = None,
        tools: ToolsConfig | None = None,
        chat_lock: ChatLock | None = None,
    ) -> None:
        super().__init__()
        self.model_spec = model
        self.models_dir = models_dir
        self.params = params or (settings.params if settings else GenerationParams())
        self.run_settings = settings
        self.prompt_config: PromptConfig | None = settings.prompt if settings else None
        self.setup_prompt = setup or PromptSetup()
        self.clock = Clock.from_env(self.prompt_config.fixed_time if self.prompt_config
                                    else None)
        self.markdown = markdown
        user = settings.user if settings else None
        pc = self.prompt_config
        self.truncate_thinking = truncate_thinking or (pc and pc.truncate_thinking) or (
            user and user.truncate_thinking) or None
        self.truncate_response = truncate_response or (pc and pc.truncate_response) or (
            user and user.truncate_response) or None
        self.user_keymap = dict(keymap or {})
        self.initial_theme = theme
        self.remember_theme = remember_theme
        self.startup_notice = startup_notice
        self.chats_dir = chats_dir or (settings.chats_dir if settings else default_chats_dir())
        self.save_retry_seconds = SAVE_RETRY_SECONDS
        self._save_problem: str | None = None  # why the chat is not saved (None: it is)
        self._save_timer = None
        self._switching = False  # a New chat / Open waits for the running turn to be saved
        if settings is not None and settings.chat_path is not None:
            self.session = self._adopt(ChatSession(settings.chat_log, settings.chat_path,
                                                   chat_lock))
        else:
            self.session = self.new_session()
        self.seeded_once = False
        self.param_origins: dict[str, str] = dict(settings.origins) if settings else {}
        self.server = None  # the embedded API server while it runs
        tools_config = tools or (settings.prompt.tools if settings else ToolsConfig())
        self.toolset = ToolSet(tools_config)
        self.engine = Engine(models_dir=models_dir)
        self.turn: Turn | None = None
        self.model_name = ""
        self.model_ready = False
        self.turns_started = 0
        self.last_request: TurnRequest | None = None  # what was sent last (for inspection)
        self.last_turn_start: TurnStart | None = None  # what the engine received
        self._panes_user_set: set[str] = set()
        self.quit_wait_seconds = QUIT_WAIT_SECONDS
        self._quitting = False
        self._exit_signals = ExitSignals(self._on_exit_signal)  # SIGTERM, SIGHUP: save, exit
        self._terminal: Terminal | None = None

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="chat-column"):
                yield ConversationView(markdown=self.markdown,
                                       truncate_thinking=self.truncate_thinking,
                                       truncate_response=self.truncate_response,
                                       id="conversation")
                yield ProgressBar(id="load-progress", show_eta=False)
                yield PromptInput(id="prompt")
            with Vertical(id="side"):
                yield ThinkingPane(id="thinking")
                yield ToolCallsPane(id="tools")
                yield RequestsPane(id="requests")
                yield SettingsSidebar(self.params, id="settings")
        yield StatusBar(id="status")
        yield Footer()

    @property
    def conversation(self) -> ConversationView:
        return self.query_one(ConversationView)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one(PromptInput)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def thinking(self) -> ThinkingPane:
        return self.query_one(ThinkingPane)

    @property
    def tools(self) -> ToolCallsPane:
        return self.query_one(ToolCallsPane)

    @property
    def settings(self) -> SettingsSidebar:
        return self.query_one(SettingsSidebar)

    def on_mount(self) -> None:
        for theme in THEMES:
            self.register_theme(theme)
        chosen = (load_state().get("theme") if self.remember_theme else None) \
            or self.initial_theme or DEFAULT_THEME
        self.theme = chosen if chosen in self.available_themes else DEFAULT_THEME
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        self._layout_panes(self.size.width)
        self.query_one("#load-progress", ProgressBar).display = False
        self.prompt.focus()
        self._terminal = Terminal()
        self._exit_signals.install(asyncio.get_running_loop())
        self.load_model(self.model_spec)
        if self.startup_notice:
            self.notify(self.startup_notice, severity="warning", timeout=15)
        self.start_tools(self.toolset)
        if self.run_settings is not None:
            try:
                configure_file_log(self.run_settings.logs_dir)
            except OSError as err:
                self.notify(f"Cannot write the log file: {err}", severity="warning")
        sweep_stale_files(self.chats_dir)  # temp and lock files of killed processes
        self.call_after_refresh(self.show_session)

    # -- chats ----------------------------------------------------------------------------------

    def new_session(self) -> ChatSession:
        """A new chat, saved under its start time once it has a message (its lock is held
        from now, so another process cannot take the same name)."""
        session = ChatSession(path=free_path(self.chats_dir / f"{timestamp_name()}.json"))
        for _ in range(100):
            try:
                session.claim()
                break
            except ChatLockedError:  # another app took this name this very second
                session.path = free_path(session.path)
            except HarmonyTuiError:  # read-only folder ...: said when a save fails
                break
        self._adopt(session)
        session.log.profile = self.run_settings.profile if self.run_settings else None
        if self.run_settings and self.run_settings.prompt_config_path:
            session.log.prompt_config = str(self.run_settings.prompt_config_path)
        if self.prompt_config is not None:
            session.log.prompt = self.prompt_config.model_dump(mode="json", exclude_defaults=True)
        return session

    def _adopt(self, session: ChatSession) -> ChatSession:
        """Save failures of ``session`` become a note and a retry, never an exception."""
        session.on_save_error = self._on_save_error
        if not session.locking:  # a chat given without its lock (the CLI passes it)
            try:
                session.claim()
            except ChatLockedError as err:  # read it, but never write over the other process
                session.path, session.lock = None, None
                self.startup_notice = f"{err}; this copy is not saved"
            except HarmonyTuiError:
                pass  # read-only folder ...: said when a save fails
        return session

    def _on_save_error(self, error: HarmonyTuiError) -> None:
        """A save failed: say so once, keep everything in memory, save again every few
        seconds (every later message also tries)."""
        first = self._save_problem is None
        self._save_problem = str(error)
        logger.warning("chat not saved: %s", error)
        if not first or not self.is_running:
            return
        text = (f"{error}. The conversation is kept in memory; saving again every "
                f"{self.save_retry_seconds:g} s.")
        self.notify(text, severity="warning", timeout=15)
        with contextlib.suppress(Exception):
            self.call_later(self.conversation.add_note, f"⚠ {text}")
        if self._save_timer is None:
            self._save_timer = self.set_interval(self.save_retry_seconds, self._retry_save)

    def _retry_save(self) -> None:
        session = self.session
        if session.unsaved:
            session.save()
        if not session.unsaved and self._save_problem is not None:
            self._save_problem = None
            if session.path is not None and session.saves:
                self.notify(f"Saved {session.path.name}: nothing was lost", timeout=5)
        if self._save_problem is None and self._save_timer is not None:
            self._save_timer.stop()
            self._save_timer = None

    def expand(self, text: str) -> str:
        """Placeholders of the prompt config, evaluated now."""
        if self.prompt_config is None:
            return text
        return expander(self.prompt_config.placeholders, self.clock)(text)

    async def show_session(self) -> None:
        """Show the chat's messages (a resumed chat) or the greeting (a new one)."""
        from harmony_tui.widgets.replay import replay_records

        records = self.session.records()
        if records:
            await replay_records(self.conversation, records, self.model_name)
            await self.conversation.add_note(
                f"Resumed {self.session.path.name if self.session.path else 'chat'} "
                f"({len(records)} messages).")
        elif self.prompt_config and self.prompt_config.assistant_greeting:
            from harmony_tui.widgets.conversation import Entry

            text = self.expand(self.prompt_config.assistant_greeting)
            self.session.add_greeting(text)
            await self.conversation.load_entries([Entry(
                "assistant", text, model=self.model_name or self.model_spec)])

    async def open_chat(self, session: ChatSession | None = None) -> None:
        """Switch to another chat (from the sessions screen), or to a new one (None).

        A running answer is first stopped and saved, marked stopped, exactly as quitting
        saves it; then the old chat's lock is given back.
        """
        if self._switching:  # already switching: this one is dropped
            if session is not None:
                session.release()
            return
        if self.turn is None:
            await self._show_chat(session)
        else:
            self._switching = True
            self._switch_after_stop(session)

    @work(group="switch-chat")
    async def _switch_after_stop(self, session: ChatSession | None) -> None:
        try:
            with contextlib.suppress(NoMatches):
                self.status.state, self.status.detail = "stopping", "saving the answer"
            await self.stop_and_save(self.quit_wait_seconds)
            await self._show_chat(session)
        finally:
            self._switching = False

    async def _show_chat(self, session: ChatSession | None) -> None:
        old = self.session
        self.session = session if session is not None else self.new_session()
        if old is not self.session:
            if old.unsaved:  # its last saves failed: once more, else a copy in the temp folder
                old.on_save_error = None
                where = old.rescue()
                if old.unsaved:
                    self.notify(where, severity="warning", timeout=20)
            old.release()
            self._save_problem = None
        self.seeded_once = False
        await self.conversation.clear()
        self.thinking.start_turn("")
        await self.tools.clear()
        if session is None:
            self.status.prompt_tokens = self.status.generated = self.status.cached_tokens = 0
            self.status.ttft = self.status.tps = None
        saved = session.last_params() if session is not None else None
        if saved:
            from pydantic import ValidationError

            with contextlib.suppress(ValidationError):
                self.params = self.params.updated(**{k: v for k, v in saved.items()
                                                     if k in GenerationParams.model_fields})
                self.settings.set_params(self.params)
        await self.show_session()
        self.prompt.focus()

    def action_sessions(self) -> None:
        from harmony_tui.screens.sessions import SessionsScreen

        if isinstance(self.screen, SessionsScreen):
            self.screen.dismiss(None)
            return

        async def chosen(path: Path | None) -> None:
            if path is None:
                return
            from harmony_tui.sessions.store import read_chat

            if self.session.path is not None and path.resolve() == self.session.path.resolve():
                return
            session = ChatSession(path=path)
            try:
                with contextlib.suppress(ChatSaveError):  # read-only folder: read it anyway
                    session.claim()
                # the lock first: no other process can change the file once it is read
                session.log = read_chat(path)
            except ChatLockedError as err:
                self.notify(f"{err}; close it there to open it here", severity="error",
                            timeout=10)
                return
            except HarmonyTuiError as err:  # ChatFileError
                session.release()
                self.notify(str(err), severity="error", timeout=10)
                return
            self._adopt(session)
            await self.open_chat(session)

        self.push_screen(SessionsScreen(self.chats_dir, self.session.path), chosen)

    def watch_theme(self, theme: str) -> None:
        if self.remember_theme and self.is_mounted(self.screen):
            with contextlib.suppress(OSError):
                save_state(theme=theme)

    def on_resize(self, event) -> None:
        self._layout_panes(event.size.width)

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

    # -- model ----------------------------------------------------------------------------------

    @work(exclusive=True, group="load")
    async def load_model(self, spec: str) -> None:
        """Load ``spec`` without blocking the UI; errors become a notification and a note."""
        with contextlib.suppress(NoMatches):  # the app closed while the model was loading
            await self._load_model(spec)

    async def _load_model(self, spec: str) -> None:
        self.model_ready = False
        self.status.state = "loading"
        self.status.detail = spec
        bar = self.query_one("#load-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)

        def progress(text: str, fraction: float | None) -> None:
            self.post_message(LoadProgress(text, fraction))

        try:
            loaded = await asyncio.wrap_future(self.engine.load(spec, progress))
        except Exception as err:  # ModelLoadError or an unexpected failure
            bar.display = False
            self.status.state = "error" if not self.model_name else "idle"
            self.status.detail = ""
            message = f"Could not load {spec}: {err}"
            logger.error(message)
            self.notify(message, severity="error", timeout=10)
            await self.conversation.add_note(message, error=True)
            self.model_ready = bool(self.model_name)
            return
        bar.display = False
        logger.info("loaded %s in %.1fs", loaded.name, loaded.load_seconds)
        self.notify(f"Loaded {loaded.name} in {loaded.load_seconds:.1f}s", timeout=3)
        first = not self.model_name
        self.model_spec = spec
        self.model_name = loaded.name
        self.settings.context_limit = loaded.context_limit
        self.settings.settings_list.refresh()
        self.status.model_name = loaded.name
        self.status.context_limit = self.params.max_context_tokens or loaded.context_limit
        self.status.state = "idle"
        self.status.detail = ""
        if self.prompt_config is not None and self.prompt_config.mlock:
            try:
                self.notify(await asyncio.wrap_future(self.engine.wire_weights()), timeout=5)
            except Exception as err:
                self.notify(f"mlock failed: {err}", severity="warning")
        if first and not self.conversation.entries:
            await self.conversation.add_note(welcome_text(loaded.name))
        elif not first:
            await self.conversation.add_note(f"Switched to {loaded.name}.")
        self.model_ready = True

    def on_load_progress(self, message: LoadProgress) -> None:
        try:
            self.status.detail = message.text
            bar = self.query_one("#load-progress", ProgressBar)
        except NoMatches:  # progress that arrives while the app is closing
            return
        if message.fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=100 * message.fraction)

    def action_pick_model(self) -> None:
        from harmony_tui.engine.catalog import local_models

        commands = [
            (f"{choice.spec}  [{choice.source}, {choice.model_type}]",
             (lambda spec=choice.spec: self._switch_model(spec)),
             f"Load {choice.spec}")
            for choice in local_models(self.models_dir or Path("models"))
        ]
        self.search_commands(commands, placeholder="Load a model…")

    def _switch_model(self, spec: str) -> None:
        if self.turn is not None:
            self.notify("Stop the current answer first (Esc)", severity="warning")
            return
        self.load_model(spec)

    def action_pick_theme(self) -> None:
        self.search_themes()

    # -- sending --------------------------------------------------------------------------------

    @on(PromptInput.Submitted)
    async def _on_prompt(self, event: PromptInput.Submitted) -> None:
        text = event.text
        if is_command(text):
            event.input.clear()
            await self.run_command(text)
            return
        if self.turn is not None:
            self.notify("Wait for the answer or press Esc to stop it", severity="warning")
            return
        if self._quitting or self._switching:  # saving the last answer before leaving
            return
        if not self.model_ready:
            self.notify("The model is not loaded yet", severity="warning")
            return
        event.input.clear()
        text = self.expand(text)
        try:
            self.session.add_user(text)
        except OSError as err:
            self.notify(f"Could not save the chat: {err}", severity="error", timeout=10)
        await self.conversation.add_user(text)
        await self.start_turn()

    async def run_command(self, text: str) -> None:
        try:
            command = parse_command(text)
        except CommandError as err:
            self.notify(str(err), severity="error", timeout=8)
            await self.conversation.add_note(str(err), error=True)
            return
        await self.apply_command(command)

    async def apply_command(self, command: Command) -> None:
        if command.name == "quit":
            await self.action_quit()
        elif command.name == "help":
            self.action_help()
        elif command.name == "clear":
            await self.action_new_chat()
        elif command.name == "list":
            lines = [f"{name} = {value}" + (f"   ({self.param_origins[name]})"
                                              if name in self.param_origins else "")
                     for name, value in self.params.model_dump().items()]
            await self.conversation.add_note("Settings for the next request:\n" +
                                             "\n".join(lines))
        elif command.name == "set":
            assert command.setting is not None
            if self.settings.try_set(command.setting, command.value):
                await self.conversation.add_note(f"{command.setting} = {command.value}")

    @on(SettingsSidebar.Changed)
    def _on_settings_changed(self, event: SettingsSidebar.Changed) -> None:
        self.params = event.params
        self.param_origins[event.name] = "changed in the app"
        if event.name == "max_context_tokens" and self.settings.context_limit:
            self.status.context_limit = self.params.max_context_tokens or \
                self.settings.context_limit

    async def start_turn(self, widget: AssistantMessage | None = None, calls: int = 0) -> None:
        """Generate the next assistant turn for the session as it stands.

        With ``widget`` the turn continues after tool results, in the same message.
        """
        if widget is None:
            widget = await self.conversation.add_assistant(self.model_name)
            self.thinking.start_turn(f"turn {len(self.session.final_answers()) + 1}")
        params = self.params
        if params.seed is not None and self.prompt_config is not None and \
                not self.prompt_config.reseed_each_turn:
            if self.seeded_once:  # seeded once: later turns continue the random stream
                params = params.model_copy(update={"seed": None})
            self.seeded_once = True
        setup = self.prompt_config.setup(self.expand) if self.prompt_config else \
            self.setup_prompt
        setup = self.toolset.declare(setup)
        request = TurnRequest(list(self.session.messages), setup, params,
                              today=self.clock.today() if self.clock.fixed else None)
        recorder = self.session.begin_turn(self.model_name or self.model_spec,
                                           self.params.model_dump(mode="json"))
        self.turns_started += 1
        self.last_request = request
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        due = threading.Event()

        def notify(event: Event) -> None:  # generation thread: cheap, never blocks
            if not due.is_set():
                due.set()
                loop.call_soon_threadsafe(wake.set)

        # While the API server runs, chat turns join its batch instead of pausing it.
        submit = self.engine.submit_batched if self.server is not None else self.engine.submit
        stream = submit(request, notify=notify)
        self.turn = Turn(stream, widget, wake, due, recorder, calls=calls)
        self.status.state = "prefill"
        self.status.ttft = self.status.tps = None
        self.status.generated = 0
        self.consume_turn(self.turn)

    @work(group="turn")
    async def consume_turn(self, turn: Turn) -> None:
        """Drain the turn's events in batches until it ends."""
        with contextlib.suppress(NoMatches):  # the app closed mid-turn
            await self._consume_turn(turn)

    async def _consume_turn(self, turn: Turn) -> None:
        try:
            await self._drain_turn(turn)
        finally:
            turn.done.set()

    async def _drain_turn(self, turn: Turn) -> None:
        while True:
            await turn.wake.wait()
            turn.wake.clear()
            turn.due.clear()
            events = turn.stream.drain()
            if await self.apply_events(turn, events):
                return
            await asyncio.sleep(BATCH_SECONDS)

    async def apply_events(self, turn: Turn, events: list[Event]) -> bool:
        """Update the widgets for a batch of events; True when the turn has ended."""
        if turn.abandoned:  # the chat was cleared: only wait for the engine to finish
            return any(isinstance(event, TurnEnd) for event in events)
        self._track(turn, events)
        status = self.status
        for event in coalesce(events):
            if isinstance(event, TextDelta):
                if event.recipient is not None:
                    continue  # tool-call arguments: shown whole when the call completes
                if not turn.generating:
                    turn.generating = True
                    status.state, status.detail = "generating", ""
                if event.channel == "final":
                    await turn.widget.append_answer(event.text)
                else:
                    self.thinking.write(event.text, event.channel)
                    turn.widget.append_thinking(event.text)
            elif isinstance(event, TokenProgress):
                if not turn.generating:
                    turn.generating = True
                    status.state, status.detail = "generating", ""
                status.generated = event.generated
                status.ttft = event.ttft_s
                if event.generated > 1:
                    status.tps = event.generation_tps
            elif isinstance(event, TurnStart):
                self.last_turn_start = event
                status.prompt_tokens = event.prompt_tokens
                status.cached_tokens = event.cached_tokens
            elif isinstance(event, PromptProgress):
                if event.total:
                    status.detail = f"{100 * event.processed // event.total}%"
            elif isinstance(event, ContextTrimmed):
                turn.widget.add_note(f"dropped {event.dropped_messages} old messages "
                                     f"({event.dropped_tokens} tokens) to fit {event.limit}")
            elif isinstance(event, ToolCall):
                await self._show_tool_call(turn, event)
            elif isinstance(event, ParseIssue):
                self.log.warning(f"format repair: {event.detail}")
            elif isinstance(event, Stats):
                turn.stats = event
                status.prompt_tokens, status.cached_tokens = event.prompt_tokens, \
                    event.cached_tokens
                status.generated = event.generation_tokens
                status.ttft, status.tps = event.ttft_s, event.generation_tps
                status.peak_gb = event.peak_memory_gb
            elif isinstance(event, TurnEnd):
                await self._end_turn(turn, event)
                return True
        return False

    def _track(self, turn: Turn, events: list[Event]) -> None:
        """Save complete messages and remember streamed text, before the screen shows them.

        A quit that cannot wait for the engine then still saves all the turn's text received.
        """
        for event in events:
            if isinstance(event, TextDelta) and event.recipient is None:
                turn.add_pending(event.channel, event.text)
            elif isinstance(event, MessageDone):
                turn.pending.clear()
                self._record(turn, lambda r=turn.recorder, m=event.message: r and r.add(m))

    def _record(self, turn: Turn, save) -> None:
        """Save to the chat file; a failure (disk full...) is shown, never lost silently."""
        try:
            save()
        except OSError as err:
            self.notify(f"Could not save the chat: {err}", severity="error", timeout=10)

    async def _show_tool_call(self, turn: Turn, call: ToolCall) -> None:
        entry = await self.tools.add_call(call.call_id, call.recipient, call.arguments,
                                          call.content_type)
        if "tools" not in self._panes_user_set and self.size.width >= WIDE:
            self.tools.display = True
            self._update_side()
        if self.toolset.find(call.recipient) is None:
            entry.set_status("not run", f"No enabled tool answers {call.recipient}; turn tools on"
                             " in the prompt config, with --python/--browser/--apply-patch, or "
                             "from the command palette.")
        elif call.error:
            entry.set_status("requested", f"(arguments are not valid JSON: {call.error})")
        turn.widget.add_note(f"→ called {call.recipient}")

    async def _end_turn(self, turn: Turn, end: TurnEnd) -> None:
        if turn.abandoned:  # the chat was cleared while it ran
            return
        if turn.stopping and end.reason == "call":  # stopped as the call came: it does not run
            end = dataclasses.replace(end, reason="cancelled")
        self._record(turn, lambda r=turn.recorder: r and r.finish(
            list(end.messages), turn.stats.to_dict() if turn.stats else None, end.reason))
        turn.ended = True
        runnable = end.reason == "call" and any(self.toolset.find(c.recipient)
                                                 for c in end.tool_calls)
        if runnable and await self.run_tool_calls(turn, end):
            return
        if self.toolset.browser is not None and turn.widget.answer:
            rendered = self.toolset.render_citations(turn.widget.answer, self.session.log.chat_id)
            if rendered != turn.widget.answer:
                await turn.widget.set_answer(rendered)
        notes = {"cancelled": "⏹ stopped", "length": "… stopped at the token limit",
                 "error": f"✖ error: {end.error}"}
        missing = missing_answer(end.reason, bool(turn.widget.answer.strip() or end.tool_calls),
                                 bool(turn.widget.thinking.strip()))
        # never a silent empty answer (the note says why, the token limit included)
        await turn.widget.finish(f"⚠ no answer: {missing}" if missing else notes.get(end.reason))
        self.turn = None
        self.status.state = "idle"
        self.status.detail = ""
        stats = turn.stats
        logger.info("turn ended: %s%s", end.reason, f" ({stats.prompt_tokens} prompt, "
                    f"{stats.generation_tokens} generated, {stats.generation_tps:.1f} tok/s)"
                    if stats else "")
        if end.reason == "error":
            logger.error("generation failed: %s", end.error)
            self.notify(f"Generation failed: {end.error}", severity="error", timeout=10)

    async def run_tool_calls(self, turn: Turn, end: TurnEnd) -> bool:
        """Run the turn's tool calls and continue it; False when the turn ends here."""
        chat_id = self.session.log.chat_id
        for call in end.tool_calls:
            entry = self.tools.entries.get(call.call_id)
            invocation = ToolInvocation(call.recipient, call.arguments, call.call_id, chat_id)
            turn.calls += 1
            if turn.calls > self.toolset.max_calls + 1:
                turn.widget.add_note(f"stopped after {self.toolset.max_calls} tool calls "
                                     "(max_calls_per_turn)")
                return False
            if turn.calls > self.toolset.max_calls:
                outcome = self.toolset.limit_outcome(invocation, call.channel)
            else:
                self.status.state, self.status.detail = "tool", call.recipient
                if entry is not None:
                    entry.set_status("waiting for approval" if self.toolset.approval(
                        invocation) else "running")
                task = asyncio.create_task(self.toolset.handle(
                    invocation, self._ask_approval(entry), call.channel))
                turn.tool_task = task
                try:
                    outcome = await task
                except asyncio.CancelledError:
                    if entry is not None:
                        entry.set_status("stopped")
                    turn.widget.add_note(f"⏹ stopped while {call.recipient} ran")
                    self._record(turn, self.session.mark_stopped)
                    return False
                finally:
                    turn.tool_task = None
            result = outcome.result
            logger.info("tool %s %s (%s, %.2fs)", call.recipient,
                        "failed" if result.is_error else "answered", outcome.decision,
                        result.duration_s)
            if entry is not None:
                status = "denied" if outcome.decision == "deny" else (
                    "error" if result.is_error else "done")
                entry.set_status(status, result.text)
                if result.duration_s:
                    entry.duration = result.duration_s
                    entry.title = entry.title_text()
            turn.widget.add_note(f"← {call.recipient} "
                                 f"{'failed' if result.is_error else 'answered'}")
            self._record(turn, lambda o=outcome, c=call: self.session.add_tool_result(
                o.message, c.call_id, o.result.is_error))
        if turn.abandoned or self.turn is not turn:
            return True
        if turn.stopping:  # stopped (Esc, quit) as the tools answered: no continuation
            turn.widget.add_note("⏹ stopped")
            self._record(turn, self.session.mark_stopped)
            return False
        await self.start_turn(widget=turn.widget, calls=turn.calls)
        return True

    def _ask_approval(self, entry):
        async def ask(call: ToolInvocation, request: ApprovalRequest) -> Decision:
            from harmony_tui.screens.approval import ApprovalScreen

            decision = await self.push_screen_wait(ApprovalScreen(call.recipient, request))
            if entry is not None and decision != "deny":
                entry.set_status("running")
            return decision if decision in ("once", "chat", "deny") else "deny"

        return ask

    # -- embedded API server ----------------------------------------------------------------------

    async def action_toggle_server(self) -> None:
        """Start the API server on the loaded model, or stop it."""
        if self.server is not None:
            server, self.server = self.server, None
            await asyncio.to_thread(server.stop)
            self.status.server_url = ""
            self.notify("API server stopped", timeout=3)
            self._layout_panes(self.size.width)
            return
        if not self.model_ready:
            self.notify("Load a model before starting the API server", severity="warning")
            return
        from harmony_tui.server.cli_args import server_toolset
        from harmony_tui.server.runner import EmbeddedServer

        options = self.run_settings.user.server if self.run_settings else None
        # Built-in tools the server runs itself (server.tools); its own set, on its own loop.
        tools = server_toolset(tuple(options.tools) if options else (),
                               self.prompt_config.tools if self.prompt_config else None)
        prompt = self.prompt_config

        def setup():
            return prompt.setup(self.expand) if prompt is not None else self.setup_prompt

        server = EmbeddedServer(
            self.engine, host=options.host if options else "127.0.0.1",
            port=options.port if options else 8000,
            api_key=(options.api_key if options else None) or os.environ.get(
                "HARMONY_TUI_API_KEY"),
            cors_origins=options.cors_origins if options else (),
            on_request=lambda record: self.post_message(ApiRequest(record)),
            setup=setup, params=self.params, models_dir=self.models_dir, tools=tools,
            max_body_bytes=options.max_body_bytes if options else None,
            insecure=options.insecure if options else False)
        try:
            await asyncio.to_thread(server.start)
        except Exception as err:
            self.notify(f"API server not started: {err}", severity="error", timeout=10)
            return
        self.server = server
        self.status.server_url = f"{server.url}/v1"
        key = " (API key required)" if server.api_key else ""
        self.notify(f"API server at {server.url}/v1{key}", timeout=8)
        logger.info("API server started at %s", server.url)
        if "requests" not in self._panes_user_set and self.size.width >= WIDE:
            self.query_one(RequestsPane).display = True
            self._update_side()

    def on_api_request(self, message: ApiRequest) -> None:
        with contextlib.suppress(NoMatches):  # a request that ends while the app closes
            self.query_one(RequestsPane).show(message.record)
        if message.record.state != "running":
            logger.info("api %s", message.record.log_line())

    @work(group="tools-start")
    async def start_tools(self, toolset: ToolSet) -> None:
        """Connect the MCP servers of the config (in the background); failures are shown.
        The status bar shows the python tool's sandbox (a warning when there is none)."""
        python = toolset.python
        self.status.isolation = "" if python is None else await asyncio.to_thread(
            python.isolation_label)
        if python is not None and not self.status.isolation.endswith(("bubblewrap",
                                                                       "sandbox-exec")):
            self.notify(python.isolation_summary(), severity="warning", timeout=15)
        if not toolset.config.mcp_servers:
            return
        await toolset.astart()
        for error in toolset.errors:
            self.notify(error, severity="error", timeout=15)
        if toolset.functions:
            names = ", ".join(f.name for f in toolset.functions)
            self.log.info(f"function tools: {names}")

    def action_toggle_tool(self, name: str) -> None:
        """Turn a built-in tool on or off for the next turns."""
        config = self.toolset.config
        on = getattr(config, name) is None
        config = config.with_flags(**{name: True}) if on else \
            config.model_copy(update={name: None})
        old = self.toolset
        self.toolset = ToolSet(config)
        self.toolset._allowed = set(old._allowed)
        self.run_worker(old.aclose(), group="tools-close")
        self.start_tools(self.toolset)
        label = {"apply_patch": "apply_patch"}.get(name, name)
        self.notify(f"{label} tool {'on' if on else 'off'}", timeout=3)

    # -- actions --------------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.turn is not None:
            self.turn.stopping = True
            if self.turn.tool_task is not None:
                self.turn.tool_task.cancel()
            self.turn.stream.cancel()
            self.status.detail = "stopping"

    def action_help(self) -> None:
        from harmony_tui.screens.help import HelpScreen, help_markdown

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        self.push_screen(HelpScreen(help_markdown(self.binding_rows(), self.widget_help())))

    def binding_rows(self) -> list[tuple[str, str, str]]:
        """(id, keys, description) of every app and widget binding, keymap applied."""
        from harmony_tui.widgets.prompt_input import PromptInput as _Prompt
        from harmony_tui.widgets.settings import SettingsList
        from harmony_tui.widgets.settings import SettingsSidebar as _Side

        rows = []
        for owner in (HarmonyApp, _Prompt, SettingsList, _Side):
            for binding in owner.BINDINGS:
                if not isinstance(binding, Binding) or not binding.id:
                    continue
                keys = self.user_keymap.get(binding.id, binding.key)
                description = ACTION_HELP.get(binding.action, binding.description)
                rows.append((binding.id, keys, description or binding.action))
        rows.append(("command_palette", "ctrl+p", "Command palette: every action"))
        rows.append(("prompt.submit", "enter", "Send the prompt"))
        return rows

    def widget_help(self) -> list[tuple[str, str]]:
        from harmony_tui.widgets import (
            conversation,
            messages,
            panes,
            prompt_input,
            requests,
            settings,
            status_bar,
        )

        return [("Prompt", prompt_input.HELP), ("Conversation", conversation.HELP),
                ("Answers", messages.HELP), ("Thinking pane", panes.THINKING_HELP),
                ("Tool calls pane", panes.TOOLS_HELP),
                ("API requests pane", requests.REQUESTS_HELP), ("Settings sidebar", settings.HELP),
                ("Status bar", status_bar.HELP)]

    async def action_regenerate(self) -> None:
        if not self._idle_for("regenerate"):
            return
        if not self.session.drop_last_reply():
            self.notify("Nothing to regenerate yet", severity="warning")
            return
        await self.conversation.truncate(self._last_user_entry() + 1)
        await self.start_turn()

    async def action_edit_last(self) -> None:
        if not self._idle_for("edit"):
            return
        text = self.session.drop_last_exchange()
        if text is None:
            self.notify("No message to edit yet", severity="warning")
            return
        await self.conversation.truncate(self._last_user_entry())
        self.prompt.set_text(text)
        self.prompt.focus()

    def _last_user_entry(self) -> int:
        entries = self.conversation.entries
        for index in range(len(entries) - 1, -1, -1):
            if entries[index].kind == "user":
                return index
        return len(entries)

    def _idle_for(self, what: str) -> bool:
        if self.turn is not None:
            self.notify(f"Stop the current answer (Esc) before you {what}", severity="warning")
            return False
        return True

    async def action_new_chat(self) -> None:
        """Start a new chat; a running answer is stopped and saved first (as quitting does)."""
        await self.open_chat(None)

    def action_copy_answer(self) -> None:
        widget = self.conversation.last_assistant()
        if widget is None or not widget.answer:
            self.notify("No answer to copy yet", severity="warning")
            return
        self._copy(widget.answer, "answer")

    def action_copy_code(self) -> None:
        widget = self.conversation.last_assistant()
        blocks = widget.code_blocks() if widget else []
        if not blocks:
            self.notify("The last answer has no code block", severity="warning")
            return
        self._copy(blocks[-1], "code block")

    def _copy(self, text: str, what: str) -> None:
        self.copy_to_clipboard(text)  # OSC 52: works over SSH in most terminals
        with contextlib.suppress(Exception):
            import pyperclip  # optional: the system clipboard where one exists

            pyperclip.copy(text)
        self.notify(f"Copied the {what} ({len(text)} characters)", timeout=3)

    def action_toggle_pane(self, name: str) -> None:
        pane = self.query_one(f"#{name}")
        pane.display = not pane.display
        self._panes_user_set.add(name)
        self._update_side()

    def action_focus_settings(self) -> None:
        settings = self.settings
        if not settings.display:
            self.action_toggle_pane("settings")
        settings.settings_list.focus()

    def action_focus_prompt(self) -> None:
        self.prompt.focus()

    def get_system_commands(self, screen: Screen):
        yield from super().get_system_commands(screen)
        for binding in APP_BINDINGS:
            if binding.action in ACTION_HELP and binding.action not in ("help",):
                yield SystemCommand(binding.description or binding.action,
                                    ACTION_HELP[binding.action],
                                    lambda action=binding.action: self.run_action(action))
        yield SystemCommand("Help: keys and commands", ACTION_HELP["help"], self.action_help)
        server = "stop" if self.server is not None else "start"
        yield SystemCommand(f"API server: {server}", ACTION_HELP["toggle_server"],
                            self.action_toggle_server)
        for name in ("python", "browser", "apply_patch"):
            state = "on" if getattr(self.toolset.config, name) is not None else "off"
            yield SystemCommand(f"Tools: {name} ({state})", f"Turn the {name} tool "
                                f"{'off' if state == 'on' else 'on'} for the next turns",
                                lambda n=name: self.action_toggle_tool(n))

    async def action_quit(self) -> None:
        """Leave; a running turn is stopped and saved first, exactly as Esc saves it."""
        self.request_quit()

    def request_quit(self, return_code: int = 0) -> None:
        """Stop and save the running turn, then exit; asked again, save what is shown now."""
        if not self._quitting:
            self._quitting = True
            self._quit(return_code)
            return
        if self.turn is not None:  # impatient: do not wait for the engine any longer
            self._save_streamed(self.turn)
        self.exit(return_code=return_code)

    @work(group="quit")
    async def _quit(self, return_code: int) -> None:
        if self.turn is not None:
            with contextlib.suppress(NoMatches):
                self.status.state, self.status.detail = "stopping", "saving the answer"
        await self.stop_and_save(self.quit_wait_seconds)
        self._detach_if_terminal_lost()
        self.exit(return_code=return_code)

    async def stop_and_save(self, timeout: float) -> None:
        """Stop the running turn (and its tools) and wait until its messages are saved.

        If the engine does not hand the turn back within ``timeout`` seconds, what the app
        received of it is saved instead. Either way the turn is marked ``cancelled``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (turn := self.turn) is not None:
            turn.stopping = True
            if turn.tool_task is not None:
                turn.tool_task.cancel()
            turn.stream.cancel()
            try:
                await asyncio.wait_for(turn.done.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                self._save_streamed(turn)
                return
            if self.turn is turn:  # its consumer failed before ending it
                self._save_streamed(turn)
                return

    def _save_streamed(self, turn: Turn) -> None:
        """Save a turn the engine has not handed back: what arrived of it, marked stopped."""
        turn.abandoned = True  # its consumer, if it still runs, records nothing more
        if self.turn is turn:
            self.turn = None
        if turn.ended:  # the engine's end is saved; a tool may still be running
            if turn.tool_task is not None:
                self._record(turn, self.session.mark_stopped)
            return
        if turn.recorder is None:
            return
        events = turn.stream.drain()  # arrived but not shown yet
        self._track(turn, events)
        end = next((e for e in events if isinstance(e, TurnEnd)), None)
        stats = next((e for e in events if isinstance(e, Stats)), turn.stats)
        recorder = turn.recorder
        messages = list(end.messages) if end is not None else [
            *recorder.added_messages, *turn.pending_messages()]
        logger.info("saving the stopped turn without the engine (%d messages)", len(messages))
        self._record(turn, lambda: recorder.finish(
            messages, stats.to_dict() if stats else None, "cancelled"))

    def _on_exit_signal(self, number: int) -> None:
        """SIGTERM or SIGHUP: quit as Ctrl+Q does (exit status 128 + the signal's number)."""
        gone = self._detach_if_terminal_lost()
        logger.info("%s%s: saving the running turn and quitting", signal.Signals(number).name,
                    " (the terminal is gone)" if gone else "")
        self.request_quit(return_code=128 + number)

    def _detach_if_terminal_lost(self) -> bool:
        """The terminal closed: let the app finish writing to nowhere instead of blocking."""
        return self._terminal is not None and self._terminal.detach_if_lost(self._driver)

    async def on_unmount(self) -> None:
        self._exit_signals.remove()
        if self.session.unsaved:  # one more try; the command line reports a failure
            self.session.save()
        self.session.release()
        self._detach_if_terminal_lost()
        if self.server is not None:
            server, self.server = self.server, None
            await asyncio.to_thread(server.stop)
        self.engine.close(timeout=5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.toolset.aclose(), 5)


def welcome_text(model: str) -> str:
    """The first note of a session: how to start, and the demo's prompts."""
    text = (f"{model} is ready. Type a message and press Enter (Shift+Enter for a new line). "
            "F1 lists every key; Ctrl+P every action.")
    if model == "demo":
        from harmony_tui.demo.corpus import SCRIPTS

        text += "\nThe demo model knows these prompts:\n" + "\n".join(
            f"  • {s.prompt}" for s in SCRIPTS)
    return text


def coalesce(events: list[Event]) -> list[Event]:
    """Merge consecutive text deltas of the same channel (fewer widget updates)."""
    out: list[Event] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, TextDelta) and isinstance(last, TextDelta) and \
                last.channel == event.channel and last.recipient == event.recipient:
            out[-1] = TextDelta(event.channel, last.text + event.text, event.recipient)
        else:
            out.append(event)
    return out
