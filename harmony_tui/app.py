"""The terminal app: chat, thinking, tool calls and settings around one engine.

The engine runs on its own thread. A turn's events reach the UI in batches: the generation thread
only sets an asyncio event (``call_soon_threadsafe``) when the UI is not already due to look, and
the UI drains the stream every 50 ms or less often when drawing is costly (``pacing.py``).
Handlers own all widget state.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Footer, ProgressBar

from harmony_tui.app_chats import QUIT_WAIT_SECONDS, SAVE_RETRY_SECONDS, ChatsMixin
from harmony_tui.app_keys import APP_BINDINGS, KeysMixin
from harmony_tui.app_layout import COMPACT_FOOTER, LayoutMixin
from harmony_tui.app_model import ModelMixin
from harmony_tui.app_server import ServerMixin
from harmony_tui.app_voice import VoiceMixin
from harmony_tui.commands import is_command
from harmony_tui.config.placeholders import Clock
from harmony_tui.config.prompt_config import PromptConfig
from harmony_tui.config.user_config import load_state, save_state
from harmony_tui.conversation import Conversation, LocalCalls, TurnFinished
from harmony_tui.engine.engine import TurnRequest, TurnStream
from harmony_tui.engine.events import (
    TurnStart,
)
from harmony_tui.engine.messages import PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.exit_signals import ExitSignals, Terminal
from harmony_tui.logs import configure_file_log, logger
from harmony_tui.pacing import Pacer
from harmony_tui.remote import new_engine
from harmony_tui.sessions.chat import ChatSession
from harmony_tui.sessions.lock import (
    ChatLock,
    sweep_stale_files,
)
from harmony_tui.sessions.store import default_chats_dir
from harmony_tui.themes import DEFAULT_THEME, THEMES
from harmony_tui.tools.base import ApprovalRequest, ToolInvocation
from harmony_tui.tools.config import ToolsConfig
from harmony_tui.tools.toolset import Decision, ToolSet
from harmony_tui.turn_view import TurnView
from harmony_tui.widgets.conversation import ConversationView
from harmony_tui.widgets.panes import ThinkingPane, ToolCallsPane
from harmony_tui.widgets.prompt_input import PromptInput
from harmony_tui.widgets.requests import RequestsPane
from harmony_tui.widgets.settings import SettingsSidebar
from harmony_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from harmony_tui.config.settings import Settings

TOOL_OFF_HINT = ("the {tool} tool is off: turn it on for this chat with Ctrl+P → "
                 "\"Tools: {tool}\", or start with {flag}")

class HarmonyApp(ChatsMixin, ModelMixin, ServerMixin, VoiceMixin, KeysMixin, LayoutMixin,
                 App[None]):
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
        voice: bool = False,
        voice_io: tuple | None = None,
        server_options: dict | None = None,
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
        # The conversation loop: the chat, its tools, and the turn that runs (turn_view.py
        # shows it); save failures are said in the app.
        self.chat = Conversation(self._submit, ChatSession(), policy=LocalCalls(None),
                                 approver=self._ask_approval, on_save_error=lambda err:
                                 self.notify(f"Could not save the chat: {err}",
                                             severity="error", timeout=10))
        if settings is not None and settings.chat_path is not None:
            self.session = self._adopt(ChatSession(settings.chat_log, settings.chat_path,
                                                   chat_lock))
        else:
            self.session = self.new_session()
        self.param_origins: dict[str, str] = dict(settings.origins) if settings else {}
        self.server = None  # the embedded API server while it runs
        self.server_options = server_options  # host, port ... after flags and config
        self.toolset = ToolSet(tools or (settings.prompt.tools if settings else ToolsConfig()))
        remote = settings.remote if settings is not None else None
        # A local Engine, or a RemoteEngine on an OpenAI-compatible server (--backend openai).
        self.engine = new_engine(remote.backend if remote else "mlx",
                                 base_url=remote.base_url if remote else None,
                                 api_key=remote.api_key if remote else None,
                                 timeout=remote.timeout if remote else None,
                                 models_dir=models_dir)
        self.first_spec = settings.model_for_engine() if settings is not None else model
        self.turn: TurnView | None = None
        self.model_name = ""
        self.model_ready = False
        self.load_error: str | None = None  # why the last load failed
        self.last_turn_start: TurnStart | None = None  # what the engine received
        self._panes_user_set: set[str] = set()
        self.quit_wait_seconds = QUIT_WAIT_SECONDS
        self._quitting = False
        self._exit_signals = ExitSignals(self._on_exit_signal)  # SIGTERM, SIGHUP: save, exit
        self._terminal: Terminal | None = None
        self.start_voice = voice  # --voice: load the speech engines at start
        self.voice_io = voice_io
        self.voice_settings = getattr(settings, "voice", None)

    def notify(self, message: str, *, title: str = "", severity="information",
               timeout: float | None = None, markup: bool = False) -> None:
        """A toast; our messages quote files, errors and models' words, so they are plain
        text unless ``markup`` (``[load_safetensors]`` must not vanish as a tag)."""
        super().notify(message, title=title, severity=severity, timeout=timeout,
                       markup=markup)

    @property
    def session(self) -> ChatSession:
        """The open chat (the conversation loop's transcript)."""
        return self.chat.transcript  # type: ignore[return-value]

    @session.setter
    def session(self, session: ChatSession) -> None:
        self.chat.transcript = session

    @property
    def toolset(self) -> ToolSet:
        return self.chat.tools

    @toolset.setter
    def toolset(self, toolset: ToolSet) -> None:
        self.chat.tools = toolset
        self.chat.policy = LocalCalls(toolset, hint=TOOL_OFF_HINT)

    @property
    def turns_started(self) -> int:
        """Engine turns started so far (a tool call's continuation counts too)."""
        return self.chat.subturns_started

    @property
    def last_request(self) -> TurnRequest | None:
        """What was sent to the engine last (for inspection)."""
        return self.chat.last_request

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
        self.query_one(Footer).compact = self.size.width < COMPACT_FOOTER
        self.query_one("#load-progress", ProgressBar).display = False
        self.prompt.focus()
        self._terminal = Terminal()
        self._exit_signals.install(asyncio.get_running_loop())
        self.load_model(self.first_spec)
        if self.startup_notice:
            self.notify(self.startup_notice, severity="warning", timeout=15)
        self.start_tools(self.toolset)
        if self.start_voice:
            self.load_voice()
        if self.run_settings is not None:
            try:
                configure_file_log(self.run_settings.logs_dir)
            except OSError as err:
                self.notify(f"Cannot write the log file: {err}", severity="warning")
        sweep_stale_files(self.chats_dir)  # temp and lock files of killed processes
        self.call_after_refresh(self.show_session)

    def watch_theme(self, theme: str) -> None:
        if self.remember_theme and self.is_mounted(self.screen):
            with contextlib.suppress(OSError):
                save_state(theme=theme)

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
            self.notify(f"{self.load_error}. Ctrl+L picks another model." if self.load_error
                        else "The model is still loading", severity="warning")
            return
        event.input.clear()
        await self.send_text(text)

    async def send_text(self, text: str, *, spoken: bool = False) -> None:
        """Send ``text`` as the user's message and start the answer (``spoken``: said aloud,
        so the answer is spoken too)."""
        text = self.expand(text)
        try:
            self.session.add_user(text)
        except OSError as err:
            self.notify(f"Could not save the chat: {err}", severity="error", timeout=10)
        await self.conversation.add_user(text)
        await self.start_turn(spoken=spoken)

    @on(SettingsSidebar.Changed)
    def _on_settings_changed(self, event: SettingsSidebar.Changed) -> None:
        self.params = event.params
        self.param_origins[event.name] = "changed in the app"
        if event.name == "max_context_tokens" and self.settings.context_limit:
            self.status.context_limit = self.params.max_context_tokens or \
                self.settings.context_limit

    async def start_turn(self, *, spoken: bool = False) -> None:
        """Generate the next assistant turn (with its tool calls) for the chat as it stands;
        ``spoken``: the answer is spoken as it streams."""
        widget = await self.conversation.add_assistant(self.model_name)
        asked = sum(1 for message in self.session.messages if message.role == "user")
        self.thinking.start_turn(f"turn {max(asked, 1)}")
        params = self.chat.params_for_turn(
            self.params, self.prompt_config.reseed_each_turn if self.prompt_config else True)
        setup = self.prompt_config.setup(self.expand) if self.prompt_config else \
            self.setup_prompt
        request = TurnRequest(list(self.session.messages), self.toolset.declare(setup), params,
                              today=self.clock.today() if self.clock.fixed else None)
        view = TurnView(self, widget)
        view.spoken = self.speak_turn() if spoken else None
        self.turn = view
        self.status.state = "prefill"
        self.status.ttft = self.status.tps = None
        self.status.spec = ""
        self.status.generated = 0
        self.consume_turn(view, request)

    def _submit(self, request: TurnRequest, notify) -> TurnStream:
        """While the API server runs, chat turns join its batch instead of pausing it."""
        submit = self.engine.submit_batched if self.server is not None else self.engine.submit
        return submit(request, notify=notify)

    @work(group="turn")
    async def consume_turn(self, view: TurnView, request: TurnRequest) -> None:
        """Show the turn's events in batches until it ends: at most every ``BATCH_SECONDS``,
        less often when drawing them is costly (``pacing.Pacer``)."""
        turn = self.chat.run_turn(request, model=self.model_name or self.model_spec,
                                  record_params=self.params.model_dump(mode="json"))
        pacer = Pacer()  # showing the turn takes a bounded share of the CPU
        try:
            with contextlib.suppress(NoMatches):  # the app closed mid-turn
                async for events in turn:
                    if view.spoken is not None:
                        view.spoken.feed(events)  # before the screen: speech starts sooner
                    if await view.apply(events):
                        break
                    await asyncio.sleep(pacer.delay())
        finally:
            await turn.aclose()
            view.done.set()
            if self.turn is view:
                self.turn = None

    def turn_finished(self, view: TurnView, finished: TurnFinished) -> None:
        """The turn is over (called by its ``TurnView``)."""
        if self.turn is view:
            self.turn = None
        self.title_conversation()  # a new chat has a file (and a name) now
        self.status.state = "idle"
        self.status.detail = ""
        stats, end = finished.stats, finished.end
        logger.info("turn ended: %s%s", end.reason, f" ({stats.prompt_tokens} prompt, "
                    f"{stats.generation_tokens} generated, {stats.generation_tps:.1f} tok/s)"
                    if stats else "")
        if end.reason == "error":
            logger.error("generation failed: %s", end.error)
            self.notify(f"Generation failed: {end.error}", severity="error", timeout=10)

    async def _ask_approval(self, call: ToolInvocation, request: ApprovalRequest) -> Decision:
        from harmony_tui.screens.approval import ApprovalScreen

        decision = await self.push_screen_wait(ApprovalScreen(call.recipient, request))
        return decision if decision in ("once", "chat", "deny") else "deny"

    # -- actions --------------------------------------------------------------------------------

    def action_stop(self) -> None:
        """Esc: cancel listening, stop speaking, stop the answer."""
        self.voice_escape()
        if self.turn is not None and self.chat.stop():
            self.status.detail = "stopping"

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

    async def on_unmount(self) -> None:
        self._exit_signals.remove()
        if self.session.unsaved:  # one more try; the command line reports a failure
            self.session.save()
        self.session.release()
        self._detach_if_terminal_lost()
        self.close_voice()
        if self.server is not None:
            server, self.server = self.server, None
            await asyncio.to_thread(server.stop)
        self.engine.close(timeout=5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.toolset.aclose(), 5)

