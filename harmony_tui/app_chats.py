"""The app's chats: a new chat per session, opening and switching chats, saving that never loses
a word (failed saves retried, a running answer stopped and saved before any switch or quit)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from textual import work
from textual.css.query import NoMatches

from harmony_tui.config.placeholders import expander
from harmony_tui.engine.params import GenerationParams
from harmony_tui.errors import HarmonyTuiError
from harmony_tui.logs import logger
from harmony_tui.sessions.cache import load_chat_cache, save_chat_cache
from harmony_tui.sessions.chat import ChatSession
from harmony_tui.sessions.lock import ChatLockedError, ChatSaveError
from harmony_tui.sessions.store import free_path, timestamp_name

QUIT_WAIT_SECONDS = 5.0  # how long quitting waits for the engine to hand back a stopped turn
SAVE_RETRY_SECONDS = 10.0  # how often a chat that could not be saved is saved again


class ChatsMixin:
    """Chat files, switching chats and quitting (part of ``HarmonyApp``)."""

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

        self.title_conversation()
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
            with contextlib.suppress(NoMatches):  # the app closed while it switched
                await self._show_chat(session)
        finally:
            self._switching = False

    async def _show_chat(self, session: ChatSession | None) -> None:
        old = self.session
        if session is not old:
            await save_chat_cache(self.engine, old.path)  # resuming it later skips re-reading
        self.session = session if session is not None else self.new_session()
        if old is not self.session:
            if old.unsaved:  # its last saves failed: once more, else a copy in the temp folder
                old.on_save_error = None
                where = old.rescue()
                if old.unsaved:
                    self.notify(where, severity="warning", timeout=20)
            old.release()
            self._save_problem = None
        self.chat.seeded_once = False
        await self.conversation.clear()
        self.thinking.start_turn("")
        await self.tools.clear()
        # the figures were the old chat's: cleared for a new chat and for an opened one
        self.status.prompt_tokens = self.status.generated = self.status.cached_tokens = 0
        self.status.ttft = self.status.tps = self.status.peak_gb = None
        self.status.spec = ""
        saved = session.last_params() if session is not None else None
        if saved:
            from pydantic import ValidationError

            with contextlib.suppress(ValidationError):
                self.params = self.params.updated(**{k: v for k, v in saved.items()
                                                     if k in GenerationParams.model_fields})
                self.settings.set_params(self.params)
        await self.show_session()
        await load_chat_cache(self.engine, self.session.path)
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
            self.chat.save_streamed()
        self.exit(return_code=return_code)

    @work(group="quit")
    async def _quit(self, return_code: int) -> None:
        if self.turn is not None:
            with contextlib.suppress(NoMatches):
                self.status.state, self.status.detail = "stopping", "saving the answer"
        await self.stop_and_save(self.quit_wait_seconds)
        await save_chat_cache(self.engine, self.session.path)  # resuming skips re-reading
        self._detach_if_terminal_lost()
        self.exit(return_code=return_code)

    async def stop_and_save(self, timeout: float) -> None:
        """Stop the running turn (and its tools) and wait until its messages are saved.

        If the engine does not hand the turn back within ``timeout`` seconds, what the app
        received of it is saved instead. Either way the turn is marked ``cancelled``.
        """
        view = self.turn
        await self.chat.stop_and_save(timeout)
        if view is not None:
            with contextlib.suppress(TimeoutError):  # its last batch reaches the screen
                await asyncio.wait_for(view.done.wait(), 1.0)
            if self.turn is view:
                self.turn = None

    def _on_exit_signal(self, number: int) -> None:
        """SIGTERM or SIGHUP: quit as Ctrl+Q does (exit status 128 + the signal's number)."""
        gone = self._detach_if_terminal_lost()
        logger.info("%s%s: saving the running turn and quitting", signal.Signals(number).name,
                    " (the terminal is gone)" if gone else "")
        self.request_quit(return_code=128 + number)

    def _detach_if_terminal_lost(self) -> bool:
        """The terminal closed: let the app finish writing to nowhere instead of blocking."""
        return self._terminal is not None and self._terminal.detach_if_lost(self._driver)

