"""Push-to-talk in the app: one key to listen and send, Esc to cancel, answers spoken.

Ctrl+Space (``ctrl+@`` on legacy terminals) starts listening; pressed again it sends what was
said (the trailing silence also ends listening by itself). While listening the status bar shows
the input level and the time; then "transcribing", and the transcript goes out as the user
message (or into the prompt to edit first, with ``voice.confirm``). The answer is spoken as it
streams; the voice key or Esc stops the speech at once (Esc also stops the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from textual import work
from textual.css.query import NoMatches
from textual.message import Message as TextualMessage

from harmony_tui.logs import logger
from harmony_tui.voice.settings import VoiceSettings
from harmony_tui.voice_control import VoiceControl

LEVEL_INTERVAL = 0.1  # seconds between level-meter updates
METER = "▁▂▃▄▅▆▇█"


class VoiceLevel(TextualMessage):
    """The input level while listening (from the recorder's thread)."""

    def __init__(self, level_db: float, elapsed: float) -> None:
        super().__init__()
        self.level_db = level_db
        self.elapsed = elapsed


class VoiceRecorded(TextualMessage):
    """Listening ended (from the recorder's thread)."""

    def __init__(self, recording: Any) -> None:
        super().__init__()
        self.recording = recording


class VoiceSpeaking(TextualMessage):
    """The speaker started or finished speaking (from its thread)."""

    def __init__(self, speaking: bool) -> None:
        super().__init__()
        self.speaking = speaking


class VoiceNotice(TextualMessage):
    """A voice problem to show (from a voice thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


def meter(level_db: float, floor: float = -70.0) -> str:
    """Five cells of level, e.g. ``▃▅▇▁▁``."""
    fraction = min(1.0, max(0.0, (level_db - floor) / -floor))
    filled = round(fraction * 5 * (len(METER) - 1))
    cells = []
    for _ in range(5):
        step = min(filled, len(METER) - 1)
        cells.append(METER[step])
        filled -= step
    return "".join(cells)


class VoiceMixin:
    """Voice for ``HarmonyApp``: ``self.voice`` is the ``VoiceControl`` once voice is used."""

    voice: VoiceControl | None = None
    voice_io: tuple[Any, Any] | None = None  # (source factory, sink): tests, benchmarks
    voice_settings: VoiceSettings | None = None
    _voice_loading = False
    _level_at = 0.0
    _spoken: Any = None  # the SpokenTurn of the running turn, if it is spoken

    def _make_voice(self) -> VoiceControl:
        source, sink = self.voice_io or (None, None)
        return VoiceControl(self.voice_settings or VoiceSettings(), source_factory=source,
                            sink=sink, on_error=lambda text: self.post_message(VoiceNotice(text)),
                            on_speaking=self._speaking_changed)

    def _speaking_changed(self, speaking: bool) -> None:  # a speaker thread
        self.post_message(VoiceSpeaking(speaking))

    def _show_voice(self, text: str) -> None:
        with contextlib.suppress(NoMatches):
            self.status.voice = text

    # -- the key --------------------------------------------------------------------------------

    def action_voice(self) -> None:
        """Listen / send / stop speaking, depending on what voice is doing."""
        voice = self.voice
        if voice is not None and voice.listening:
            voice.send()
            self._show_voice("sending")
            return
        if voice is not None and self._stop_speaking():
            self._show_voice("ready")
            return
        if self.turn is not None:
            self.notify("Wait for the answer or press Esc to stop it", severity="warning")
            return
        if not self.model_ready:
            self.notify("The model is not loaded yet", severity="warning")
            return
        if voice is None or not voice.ready:
            self.load_voice(listen=True)
            return
        self._listen()

    def voice_escape(self) -> bool:
        """Esc: cancel listening or stop speaking; True when it did."""
        voice = self.voice
        if voice is None:
            return False
        if voice.cancel():
            self._show_voice("cancelled")
            return True
        return self._stop_speaking()

    def _stop_speaking(self) -> bool:
        """Barge-in: stop what is being said and the rest of this answer; True when it did."""
        speaking = self.voice.speaking
        if self._spoken is not None:
            self._spoken.cancel()  # the sentences still to come are not spoken either
        return self.voice.stop_speaking() or speaking

    @work(group="voice-load", exclusive=True)
    async def load_voice(self, listen: bool = False) -> None:
        """Load the speech engines in the background (``--voice`` does it at start)."""
        if self._voice_loading:
            return
        self._voice_loading = True
        self._show_voice("loading speech model")
        try:
            self.voice = self.voice or self._make_voice()
            await asyncio.to_thread(self.voice.load)
        except Exception as err:  # VoiceError: missing engine, model, PortAudio ...
            self._show_voice("off")
            logger.warning("voice not available: %s", err)
            self.notify(f"Voice is not available: {err}", severity="error", timeout=15)
            self.voice = None
            return
        finally:
            self._voice_loading = False
        self._show_voice("ready")
        if listen and self.turn is None and self.model_ready:
            self._listen()

    def _listen(self) -> None:
        try:
            self.voice.listen(lambda r: self.post_message(VoiceRecorded(r)), self._on_level)
        except Exception as err:  # no device, no PortAudio
            self.notify(f"Cannot listen: {err}", severity="error", timeout=10)
            self._show_voice("ready")
            return
        self._show_voice("listening")

    def _on_level(self, level_db: float, elapsed: float) -> None:  # the recorder's thread
        now = time.monotonic()
        if now - self._level_at >= LEVEL_INTERVAL:
            self._level_at = now
            self.post_message(VoiceLevel(level_db, elapsed))

    # -- what the voice threads report ----------------------------------------------------------

    def on_voice_level(self, message: VoiceLevel) -> None:
        if self.voice is not None and self.voice.listening:
            self._show_voice(f"listening {message.elapsed:.1f}s {meter(message.level_db)}")

    def on_voice_speaking(self, message: VoiceSpeaking) -> None:
        if self.voice is not None and not self.voice.listening:
            self._show_voice("speaking" if message.speaking else "ready")

    def on_voice_notice(self, message: VoiceNotice) -> None:
        self.notify(message.text, severity="warning", timeout=10)

    async def on_voice_recorded(self, message: VoiceRecorded) -> None:
        recording = message.recording
        if recording.error:
            self.notify(f"Listening stopped: {recording.error}", severity="error", timeout=10)
        if recording.cancelled:
            self._show_voice("ready")
            return
        if not recording.usable:
            self._show_voice("ready")
            if not recording.error:
                await self.conversation.add_note("🎤 No speech heard: nothing was sent.")
            return
        self.transcribe(recording)

    @work(group="voice-transcribe", exclusive=True)
    async def transcribe(self, recording: Any) -> None:
        self._show_voice("transcribing…")
        try:
            text = await asyncio.to_thread(self.voice.transcribe, recording)
        except Exception as err:
            self._show_voice("ready")
            self.notify(f"Transcription failed: {err}", severity="error", timeout=10)
            return
        self._show_voice("ready")
        if not text:
            await self.conversation.add_note("🎤 Nothing intelligible was heard: nothing was "
                                             "sent.")
            return
        if self.voice.settings.confirm or self.turn is not None:
            self.prompt.set_text(text)  # edit it, then Enter sends it
            self.prompt.focus()
            return
        await self.send_text(text, spoken=True)

    def speak_turn(self) -> Any:
        """The ``SpokenTurn`` for a turn the person asked by voice (None: not spoken)."""
        self._spoken = self.voice.spoken_turn() if self.voice is not None else None
        return self._spoken

    def close_voice(self) -> None:
        if self.voice is not None:
            self.voice.close()
