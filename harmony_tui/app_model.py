"""The app's model: loading one in the background with progress, switching models and themes."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from textual import work
from textual.css.query import NoMatches
from textual.message import Message as TextualMessage
from textual.widgets import ProgressBar

from harmony_tui.engine import distributed
from harmony_tui.logs import logger
from harmony_tui.sessions.cache import load_chat_cache


class LoadProgress(TextualMessage):
    """Model loading progress, posted from the generation thread."""

    def __init__(self, text: str, fraction: float | None) -> None:
        super().__init__()
        self.text = text
        self.fraction = fraction



class ModelMixin:
    """Loading and switching models (part of ``HarmonyApp``)."""

    # -- model ----------------------------------------------------------------------------------

    @work(exclusive=True, group="load")
    async def load_model(self, spec: str | None) -> None:
        """Load ``spec`` without blocking the UI; errors become a notification and a note."""
        with contextlib.suppress(NoMatches):  # the app closed while the model was loading
            await self._load_model(spec)

    async def _load_model(self, spec: str | None) -> None:
        remote = getattr(self.engine, "base_url", None)  # a RemoteEngine's server
        if spec is None:  # a remote engine: the model its server serves
            spec = ""
        shown = spec or f"the model of {remote}"
        self.model_ready = False
        self.status.state = "loading"
        self.status.detail = shown
        bar = self.query_one("#load-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)

        def progress(text: str, fraction: float | None) -> None:
            self.post_message(LoadProgress(text, fraction))

        try:
            loaded = await asyncio.wrap_future(self.engine.load(spec or None, progress))
        except Exception as err:  # ModelLoadError or an unexpected failure
            bar.display = False
            self.status.state = "error" if not self.model_name else "idle"
            self.status.detail = ""
            message = f"Could not load {shown}: {err}"
            logger.error(message)
            self.notify(f"Could not load {shown}", severity="error", timeout=6)
            await self.conversation.add_note(f"{message}\nCtrl+L picks another model.",
                                             error=True)
            self.load_error = message
            self.model_ready = bool(self.model_name)
            return
        bar.display = False
        self.load_error = None
        logger.info("loaded %s in %.1fs", loaded.name, loaded.load_seconds)
        await load_chat_cache(self.engine, self.session.path)  # a resumed chat's prompt cache
        first = not self.model_name
        self.model_spec = spec or loaded.name
        self.model_name = loaded.name
        self.settings.context_limit = loaded.context_limit
        not_sent = getattr(self.engine, "not_sent_fields", {})
        self.settings.not_sent = dict(not_sent)
        self.settings.settings_list.refresh()
        if not_sent:
            self.settings.show_message("✗ not sent to the remote server: " + "; ".join(
                f"{name.replace('_', ' ')} ({why})" for name, why in not_sent.items()
                if name != "xtc_special_tokens"))
        group = distributed.info()
        lockstep = getattr(self.engine, "lockstep", None)
        if lockstep is not None:  # a lost rank ends the app with one line, terminal restored
            lockstep.on_lost = lambda message: self.call_from_thread(
                self.exit, None, 1, f"harmony-tui: error: {message}")
        self.status.model_name = loaded.name + (f" @ {remote}" if remote else "") + (
            f" · {group.describe()}" if group is not None else "")
        self.title_conversation()
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
        elif not first:  # said here, not in a toast that would cover the prompt
            await self.conversation.add_note(f"Switched to {loaded.name} (loaded in "
                                             f"{loaded.load_seconds:.1f}s).")
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
        served = getattr(getattr(self.engine, "model", None), "served", None)
        if served is not None:  # a remote engine: the models its server serves
            self.search_commands([(spec, (lambda spec=spec: self._switch_model(spec)),
                                   f"Use {spec} on {self.engine.base_url}") for spec in served],
                                 placeholder="Use a model of the remote server…")
            return
        from textual.command import CommandPalette

        from harmony_tui.engine.catalog import local_models
        from harmony_tui.screens.model_picker import model_provider

        choices = local_models(self.models_dir or Path("models"), broken=True)
        self.push_screen(CommandPalette(providers=[model_provider(choices, self._switch_model)],
                                        placeholder="Load a model… (or type a folder path)"))

    def _switch_model(self, spec: str) -> None:
        if self.turn is not None:
            self.notify("Stop the current answer first (Esc)", severity="warning")
            return
        self.load_model(spec)

    def action_pick_theme(self) -> None:
        self.search_themes()


def welcome_text(model: str) -> str:
    """The first note of a session: how to start, and the demo's prompts."""
    text = (f"{model} is ready. Type a message and press Enter (Shift+Enter for a new line). "
            "F1 lists every key; Ctrl+P every action.")
    if model == "demo":
        from harmony_tui.demo.corpus import SCRIPTS

        text += "\nThe demo model knows these prompts:\n" + "\n".join(
            f"  • {s.prompt}" for s in SCRIPTS)
    return text

